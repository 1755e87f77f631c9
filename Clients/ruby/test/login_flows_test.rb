# frozen_string_literal: true

require_relative "test_helper"

# Issue 6 against a real daemon: the flow secret (same browser or confirmation), codes
# (verify_code), peek (scanner-safe links), and the abuse limits of spec section 6.3.
class LoginFlowsTest < DaemonTestCase
  IP = "203.0.113.50"

  # Some tests start twice for one address within a minute.
  def self.daemon_env
    { "MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN" => "0" }
  end

  def test_callback_with_the_right_flow_signs_in_at_once
    c = client
    start = c.start("ann@example.com", redirect: "/account", ip: IP)
    token = daemon.wait_for_token("ann@example.com")
    login = c.callback(token, flow: start.flow, ip: IP)
    assert_equal "ann@example.com", login.user.email
    assert_equal "/account", login.redirect
  end

  # Opened in another browser (no flow, or another one): confirmation_required with the masked
  # address and the time of the request; the token stays usable, and confirm: true signs in.
  def test_confirmation_required_then_confirm
    c = client
    before = Time.now.to_i
    start = c.start("beth@example.com", ip: IP)
    token = daemon.wait_for_token("beth@example.com")

    error = assert_raises(Magiclinkd::ConfirmationRequired) { c.callback(token, ip: IP) }
    assert_equal "confirmation_required", error.code
    refute error.retryable?
    assert_kind_of Magiclinkd::ServerError, error
    assert_equal "b***@example.com", error.email_masked
    assert_kind_of Integer, error.requested_at
    assert_operator error.requested_at, :>=, before - 1
    assert_operator error.requested_at, :<=, Time.now.to_i

    other_flow = c.start("beth2@example.com", ip: IP).flow # a real flow, of another login
    assert_raises(Magiclinkd::ConfirmationRequired) { c.callback(token, flow: other_flow) }
    assert_raises(Magiclinkd::ConfirmationRequired) { c.callback(token, flow: start.flow[0..-2]) }
    assert_raises(Magiclinkd::ConfirmationRequired) { c.callback(token, confirm: false) }
    assert c.peek(token).valid?, "the token is untouched"

    login = c.callback(token, confirm: true, ip: IP)
    assert_equal "beth@example.com", login.user.email
    assert_equal "beth@example.com", c.session(login.session).user.email
    used = assert_raises(Magiclinkd::InvalidToken) { c.callback(token, confirm: true) }
    assert_equal "used", used.reason
  end

  def test_tokens_are_checked_before_the_flow
    error = assert_raises(Magiclinkd::InvalidToken) { client.callback("A" * 43, confirm: true) }
    assert_equal "unknown", error.reason
  end

  def test_verify_code_right_code_signs_in_and_uses_the_link
    c = client
    start = c.start("cleo@example.com", redirect: "/account", ip: IP, send: "both")
    token = daemon.wait_for_token("cleo@example.com")
    code = daemon.wait_for_code("cleo@example.com")
    assert_match(/\A\d{6}\z/, code)

    login = c.verify_code(start.flow, "#{code[0, 3]} #{code[3, 3]}", ip: IP, user_agent: "UA")
    assert_instance_of Magiclinkd::Login, login
    assert_equal "cleo@example.com", login.user.email
    assert_equal "/account", login.redirect
    assert_equal login.user, c.session(login.session).user

    used = assert_raises(Magiclinkd::InvalidToken) { c.callback(token, flow: start.flow) }
    assert_equal "used", used.reason
    again = assert_raises(Magiclinkd::InvalidToken) { c.verify_code(start.flow, code) }
    assert_equal "used", again.reason
  end

  # Three wrong codes: attempts_left 2, 1, 0; then even the right code is refused, while the
  # link still works.
  def test_verify_code_wrong_codes_count_down
    c = client
    start = c.start("dina@example.com", ip: IP, send: "both")
    token = daemon.wait_for_token("dina@example.com")
    code = daemon.wait_for_code("dina@example.com")
    wrong = format("%06d", (code.to_i + 1) % 1_000_000)

    [2, 1, 0].each do |left|
      error = assert_raises(Magiclinkd::InvalidCode) { c.verify_code(start.flow, wrong, ip: IP) }
      assert_equal "invalid_code", error.code
      refute error.retryable?
      assert_equal left, error.attempts_left
    end
    dead = assert_raises(Magiclinkd::InvalidCode) { c.verify_code(start.flow, code) }
    assert_equal 0, dead.attempts_left

    assert_equal "dina@example.com", c.callback(token, flow: start.flow).user.email, "the link still works"
  end

  def test_verify_code_rejects_malformed_codes_without_counting_them
    c = client
    start = c.start("edna@example.com", ip: IP, send: "code")
    code = daemon.wait_for_code("edna@example.com")
    %w[12345 1234567 abcdef].each do |bad|
      error = assert_raises(Magiclinkd::InvalidRequest) { c.verify_code(start.flow, bad) }
      assert_equal "params.code", error.field
    end
    assert_equal "edna@example.com", c.verify_code(start.flow, code).user.email
  end

  def test_verify_code_for_a_flow_without_a_code
    c = client
    start = c.start("fay@example.com", ip: IP) # send: "link"
    daemon.wait_for_token("fay@example.com")
    error = assert_raises(Magiclinkd::InvalidCode) { c.verify_code(start.flow, "123456") }
    assert_equal 0, error.attempts_left
    unknown = assert_raises(Magiclinkd::InvalidToken) { c.verify_code("B" * 43, "123456") }
    assert_equal "unknown", unknown.reason
  end

  # peek never consumes the token; it says whether the flow matches, and admin_status counts
  # what became of peeked links.
  def test_peek
    c = client
    first = c.start("gus@example.com", ip: IP)
    first_token = daemon.wait_for_token("gus@example.com", count: 1)

    matching = c.peek(first_token, flow: first.flow)
    assert_instance_of Magiclinkd::PeekResult, matching
    assert matching.valid?
    assert_nil matching.reason
    assert matching.flow_matches?
    assert_equal "g***@example.com", matching.email_masked
    assert_equal first.expires_at, matching.expires_at

    other = c.peek(first_token)
    assert other.valid?
    refute other.flow_matches?
    assert_equal 3, 3.times.count { c.peek(first_token, flow: "x").valid? }, "peek consumes nothing"

    unknown = c.peek("C" * 43, flow: first.flow)
    refute unknown.valid?
    assert_equal "unknown", unknown.reason
    refute unknown.flow_matches?
    assert_nil unknown.email_masked
    assert_nil unknown.expires_at

    second = c.start("gus@example.com", ip: IP) # replaces the first link, peeked, never used
    second_token = daemon.wait_for_token("gus@example.com", count: 2)
    replaced = c.peek(first_token, flow: first.flow)
    refute replaced.valid?
    assert_equal "expired", replaced.reason
    assert_equal "g***@example.com", replaced.email_masked

    assert c.peek(second_token, flow: second.flow).flow_matches?
    c.callback(second_token, flow: second.flow)
    used = c.peek(second_token, flow: second.flow)
    refute used.valid?
    assert_equal "used", used.reason

    links = c.admin_status.links
    assert_instance_of Magiclinkd::LinkCounts, links
    assert_equal 1, links.peeked_never_used
    assert_equal 1, links.peeked_then_used
  end

  def test_peek_needs_a_token
    error = assert_raises(Magiclinkd::InvalidRequest) { client.call("peek", { "flow" => "x" }) }
    assert_equal "params.token", error.field
  end

  def test_per_address_cooldown_is_off_here
    c = client
    c.start("hal@example.com", ip: IP)
    assert_instance_of Magiclinkd::StartResult, c.start("hal@example.com", ip: IP)
  end

  # 30 failures (invalid_session, invalid_token, invalid_code) from one ip: that ip is
  # throttled for callback, verify_code and failed session checks; a valid session is still
  # answered there (a shared NAT must not sign everyone out); other ips are not throttled.
  def test_failure_throttle_per_ip
    c = client
    start = c.start("ike@example.com", ip: "198.51.100.200")
    login = c.callback(daemon.wait_for_token("ike@example.com"), flow: start.flow, ip: "198.51.100.200")

    bad_ip = "198.51.100.66"
    10.times { |i| assert_raises(Magiclinkd::InvalidSession) { c.session("no-such-session-#{i}", ip: bad_ip) } }
    10.times { |i| assert_raises(Magiclinkd::InvalidToken) { c.callback("no-such-token-#{i}", ip: bad_ip) } }
    10.times { |i| assert_raises(Magiclinkd::InvalidToken) { c.verify_code("no-such-flow-#{i}", "123456", ip: bad_ip) } }

    assert_equal login.user, c.session(login.session, ip: bad_ip).user
    limited = assert_raises(Magiclinkd::RateLimited) { c.session("no-such-session-x", ip: bad_ip) }
    assert limited.retryable?
    assert_operator limited.retry_after, :>, 0
    assert_operator limited.retry_after, :<=, 900
    assert_raises(Magiclinkd::RateLimited) { c.callback("A" * 43, ip: bad_ip) }
    assert_raises(Magiclinkd::RateLimited) { c.verify_code("A" * 43, "123456", ip: bad_ip) }

    assert_equal login.user, c.session(login.session, ip: "198.51.100.67").user
    assert_equal login.user, c.session(login.session).user, "calls without ip are not throttled"
  end
