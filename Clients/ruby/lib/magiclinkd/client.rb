# frozen_string_literal: true

require "json"
require_relative "errors"
require_relative "results"
require_relative "connection"

module Magiclinkd
  # A client for magiclinkd, speaking its JSON-lines protocol over the daemon's Unix socket.
  #
  #   client = Magiclinkd::Client.new                    # MAGICLINKD_SOCKET or the systemd path
  #   started = client.start("alice@example.com", redirect: "/account", ip: request.ip)
  #   # keep started.flow in an HttpOnly cookie; GET of the link: client.peek(token, flow:)
  #   login = client.callback(params[:token], flow: cookies[:magiclink_flow], ip: request.ip)
  #   info  = client.session(cookies[:magiclink_session])   # raises InvalidSession when over
  #
  # On a daemon that serves several apps, name yours: Client.new(app: "shop") (or set
  # MAGICLINKD_APP); every operation but hello then sends it as params.app.
  #
  # Constructing a client never touches the socket; the first call connects, and later calls
  # reuse that one connection. A client may be shared by threads (calls are serialised by a
  # mutex) and survives fork (a child process opens its own connection).
  class Client
    # Where the daemon listens under systemd (magiclinkd.socket).
    DEFAULT_SOCKET_PATH = "/run/magiclinkd/magiclinkd.sock"
    DEFAULT_CONNECT_TIMEOUT = 1.0
    DEFAULT_READ_TIMEOUT = 5.0
    # Longest reply line accepted (1 MiB); longer is a ProtocolError.
    DEFAULT_MAX_REPLY_BYTES = 1 << 20
    # Operations that may be sent again when a connection broke after the request went out.
    # (peek only reads the login, so it is safe too.)
    SAFE_TO_REPEAT = %w[hello peek session admin_status admin_sessions admin_dead_letters].freeze

    attr_reader :socket_path, :connect_timeout, :read_timeout

    # The id of the app every operation but hello names in params.app, or nil for none.
    attr_reader :app

    # Opens a client, yields it and closes its connection afterwards (or just returns it).
    def self.open(**options)
      client = new(**options)
      return client unless block_given?

      begin
        yield client
      ensure
        client.close
      end
    end

    # socket_path:     the daemon's socket; default ENV["MAGICLINKD_SOCKET"], else
    #                  DEFAULT_SOCKET_PATH (/run/magiclinkd/magiclinkd.sock).
    # connect_timeout: seconds to wait for the connection (default 1).
    # read_timeout:    seconds to wait for each reply (default 5).
    # app:             the app (of a daemon serving several, see hello.apps) that every
    #                  operation but hello names in params.app; default ENV["MAGICLINKD_APP"],
    #                  else none (fine for a daemon with one app).
    def initialize(socket_path: nil, connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                   read_timeout: DEFAULT_READ_TIMEOUT, max_reply_bytes: DEFAULT_MAX_REPLY_BYTES, app: nil)
      @socket_path = (socket_path || env_socket_path || DEFAULT_SOCKET_PATH).to_s.dup.freeze
      @app = app.nil? ? env_app : app_id(app)
      @connect_timeout = positive(connect_timeout, :connect_timeout)
      @read_timeout = positive(read_timeout, :read_timeout)
      @max_reply_bytes = Integer(max_reply_bytes)
      @mutex = Mutex.new
      @connection = nil
      @last_id = 0
      @connects = 0
    end

    # -- app operations ---------------------------------------------------------------------

    # The daemon's name, version, protocol, operations and apps (#apps: nil from a daemon older
    # than apps). Names no app. Safe to repeat.
    def hello
      ServerInfo.from_wire(call("hello"))
    end

    # Emails a login link and/or code to `email`; returns a StartResult whose #flow is a secret
    # for the browser that asked: keep it in an HttpOnly, SameSite=Lax cookie and pass it to
    # #peek, #callback and #verify_code. `send` is "link" (the default), "code" or "both".
    # `redirect` (a local path or a URL of an allowed origin) is where the user lands after the
    # login; `ip` and `user_agent` are the end user's (always pass `ip`: the per-IP rate limit
    # counts it); `locale` picks the mail's language.
    # Raises InvalidEmail, RedirectNotAllowed, RateLimited (#retry_after), Unavailable.
    def start(email, redirect: nil, ip: nil, user_agent: nil, locale: nil, send: nil)
      StartResult.from_wire(call("start", compact(email: email, redirect: redirect, ip: ip, user_agent: user_agent,
                                                  locale: locale, send: send)))
    end

    # Looks at a link's `token` without using it (mail scanners open links: a GET handler
    # calls this, only the POST of the page's button calls #callback). Returns a PeekResult
    # (#valid?, #reason, #flow_matches?, #email_masked, #expires_at). Safe to repeat.
    def peek(token, flow: nil)
      PeekResult.from_wire(call("peek", compact(token: token, flow: flow)))
    end

    # Consumes the link's `token` and creates a session: returns a Login whose #session is the
    # cookie value. Pass the browser's `flow` (from its cookie). Without the right flow the
    # daemon raises ConfirmationRequired (#email_masked, #requested_at) until the same call
    # comes with `confirm: true` after the user agreed, or FlowMismatch when the daemon runs
    # with `flow_binding: strict`. Raises InvalidToken (#reason "unknown", "expired", "used"),
    # RateLimited (too many failures from `ip`).
    def callback(token, flow: nil, confirm: nil, ip: nil, user_agent: nil)
      Login.from_wire(call("callback", compact(token: token, flow: flow, confirm: confirm, ip: ip,
                                               user_agent: user_agent)))
    end

    # Checks the 6-digit `code` the user typed (spaces and hyphens are ignored) for the
    # browser's `flow`: returns a Login like #callback. Raises InvalidCode (#attempts_left; 0:
    # ask for a new code), InvalidToken (the flow is unknown, expired, replaced or used),
    # InvalidRequest (#field "params.code": not 6 digits), RateLimited.
    def verify_code(flow, code, ip: nil, user_agent: nil)
      Login.from_wire(call("verify_code", compact(flow: flow, code: code, ip: ip, user_agent: user_agent)))
    end

    # Checks a session (and extends its idle expiry): returns a SessionInfo.
    # Raises InvalidSession when it is unknown, logged out or expired, RateLimited when `ip`
    # (the end user's, optional) sent too many failing calls. Safe to repeat.
    def session(session, ip: nil)
      SessionInfo.from_wire(call("session", compact(session: session, ip: ip)))
    end

    # Ends a session; idempotent (an unknown session is fine). Returns nil.
    def logout(session)
      call("logout", compact(session: session))
      nil
    end

    # Ends every session of a user; returns how many were live.
    def logout_all(user_id)
      Value::Wire.fetch(call("logout_all", compact(user_id: user_id)), "revoked", Integer)
    end

    # -- admin operations (root, admin_uids or admin_gids only; else PermissionDenied) -------

    # Daemon, user, session and mail queue counts: an AdminStatus.
    def admin_status
      AdminStatus.from_wire(call("admin_status"))
    end

    # A user's live sessions (by `user_id` or `email`, exactly one), newest first: AdminSessions.
    def admin_sessions(user_id: nil, email: nil)
      result = call("admin_sessions", compact(user_id: user_id, email: email))
      Value::Wire.list(result, "sessions").map { |s| AdminSession.from_wire(s) }.freeze
    end

    # Ends the session with this `handle` (or unique handle prefix), else all sessions of
    # `user_id`; returns how many were ended.
    def admin_revoke(handle: nil, user_id: nil)
      Value::Wire.fetch(call("admin_revoke", compact(handle: handle, user_id: user_id)), "revoked", Integer)
    end

    # Mail that was never delivered, newest first (at most `limit`, default 100): DeadLetters.
    def admin_dead_letters(limit: nil)
      result = call("admin_dead_letters", compact(limit: limit))
      Value::Wire.list(result, "messages").map { |m| DeadLetter.from_wire(m) }.freeze
    end

    # Queues a dead letter again: a RetryResult (#retried?, #reason).
    def admin_retry(message_id)
      RetryResult.from_wire(call("admin_retry", compact(message_id: message_id)))
    end

    # Deletes expired sessions, old tokens and finished mail now; returns how many rows.
    def admin_purge
      Value::Wire.fetch(call("admin_purge"), "removed", Integer)
    end

    # Creates the user with this address in the client's app before its first login (a daemon
    # with `signup: existing` mails only such users): a CreateUserResult (#user, #created?:
    # false when the address already had a user, which is returned unchanged).
    # Raises InvalidEmail.
    def admin_create_user(email)
      CreateUserResult.from_wire(call("admin_create_user", compact(email: email)))
    end

    # -- generic -----------------------------------------------------------------------------

    # Sends any operation with `params` (a Hash, sent as given; nil omits it) and returns the
    # decoded `result` Hash, or raises the ServerError subclass for the reply's error code.
    # The client's #app is added as params["app"] for every op but hello, unless `params` names
    # an app itself. Every method above goes through here.
    def call(op, params = nil)
      raise ArgumentError, "op must be a String or Symbol" unless op.is_a?(String) || op.is_a?(Symbol)
      raise ArgumentError, "params must be a Hash or nil" unless params.nil? || params.is_a?(Hash)

      op = op.to_s
      params = with_app(params) if @app && op != "hello"
      payload = ",\"op\":#{encode(op, 'op')}"
      payload += ",\"params\":#{encode(params, 'params')}" unless params.nil?
      @mutex.synchronize do
        forget_inherited_connection
        exchange(op, payload)
      end
    end

    # Closes the connection (the next call opens a new one).
    def close
      @mutex.synchronize do
        @connection&.close
        @connection = nil
      end
      nil
    end

    def inspect
      "#<#{self.class.name} socket_path=#{@socket_path.inspect} connect_timeout=#{@connect_timeout} " \
        "read_timeout=#{@read_timeout} app=#{@app.inspect} connected=#{!@connection.nil?}>"
    end

    # @api private: for tests. How many connections this client has opened.
    attr_reader :connects

    # @api private: sends `bytes` plus a line feed as they are (no id, no checks) on this
    # client's connection and returns the reply line (a String), for tests that need malformed
    # requests. Not for applications.
    def raw_line(bytes)
      @mutex.synchronize do
        forget_inherited_connection
        connection = checkout
        done = false
        begin
          connection.write("#{bytes.b}\n", @read_timeout)
          line = connection.read_line(@read_timeout, @max_reply_bytes)
          done = true
          line.force_encoding(Encoding::UTF_8)
        rescue Connection::Lost => e
          raise ConnectionError.new(e.message, request_sent: true)
        rescue Connection::ReadTimeout
          raise TimeoutError.new("no reply from magiclinkd within #{@read_timeout} s", request_sent: true)
        rescue Connection::TooLong
          raise ProtocolError.new("reply from magiclinkd longer than #{@max_reply_bytes} bytes", request_sent: true)
        ensure
          drop(connection) unless done
        end
      end
    end

    private

    def exchange(op, payload)
      attempts = 0
      begin
        attempts += 1
        connection = checkout
        id = (@last_id += 1)
        line = read_reply(connection, "{\"id\":#{id}#{payload}}\n", op)
        handle_reply(connection, line, id, op)
      rescue Connection::Lost => e
        # Nothing went out (the peer was gone before the first byte), or the op is safe to
        # repeat: once more, on a fresh connection.
        retry if attempts == 1 && (!e.sent || SAFE_TO_REPEAT.include?(op))
        raise ConnectionError.new(
          "#{e.message} during #{op}" + (e.sent ? "; the outcome is unknown" : ""), request_sent: e.sent
        )
      end
    end

    # Writes the request and reads one reply line. Any failure, timeout or interruption (a
    # Thread#raise, Timeout.timeout) drops the connection, so a late reply can never be taken
    # for the answer to a later request.
    def read_reply(connection, request, op)
      done = false
      begin
        begin
          connection.write(request, @read_timeout)
        rescue Connection::Lost
          # The daemon may have answered and closed (request_too_large): take that reply.
          line = early_reply(connection)
          raise unless line
        end
        line ||= connection.read_line(@read_timeout, @max_reply_bytes)
        done = true
        line
      rescue Connection::ReadTimeout
        raise TimeoutError.new("no reply from magiclinkd within #{@read_timeout} s for #{op}; the outcome is unknown",
                               request_sent: true)
      rescue Connection::TooLong
        raise ProtocolError.new("reply from magiclinkd to #{op} is longer than #{@max_reply_bytes} bytes",
                                request_sent: true)
      ensure
        drop(connection) unless done
      end
    end

    def early_reply(connection)
      connection.read_line(nil, @max_reply_bytes)
    rescue Connection::Lost, Connection::ReadTimeout, Connection::TooLong
      nil
    end

    def handle_reply(connection, line, id, op)
      reply = decode(line)
      unless reply.is_a?(Hash) && (reply["ok"] == true || reply["ok"] == false)
        protocol_error(connection, "reply from magiclinkd to #{op} is not a reply object")
      end
      # The daemon answers `"id": null` when it could not read the request's id; with one request
      # in flight that is still the answer to it, and it is always an error.
      unless reply["id"] == id && reply["id"].is_a?(Integer) || (reply["id"].nil? && reply["ok"] == false)
        protocol_error(connection, "reply from magiclinkd to #{op} has the wrong id")
      end

      if reply["ok"]
        result = reply["result"]
        protocol_error(connection, "reply from magiclinkd to #{op} has no result object") unless result.is_a?(Hash)
        return result
      end

      error = reply["error"]
      unless error.is_a?(Hash) && error["code"].is_a?(String)
        protocol_error(connection, "reply from magiclinkd to #{op} has no error object")
      end
      drop(connection) if error["code"] == "request_too_large" # the daemon closes it
      raise ServerError.from_wire(error)
    end

    def decode(line)
      line.force_encoding(Encoding::UTF_8)
      return nil unless line.valid_encoding?

      JSON.parse(line)
    rescue JSON::ParserError
      nil
    end

    def protocol_error(connection, message)
      drop(connection)
      raise ProtocolError.new(message, request_sent: true)
    end

    def checkout
      if @connection && !@connection.reusable?
        # Closed by the daemon while idle (restart, idle timeout): nothing was sent on it, so
        # reconnecting is safe for every operation.
        @connection.close
        @connection = nil
      end
      @connection ||= begin
        connection = Connection.open(@socket_path, @connect_timeout)
        @connects += 1
        connection
      end
    end

    def drop(connection)
      connection.close
      @connection = nil if @connection.equal?(connection)
    end

    # After fork the child must not use the parent's connection (their requests and replies
    # would interleave): forget it (closing the child's descriptor leaves the parent's intact)
    # and connect anew.
    def forget_inherited_connection
      return unless @connection && @connection.pid != Process.pid

      @connection.close
      @connection = nil
    end

    def encode(value, what)
      JSON.generate(utf8(value, what))
    rescue JSON::GeneratorError, EncodingError
      raise ArgumentError, "#{what} cannot be encoded as JSON"
    end

    # Strings must be UTF-8 (binary strings holding UTF-8, like Rack's, are accepted); floats
    # finite. Messages name the member, never its value.
    def utf8(value, path)
      case value
      when String
        string = value.encoding == Encoding::BINARY ? value.dup.force_encoding(Encoding::UTF_8) : value.encode(Encoding::UTF_8)
        raise ArgumentError, "#{path} is not valid UTF-8" unless string.valid_encoding?

        string
      when Symbol then utf8(value.to_s, path)
      when Hash then value.each_with_object({}) { |(k, v), h| h[utf8(k.to_s, "#{path} key")] = utf8(v, "#{path}.#{k}") }
      when Array then value.each_with_index.map { |v, i| utf8(v, "#{path}[#{i}]") }
      when Float
        raise ArgumentError, "#{path} is not a finite number" unless value.finite?

        value
      when Integer, true, false, nil then value
      else
        raise ArgumentError, "#{path} has a type that cannot be sent (#{value.class})"
      end
    rescue EncodingError
      raise ArgumentError, "#{path} cannot be converted to UTF-8"
    end

    # `params` plus "app" => the client's app, unless it names a (non-nil) app of its own.
    def with_app(params)
      params ||= {}
      return params if params.any? { |k, v| k.to_s == "app" && !v.nil? }

      params.reject { |k, _| k.to_s == "app" }.merge("app" => @app)
    end

    def app_id(app)
      unless (app.is_a?(String) || app.is_a?(Symbol)) && !app.empty?
        raise ArgumentError, "app must be a non-empty String (an id from hello.apps), or nil"
      end

      app.to_s.dup.freeze
    end

    def env_app
      app = ENV.fetch("MAGICLINKD_APP", nil)
      app.nil? || app.empty? ? nil : app.dup.freeze
    end

    def compact(**params)
      params.reject { |_, v| v.nil? }
    end

    def positive(value, name)
      number = Float(value)
      raise ArgumentError, "#{name} must be positive" unless number.positive? && number.finite?

      number
    end

    def env_socket_path
      path = ENV.fetch("MAGICLINKD_SOCKET", nil)
      path.nil? || path.empty? ? nil : path
    end
  end
end
