# frozen_string_literal: true

require_relative "test_helper"

# Connecting, timeouts, framing and protocol errors, against fake servers for what a real
# daemon cannot be made to do.
class TransportTest < Minitest::Test
  HELLO = { "server" => "magiclinkd", "version" => "0.1.0", "protocol" => 1, "ops" => ["hello"],
            "max_line_bytes" => 65_536 }.freeze

  def teardown
    @fakes&.each(&:close)
    super
  end

  def fake(&handler)
    server = TestSupport::FakeServer.new(&handler)
    (@fakes ||= []) << server
    server
  end

  def ok_reply(line, result = HELLO)
    JSON.generate("id" => TestSupport::FakeServer.id_of(line), "ok" => true, "result" => result) + "\n"
  end

  # Answers every request like a daemon's hello.
  def echo_server
    fake do |conn, _|
      while (line = @fakes.last.read_request(conn))
        conn.write(ok_reply(line))
      end
    end
  end

  def test_constructing_never_touches_the_socket
    dir = Dir.mktmpdir("mldrb", "/tmp")
    path = File.join(dir, "none.sock")
    client = Magiclinkd::Client.new(socket_path: path)
    assert_equal path, client.socket_path
    assert_equal 0, client.connects
    refute File.exist?(path)
  ensure
    FileUtils.rm_rf(dir)
  end

  def test_missing_socket_is_a_connection_error
    dir = Dir.mktmpdir("mldrb", "/tmp")
    client = Magiclinkd::Client.new(socket_path: File.join(dir, "none.sock"))
    error = assert_raises(Magiclinkd::ConnectionError) { client.hello }
    assert_kind_of Magiclinkd::TransportError, error
    assert_kind_of Magiclinkd::Error, error
    refute error.request_sent?
    assert_includes error.message, "none.sock"
  ensure
    FileUtils.rm_rf(dir)
  end

  def test_refused_connection_is_a_connection_error
    dir = Dir.mktmpdir("mldrb", "/tmp")
    path = File.join(dir, "stale.sock")
    UNIXServer.new(path).close # the file stays, nobody listens
    error = assert_raises(Magiclinkd::ConnectionError) { Magiclinkd::Client.new(socket_path: path).hello }
    assert_match(/refused/, error.message)
  ensure
    FileUtils.rm_rf(dir)
  end

  def test_connect_timeout_when_the_backlog_is_full
    dir = Dir.mktmpdir("mldrb", "/tmp")
    path = File.join(dir, "full.sock")
    server = Socket.new(:UNIX, :STREAM)
    server.bind(Socket.pack_sockaddr_un(path))
    server.listen(0) # never accepted: fill the backlog
    fillers = []
    20.times do
      s = Socket.new(:UNIX, :STREAM)
      fillers << s
      break if s.connect_nonblock(Socket.pack_sockaddr_un(path), exception: false) != 0
    rescue Errno::EAGAIN
      break
    end
    client = Magiclinkd::Client.new(socket_path: path, connect_timeout: 0.3)
    started = TestSupport.monotonic
    error = assert_raises(Magiclinkd::TimeoutError) { client.hello }
    elapsed = TestSupport.monotonic - started
    refute error.request_sent?
    assert_operator elapsed, :>=, 0.29
    assert_operator elapsed, :<, 3
  ensure
    fillers&.each(&:close)
    server&.close
    FileUtils.rm_rf(dir) if dir
  end

  def test_read_timeout_on_a_silent_server
    server = fake { |conn, _| @fakes.last.read_request(conn) && sleep } # accepts, never answers
    client = Magiclinkd::Client.new(socket_path: server.path, read_timeout: 0.3)
    started = TestSupport.monotonic
    error = assert_raises(Magiclinkd::TimeoutError) { client.session("s") }
    elapsed = TestSupport.monotonic - started
    assert error.request_sent?
    assert_match(/outcome is unknown/, error.message)
    assert_operator elapsed, :>=, 0.29
    assert_operator elapsed, :<, 3
  end

  # A reply that arrives after the timeout must never be read as the next call's reply: the
  # timed-out connection is dropped.
  def test_late_reply_is_not_taken_for_the_next_one
    release = Queue.new
    written = Queue.new
    server = fake do |conn, index|
      fk = @fakes.last
      if index.zero?
        line = fk.read_request(conn)
        release.pop
        begin
          conn.write(JSON.generate("id" => TestSupport::FakeServer.id_of(line), "ok" => true,
                                   "result" => HELLO.merge("version" => "late")) + "\n")
        rescue SystemCallError
          nil # the client closed: fine
        end
        written << true
        sleep
      else
        while (line = fk.read_request(conn))
          conn.write(ok_reply(line))
        end
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path, read_timeout: 0.3)
    assert_raises(Magiclinkd::TimeoutError) { client.hello }
    release << true
    written.pop
    assert_equal "0.1.0", client.hello.version
    assert_equal 2, client.connects
  end

  def test_garbage_reply_is_a_protocol_error_and_drops_the_connection
    server = fake do |conn, index|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(index.zero? ? "this is not json\n" : ok_reply(line))
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    error = assert_raises(Magiclinkd::ProtocolError) { client.hello }
    assert_kind_of Magiclinkd::TransportError, error
    assert_equal "magiclinkd", client.hello.server
    assert_equal 2, client.connects
  end

  def test_reply_with_another_id_is_a_protocol_error
    server = fake do |conn, index|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        id = TestSupport::FakeServer.id_of(line)
        conn.write(JSON.generate("id" => index.zero? ? id + 1000 : id, "ok" => true, "result" => HELLO) + "\n")
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    assert_raises(Magiclinkd::ProtocolError) { client.hello }
    assert_equal "magiclinkd", client.hello.server
    assert_equal 2, client.connects
  end

  def test_reply_id_of_another_type_is_a_protocol_error
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(JSON.generate("id" => TestSupport::FakeServer.id_of(line).to_s, "ok" => true, "result" => HELLO) + "\n")
      end
    end
    assert_raises(Magiclinkd::ProtocolError) { Magiclinkd::Client.new(socket_path: server.path).hello }
  end

  def test_reply_longer_than_the_cap_is_a_protocol_error
    server = fake do |conn, _|
      @fakes.last.read_request(conn)
      conn.write("{\"x\":\"#{'a' * 5000}")
      sleep
    end
    client = Magiclinkd::Client.new(socket_path: server.path, max_reply_bytes: 4096)
    error = assert_raises(Magiclinkd::ProtocolError) { client.hello }
    assert_match(/longer than 4096 bytes/, error.message)
  end

  def test_default_reply_cap_is_one_mebibyte
    big = "a" * ((1 << 20) - 200)
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(ok_reply(line, HELLO.merge("version" => line.include?("big") ? big + ("a" * 400) : big)))
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    assert_equal big.size, client.hello.version.size
    assert_raises(Magiclinkd::ProtocolError) { client.call("hello", { "big" => true }) }
  end

  def test_replies_are_split_on_line_feed_only_and_may_come_in_pieces
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        reply = ok_reply(line, HELLO.merge("version" => "a\u2028b\u2029c\u0085d")).sub(/\n\z/, "\r\n")
        reply.b.each_char.each_slice(7) { |piece| conn.write(piece.join) }
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    assert_equal "a\u2028b\u2029c\u0085d", client.hello.version
    assert_equal "a\u2028b\u2029c\u0085d", client.hello.version
    assert_equal 1, client.connects
  end

  def test_every_wire_code_maps_to_its_class
    codes = {
      "invalid_request" => [Magiclinkd::InvalidRequest, { "field" => "params.email" }],
      "unknown_op" => [Magiclinkd::UnknownOp, { "op" => "x" }],
      "request_too_large" => [Magiclinkd::RequestTooLarge, { "max_line_bytes" => 10 }],
      "invalid_email" => [Magiclinkd::InvalidEmail, {}],
      "redirect_not_allowed" => [Magiclinkd::RedirectNotAllowed, {}],
      "rate_limited" => [Magiclinkd::RateLimited, { "retry_after_s" => 42 }],
      "invalid_token" => [Magiclinkd::InvalidToken, { "reason" => "expired" }],
      "invalid_session" => [Magiclinkd::InvalidSession, {}],
      "unavailable" => [Magiclinkd::Unavailable, { "reason" => "mail_queue_full" }],
      "internal_error" => [Magiclinkd::InternalError, {}],
      "permission_denied" => [Magiclinkd::PermissionDenied, {}],
      "invalid_code" => [Magiclinkd::InvalidCode, { "attempts_left" => 2 }],
      "confirmation_required" => [Magiclinkd::ConfirmationRequired,
                                  { "email_masked" => "a***@example.com", "requested_at" => 1_764_169_400 }],
      "flow_mismatch" => [Magiclinkd::FlowMismatch, {}],
      "brand_new_code" => [Magiclinkd::ServerError, { "x" => 1 }]
    }
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        code = JSON.parse(line)["params"]["code"]
        conn.write(JSON.generate("id" => TestSupport::FakeServer.id_of(line), "ok" => false,
                                 "error" => { "code" => code, "message" => "Message for #{code}.",
                                              "retryable" => code == "brand_new_code", "details" => codes[code][1],
                                              "future_member" => true }) + "\n")
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    codes.each do |code, (klass, details)|
      error = assert_raises(Magiclinkd::ServerError, code) { client.call("x", { "code" => code }) }
      assert_instance_of klass, error, code
      assert_equal code, error.code
      assert_equal details, error.details
      assert_equal code == "brand_new_code", error.retryable?
      assert_includes error.message, "Message for #{code}."
    end
    assert_equal "params.email", catch_error(client, "invalid_request").field
    assert_equal 42, catch_error(client, "rate_limited").retry_after
    assert_equal "expired", catch_error(client, "invalid_token").reason
    assert_equal "mail_queue_full", catch_error(client, "unavailable").reason
    assert_equal 10, catch_error(client, "request_too_large").max_line_bytes
    assert_equal 2, catch_error(client, "invalid_code").attempts_left
    confirmation = catch_error(client, "confirmation_required")
    assert_equal "a***@example.com", confirmation.email_masked
    assert_equal 1_764_169_400, confirmation.requested_at
    assert_equal "flow_mismatch", catch_error(client, "flow_mismatch").code
    assert_equal 14, Magiclinkd::ServerError::CLASSES.size, "one class per wire code of the spec"
  end

  def catch_error(client, code)
    client.call("x", { "code" => code })
  rescue Magiclinkd::ServerError => e
    e
  end

  def test_an_error_reply_with_a_null_id_is_the_answer_to_the_request
    server = fake do |conn, _|
      fk = @fakes.last
      while fk.read_request(conn)
        conn.write(JSON.generate("id" => nil, "ok" => false,
                                 "error" => { "code" => "invalid_request", "message" => "Bad.", "retryable" => false, "details" => {} }) + "\n")
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    assert_raises(Magiclinkd::InvalidRequest) { client.hello }
    assert_raises(Magiclinkd::InvalidRequest) { client.hello }
    assert_equal 1, client.connects
  end

  def test_a_success_reply_with_a_null_id_is_a_protocol_error
    server = fake do |conn, _|
      fk = @fakes.last
      conn.write(JSON.generate("id" => nil, "ok" => true, "result" => HELLO) + "\n") while fk.read_request(conn)
    end
    assert_raises(Magiclinkd::ProtocolError) { Magiclinkd::Client.new(socket_path: server.path).hello }
  end

  def test_malformed_result_is_a_protocol_error
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(ok_reply(line, { "expires_at" => "soon" }))
      end
    end
    assert_raises(Magiclinkd::ProtocolError) do
      Magiclinkd::Client.new(socket_path: server.path).start("a@example.com")
    end
  end

  # The connection breaks after the request was written: hello and session are sent again on a
  # new connection; start is not (its outcome is unknown).
  def test_lost_reply_is_retried_only_for_safe_ops
    server = fake do |conn, index|
      fk = @fakes.last
      line = fk.read_request(conn)
      if index.zero? || index == 2
        conn.close # no reply
      else
        conn.write(ok_reply(line))
        while (line = fk.read_request(conn))
          conn.write(ok_reply(line))
        end
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    assert_equal "magiclinkd", client.hello.server
    assert_equal 2, client.connects
    assert_equal 2, server.requests.size
    client.close

    error = assert_raises(Magiclinkd::ConnectionError) { client.start("a@example.com", ip: "192.0.2.1") }
    assert error.request_sent?
    assert_match(/outcome is unknown/, error.message)
    assert_equal 3, server.requests.size, "start was sent once"
    assert_equal 3, client.connects
  end

  # peek only reads: after a lost reply it is sent again; callback and verify_code are not.
  def test_lost_reply_is_retried_for_peek_but_not_for_callback_or_verify_code
    peek = { "valid" => false, "reason" => "unknown", "flow_matches" => false }
    server = fake do |conn, index|
      fk = @fakes.last
      line = fk.read_request(conn)
      if index.even?
        conn.close # no reply
      else
        conn.write(ok_reply(line, peek))
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    result = client.peek("t", flow: "f")
    assert_instance_of Magiclinkd::PeekResult, result
    refute result.valid?
    assert_equal "unknown", result.reason
    refute result.flow_matches?
    assert_nil result.email_masked
    assert_equal 2, server.requests.size
    client.close

    closing = fake do |conn, _|
      @fakes.last.read_request(conn)
      conn.close # never a reply
    end
    client = Magiclinkd::Client.new(socket_path: closing.path)
    error = assert_raises(Magiclinkd::ConnectionError) { client.callback("t", flow: "f") }
    assert error.request_sent?
    assert_match(/outcome is unknown/, error.message)
    assert_equal 1, closing.requests.size, "callback was sent once"
    error = assert_raises(Magiclinkd::ConnectionError) { client.verify_code("f", "123456") }
    assert error.request_sent?
    assert_match(/outcome is unknown/, error.message)
    assert_equal 2, closing.requests.size, "verify_code was sent once"
    assert_equal %w[callback verify_code], Array.new(2) { JSON.parse(closing.requests.pop)["op"] }
  end

  # Each method sends exactly the parameters given (nil keywords left out) under their wire names.
  def test_new_operations_send_exactly_their_parameters
    results = {
      "start" => { "expires_at" => 1, "flow" => "F" },
      "peek" => { "valid" => true, "flow_matches" => true, "email_masked" => "a***@example.com", "expires_at" => 9 },
      "session" => { "user" => { "id" => "u", "email" => "a@example.com" }, "expires_at" => 2, "idle_expires_at" => 1 }
    }
    login = { "session" => "S", "expires_at" => 2, "idle_expires_at" => 1,
              "user" => { "id" => "u", "email" => "a@example.com" }, "redirect" => "/" }
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(ok_reply(line, results.fetch(JSON.parse(line)["op"], login)))
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    sent = lambda do
      request = JSON.parse(server.requests.pop)
      [request["op"], request["params"]]
    end

    assert_equal 1, client.start("a@example.com", send: "code").expires_at
    assert_equal ["start", { "email" => "a@example.com", "send" => "code" }], sent.call
    client.start("a@example.com", redirect: "/x", ip: "192.0.2.1", user_agent: "UA", locale: "de", send: "both")
    assert_equal ["start", { "email" => "a@example.com", "redirect" => "/x", "ip" => "192.0.2.1",
                             "user_agent" => "UA", "locale" => "de", "send" => "both" }], sent.call

    assert_equal "S", client.callback("T").session
    assert_equal ["callback", { "token" => "T" }], sent.call
    client.callback("T", flow: "F", confirm: true, ip: "192.0.2.1", user_agent: "UA")
    assert_equal ["callback", { "token" => "T", "flow" => "F", "confirm" => true, "ip" => "192.0.2.1",
                                "user_agent" => "UA" }], sent.call
    client.callback("T", confirm: false)
    assert_equal ["callback", { "token" => "T", "confirm" => false }], sent.call

    assert_instance_of Magiclinkd::Login, client.verify_code("F", "123 456")
    assert_equal ["verify_code", { "flow" => "F", "code" => "123 456" }], sent.call
    client.verify_code("F", "123456", ip: "2001:db8::1", user_agent: "UA")
    assert_equal ["verify_code", { "flow" => "F", "code" => "123456", "ip" => "2001:db8::1", "user_agent" => "UA" }],
                 sent.call

    peeked = client.peek("T")
    assert_equal ["peek", { "token" => "T" }], sent.call
    assert_equal Magiclinkd::PeekResult.new(valid: true, reason: nil, flow_matches: true,
                                            email_masked: "a***@example.com", expires_at: 9), peeked
    assert peeked.valid?
    client.peek("T", flow: "F")
    assert_equal ["peek", { "token" => "T", "flow" => "F" }], sent.call

    client.session("S")
    assert_equal ["session", { "session" => "S" }], sent.call
    client.session("S", ip: "192.0.2.7")
    assert_equal ["session", { "session" => "S", "ip" => "192.0.2.7" }], sent.call
  end

  def test_a_start_result_without_a_flow_is_a_protocol_error
    server = fake do |conn, _|
      fk = @fakes.last
      while (line = fk.read_request(conn))
        conn.write(ok_reply(line, { "expires_at" => 1 }))
      end
    end
    assert_raises(Magiclinkd::ProtocolError) { Magiclinkd::Client.new(socket_path: server.path).start("a@example.com") }
  end

  def test_a_safe_op_is_retried_once_only
    server = fake do |conn, _|
      @fakes.last.read_request(conn)
      conn.close
    end
    client = Magiclinkd::Client.new(socket_path: server.path)
    error = assert_raises(Magiclinkd::ConnectionError) { client.session("s") }
    assert error.request_sent?
    assert_equal 2, server.requests.size
  end

  def test_an_interrupted_call_drops_its_connection
    server = fake do |conn, index|
      fk = @fakes.last
      if index.zero?
        line = fk.read_request(conn)
        fk.read_request(conn) # answers only after the next request, with the first one's id
        conn.write(ok_reply(line))
        sleep
      else
        while (line = fk.read_request(conn))
          conn.write(ok_reply(line))
        end
      end
    end
    client = Magiclinkd::Client.new(socket_path: server.path, read_timeout: 5)
    caller_thread = Thread.new { client.hello }
    caller_thread.report_on_exception = false
    assert TestSupport.wait_until { server.requests.size == 1 }
    caller_thread.raise(Interrupt)
    assert_raises(Interrupt) { caller_thread.join }
    assert_equal "magiclinkd", client.hello.server
    assert_equal 2, client.connects
  end

  def test_arguments_that_cannot_be_sent
    client = Magiclinkd::Client.new(socket_path: "/nonexistent/x.sock")
    assert_raises(ArgumentError) { client.call(42) }
    assert_raises(ArgumentError) { client.call("hello", [1]) }
    assert_raises(ArgumentError) { client.call("hello", { "x" => Float::NAN }) }
    assert_raises(ArgumentError) { client.call("hello", { "x" => Object.new }) }
    error = assert_raises(ArgumentError) { client.session("\xff\xfesecret".b) }
    refute_includes error.message, "secret"
    assert_raises(ArgumentError) { Magiclinkd::Client.new(read_timeout: 0) }
    assert_raises(ArgumentError) { Magiclinkd::Client.new(connect_timeout: -1) }
    assert_equal 0, client.connects
  end

  def test_binary_strings_holding_utf8_are_accepted
    server = echo_server
    client = Magiclinkd::Client.new(socket_path: server.path)
    client.call("hello", { "name" => "J\u00fcrgen".b })
    assert_equal({ "name" => "J\u00fcrgen" }, JSON.parse(server.requests.pop)["params"])
  end
end