end

# The default per-address cooldown: a second start for one address within 60 s is refused.
class CooldownTest < DaemonTestCase
  def test_second_start_within_the_cooldown_is_rate_limited
    c = client
    c.start("jo@example.com", ip: "203.0.113.60")
    error = assert_raises(Magiclinkd::RateLimited) { c.start("JO@example.com", ip: "203.0.113.61", send: "code") }
    assert error.retryable?
    assert_operator error.retry_after, :>, 0
    assert_operator error.retry_after, :<=, 60
    assert_instance_of Magiclinkd::StartResult, c.start("kay@example.com", ip: "203.0.113.60"),
                       "other addresses are not held back"
  end
end

# flow_binding: strict: a link opened without its flow gets flow_mismatch, confirmed or not.
class StrictFlowTest < DaemonTestCase
  def self.daemon_env
    { "MAGICLINKD_FLOW_BINDING" => "strict" }
  end

  def test_flow_mismatch_even_when_confirmed
    c = client
    start = c.start("lou@example.com", ip: "203.0.113.70")
    token = daemon.wait_for_token("lou@example.com")
    [{}, { confirm: true }, { flow: "x" * 43, confirm: true }].each do |options|
      error = assert_raises(Magiclinkd::FlowMismatch, options.inspect) { c.callback(token, **options) }
      assert_equal "flow_mismatch", error.code
      refute error.retryable?
    end
    assert c.peek(token).valid?, "the token is untouched"
    assert_equal "lou@example.com", c.callback(token, flow: start.flow).user.email
  end
end
