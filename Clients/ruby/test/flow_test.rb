# frozen_string_literal: true

require_relative "test_helper"

# Whole flows against a real daemon (its own for each test): login, logout, replay, rate
# limits, input errors, the admin view of sessions.
class FlowTest < DaemonTestCase
  UA = "Mozilla/5.0 (minitest)"

  # Several tests start twice for one address within a minute.
  def self.daemon_env
    { "MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN" => "0" }
  end

  def login(c, email, ip: "203.0.113.10", redirect: "/account", count: 1)
    started = c.start(email, redirect: redirect, ip: ip, user_agent: UA)
    assert_instance_of Magiclinkd::StartResult, started
    token = daemon.wait_for_token(email, count: count)
    c.callback(token, flow: started.flow, ip: ip, user_agent: UA)
  end

  def test_full_login_flow
    c = client
    now = Time.now.to_i
    started = c.start("Alice@Example.com", redirect: "/account", ip: "203.0.113.10", user_agent: UA)
    assert_operator started.expires_at, :>, now
    assert_operator started.expires_at, :<=, now + 700
    assert_match(/\A[A-Za-z0-9_-]{43}\z/, started.flow)

    token = daemon.wait_for_token("Alice@example.com")
    assert_match(/\A[A-Za-z0-9_-]{43}\z/, token)
    refute_equal token, started.flow

    login = c.callback(token, flow: started.flow, ip: "203.0.113.10", user_agent: UA)
    assert_instance_of Magiclinkd::Login, login
    assert_match(/\A[A-Za-z0-9_-]{43}\z/, login.session)
    assert_equal "/account", login.redirect
    assert_equal "Alice@example.com", login.user.email
    assert_match(/\A\h{8}-\h{4}-\h{4}-\h{4}-\h{12}\z/, login.user.id)
    assert_operator login.expires_at, :>, now + 29 * 86_400
    assert_operator login.idle_expires_at, :>, now
    assert_operator login.idle_expires_at, :<=, login.expires_at

    info = c.session(login.session)
    assert_instance_of Magiclinkd::SessionInfo, info
    assert_equal login.user, info.user
    assert_equal login.expires_at, info.expires_at

    assert_nil c.logout(login.session)
    assert_raises(Magiclinkd::InvalidSession) { c.session(login.session) }
    assert_nil c.logout(login.session), "logout is idempotent"

    replay = assert_raises(Magiclinkd::InvalidToken) { c.callback(token, flow: started.flow) }
    assert_equal "used", replay.reason
    assert_equal "invalid_token", replay.code
    refute replay.retryable?
    assert_equal 1, c.connects, "one persistent connection for the whole flow"
  end

  def test_user_id_is_stable_and_logout_all_ends_every_session
    c = client
    first = login(c, "bob@example.com", count: 1)
    second = login(c, "BOB@example.com", count: 2)
    assert_equal first.user.id, second.user.id
    refute_equal first.session, second.session

    assert_equal 2, c.logout_all(first.user.id)
    assert_raises(Magiclinkd::InvalidSession) { c.session(first.session) }
    assert_raises(Magiclinkd::InvalidSession) { c.session(second.session) }
    assert_equal 0, c.logout_all(first.user.id)
  end

  def test_unknown_and_replaced_tokens
    c = client
    unknown = assert_raises(Magiclinkd::InvalidToken) { c.callback("A" * 43) }
    assert_equal "unknown", unknown.reason

    old_flow = c.start("carol@example.com", ip: "203.0.113.11").flow
    old_token = daemon.wait_for_token("carol@example.com", count: 1)
    new_flow = c.start("carol@example.com", ip: "203.0.113.11").flow
    new_token = daemon.wait_for_token("carol@example.com", count: 2)
    replaced = assert_raises(Magiclinkd::InvalidToken) { c.callback(old_token, flow: old_flow) }
    assert_equal "expired", replaced.reason
    assert_equal "/", c.callback(new_token, flow: new_flow).redirect, "the default redirect"
  end

  def test_rate_limit_on_the_sixth_start_for_one_address
    c = client
    5.times { |i| c.start("dave@example.com", ip: "198.51.100.#{i + 1}") }
    error = assert_raises(Magiclinkd::RateLimited) { c.start("dave@example.com", ip: "198.51.100.9") }
    assert_equal "rate_limited", error.code
    assert error.retryable?
    assert_kind_of Integer, error.retry_after
    assert_operator error.retry_after, :>, 0
    assert_operator error.retry_after, :<=, 3600
    assert_kind_of Magiclinkd::ServerError, error
  end

  def test_rate_limit_on_the_sixth_start_for_one_address_holds_for_codes_too
    c = client
    5.times { |i| c.start("dave2@example.com", ip: "198.51.100.#{i + 20}", send: i.even? ? "code" : "both") }
    error = assert_raises(Magiclinkd::RateLimited) { c.start("dave2@example.com", ip: "198.51.100.30", send: "code") }
    assert_operator error.retry_after, :>, 0
  end

  def test_invalid_send
    error = assert_raises(Magiclinkd::InvalidRequest) { client.start("ivy@example.com", ip: "203.0.113.15", send: "sms") }
    assert_equal "params.send", error.field
  end

  def test_invalid_email
    error = assert_raises(Magiclinkd::InvalidEmail) { client.start("not an address", ip: "203.0.113.12") }
    assert_equal "invalid_email", error.code
    refute error.retryable?
  end

  def test_redirect_not_allowed
    c = client
    error = assert_raises(Magiclinkd::RedirectNotAllowed) do
      c.start("erin@example.com", redirect: "https://evil.example/", ip: "203.0.113.13")
    end
    assert_equal "redirect_not_allowed", error.code
    assert_instance_of Magiclinkd::StartResult,
                       c.start("erin@example.com", redirect: "https://app.example.com/welcome", ip: "203.0.113.13")
  end

  def test_invalid_request_names_the_field
    error = assert_raises(Magiclinkd::InvalidRequest) { client.start("frank@example.com", ip: "not-an-ip") }
    assert_equal "params.ip", error.field
    error = assert_raises(Magiclinkd::UnknownOp) { client.call("frobnicate") }
    assert_equal "frobnicate", error.op
  end

  def test_nil_keyword_arguments_are_not_sent
    c = client
    started = c.start("gina@example.com", redirect: nil, ip: "203.0.113.14", user_agent: nil, locale: nil,
                                          send: nil)
    login = c.callback(daemon.wait_for_token("gina@example.com"), flow: started.flow, confirm: nil, ip: nil,
                                                                  user_agent: nil)
    assert_equal "/", login.redirect
    assert_equal login.user, c.session(login.session, ip: nil).user
  end

  def test_admin_operations
    c = client # the test runs as root, an administrator
    login = login(c, "hank@example.com", ip: "192.0.2.10")

    status = c.admin_status
    assert_instance_of Magiclinkd::AdminStatus, status
    assert_equal 1, status.users
    assert_equal 1, status.live_sessions
    assert_instance_of Magiclinkd::MailCounts, status.mail
    assert_equal Magiclinkd::LinkCounts.new(peeked_never_used: 0, peeked_then_used: 0), status.links
    assert_instance_of Magiclinkd::SessionCacheCounts, status.session_cache
    assert_operator status.session_cache.capacity, :>, 0

    sessions = c.admin_sessions(email: "hank@example.com")
    assert_equal 1, sessions.size
    entry = sessions.first
    assert_instance_of Magiclinkd::AdminSession, entry
    assert_equal login.user.id, entry.user_id
    assert_equal "192.0.2.10", entry.ip
    assert_equal UA, entry.user_agent
    assert_match(/\A\h{16}\z/, entry.handle)
    assert_equal sessions, c.admin_sessions(user_id: login.user.id)

    error = assert_raises(Magiclinkd::InvalidRequest) { c.admin_sessions }
    assert_equal "params.user_id", error.field

    assert_equal 1, c.admin_revoke(handle: entry.handle)
    assert_raises(Magiclinkd::InvalidSession) { c.session(login.session) }
    assert_equal 0, c.admin_revoke(user_id: login.user.id)

    assert_equal [], c.admin_dead_letters(limit: 10)
    retried = c.admin_retry("nothing@localhost")
    refute retried.retried?
    assert_equal "not_found", retried.reason
    assert_kind_of Integer, c.admin_purge
  end

  def test_hello
    info = client.hello
    assert_instance_of Magiclinkd::ServerInfo, info
    assert_equal "magiclinkd", info.server
    assert_equal Magiclinkd::PROTOCOL_VERSION, info.protocol
    assert_includes info.ops, "logout_all"
    assert_includes info.ops, "verify_code"
    assert_includes info.ops, "peek"
    assert_equal 65_536, info.max_line_bytes
  end

  def test_request_too_large_then_the_client_reconnects
    c = client
    c.hello
    error = assert_raises(Magiclinkd::RequestTooLarge) { c.session("s" * 70_000) }
    assert_equal 65_536, error.max_line_bytes
    assert_equal "magiclinkd", c.hello.server
    assert_equal 2, c.connects
  end
end
