# frozen_string_literal: true

require_relative "test_helper"

# A real daemon restarted between two calls (SIGTERM, then a new one on the same socket path
# and database): the client notices the dead idle connection and reconnects silently.
class RestartTest < DaemonTestCase
  def test_hello_and_session_survive_a_daemon_restart
    c = client
    started = c.start("ida@example.com", ip: "203.0.113.20")
    login = c.callback(daemon.wait_for_token("ida@example.com"), flow: started.flow)
    assert_equal "magiclinkd", c.hello.server
    assert_equal 1, c.connects

    daemon.restart

    assert_equal "magiclinkd", c.hello.server
    assert_equal 2, c.connects
    daemon.restart
    assert_equal login.user, c.session(login.session).user
    assert_equal 3, c.connects
  end

  def test_peek_survives_a_daemon_restart
    c = client
    started = c.start("ivan@example.com", ip: "203.0.113.22")
    token = daemon.wait_for_token("ivan@example.com")
    assert c.peek(token, flow: started.flow).flow_matches?
    daemon.restart
    peeked = c.peek(token, flow: started.flow)
    assert peeked.valid?
    assert peeked.flow_matches?
    assert_equal 2, c.connects
  end

  # Nothing was sent on the dead connection, so even an op that is not safe to repeat goes
  # through on the new one.
  def test_start_after_a_restart_reconnects_without_error
    c = client
    c.hello
    daemon.restart
    assert_instance_of Magiclinkd::StartResult, c.start("jack@example.com", ip: "203.0.113.21")
    assert_equal 2, c.connects
    assert daemon.wait_for_token("jack@example.com")
  end

  def test_daemon_down_is_a_connection_error_and_recovery_follows
    c = client
    c.hello
    status = daemon.stop
    assert_equal 0, status, daemon.log
    error = assert_raises(Magiclinkd::ConnectionError) { c.hello }
    refute error.request_sent?
    daemon.start
    assert_equal "magiclinkd", c.hello.server
  end
end
