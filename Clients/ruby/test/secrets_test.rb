# frozen_string_literal: true

require "pp"
require_relative "test_helper"

# Tokens and session ids never show up in inspect/to_s/pp output or in exception messages.
class SecretsTest < DaemonTestCase
  def shown(object)
    [object.inspect, object.to_s, object.pretty_inspect, format("%p", object)]
  end

  def test_login_result_hides_the_session
    c = client
    started = c.start("mia@example.com", ip: "203.0.113.40")
    token = daemon.wait_for_token("mia@example.com")
    login = c.callback(token, flow: started.flow)
    shown(login).each do |text|
      refute_includes text, login.session
      refute_includes text, token
      assert_includes text, "[FILTERED]"
      assert_includes text, "mia@example.com"
    end
    shown(c).each { |text| refute_includes text, login.session }
    assert_equal login.session, login.to_h[:session], "the value itself is there for the app"
  end

  def test_start_result_hides_the_flow
    c = client
    started = c.start("noa@example.com", ip: "203.0.113.41", send: "both")
    assert_match(/\A[A-Za-z0-9_-]{43}\z/, started.flow)
    shown(started).each do |text|
      refute_includes text, started.flow
      assert_includes text, "flow=[FILTERED]"
      assert_includes text, "expires_at=#{started.expires_at}"
    end
    shown(c).each { |text| refute_includes text, started.flow }
    assert_equal started.flow, started.to_h[:flow], "the value itself is there for the app"
    assert_equal({ expires_at: started.expires_at, flow: started.flow }, started.deconstruct_keys(nil))

    token = daemon.wait_for_token("noa@example.com")
    code = daemon.wait_for_code("noa@example.com")
    peeked = c.peek(token, flow: started.flow)
    shown(peeked).each do |text|
      refute_includes text, started.flow
      refute_includes text, token
    end
    wrong = code == "000000" ? "111111" : "000000"
    assert_secret_free(assert_raises(Magiclinkd::InvalidCode) { c.verify_code(started.flow, wrong) }, started.flow)
    confirm = assert_raises(Magiclinkd::ConfirmationRequired) { c.callback(token, flow: "x" * 43) }
    assert_secret_free(confirm, token)
    login = c.verify_code(started.flow, code)
    shown(login).each { |text| [login.session, started.flow, code].each { |secret| refute_includes text, secret } }
  end

  def test_errors_do_not_carry_tokens_or_sessions
    c = client
    token = "SecretTokenValue0123456789abcdefghijklmnopq"
    error = assert_raises(Magiclinkd::InvalidToken) { c.callback(token) }
    assert_secret_free(error, token)

    session = "SecretSessionValue0123456789abcdefghijklmn"
    error = assert_raises(Magiclinkd::InvalidSession) { c.session(session) }
    assert_secret_free(error, session)

    flow = "SecretFlowValue0123456789abcdefghijklmnopqr"
    error = assert_raises(Magiclinkd::InvalidToken) { c.verify_code(flow, "123456") }
    assert_secret_free(error, flow)
    assert_secret_free(error, "123456")
    error = assert_raises(Magiclinkd::InvalidToken) { c.callback(token, flow: flow, confirm: true) }
    assert_secret_free(error, flow)
  end

  def test_transport_errors_do_not_carry_secrets
    secret = "SecretSessionValue0123456789abcdefghijklmn"
    server = TestSupport::FakeServer.new do |conn, _|
      while (line = conn.gets)
        conn.write("not json but it echoes #{line}") # a broken peer echoing the request
      end
    end
    c = Magiclinkd::Client.new(socket_path: server.path, read_timeout: 0.3)
    assert_secret_free(assert_raises(Magiclinkd::ProtocolError) { c.session(secret) }, secret)
    silent = TestSupport::FakeServer.new { |conn, _| conn.gets && sleep }
    c = Magiclinkd::Client.new(socket_path: silent.path, read_timeout: 0.2)
    assert_secret_free(assert_raises(Magiclinkd::TimeoutError) { c.logout(secret) }, secret)
  ensure
    server&.close
    silent&.close
  end

  def assert_secret_free(error, secret)
    texts = [error.message, error.inspect, error.full_message(highlight: false)]
    texts << error.details.to_s if error.respond_to?(:details)
    texts.each { |text| refute_includes text, secret }
  end
end
