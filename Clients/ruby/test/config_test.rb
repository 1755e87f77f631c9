# frozen_string_literal: true

require_relative "test_helper"

# Socket path selection: argument, else MAGICLINKD_SOCKET, else the systemd path.
class ConfigTest < DaemonTestCase
  def with_env(value)
    saved = ENV.fetch("MAGICLINKD_SOCKET", nil)
    value.nil? ? ENV.delete("MAGICLINKD_SOCKET") : ENV["MAGICLINKD_SOCKET"] = value
    yield
  ensure
    saved.nil? ? ENV.delete("MAGICLINKD_SOCKET") : ENV["MAGICLINKD_SOCKET"] = saved
  end

  def test_env_var_selects_the_socket
    with_env(daemon.socket_path) do
      c = Magiclinkd::Client.new
      @clients << c
      assert_equal daemon.socket_path, c.socket_path
      assert_equal "magiclinkd", c.hello.server
    end
  end

  def test_argument_wins_over_the_env_var
    with_env("/nonexistent/elsewhere.sock") do
      c = client
      assert_equal daemon.socket_path, c.socket_path
      assert_equal "magiclinkd", c.hello.server
    end
  end

  def test_default_is_the_systemd_socket
    with_env(nil) do
      assert_equal "/run/magiclinkd/magiclinkd.sock", Magiclinkd::Client.new.socket_path
    end
    with_env("") do
      assert_equal Magiclinkd::Client::DEFAULT_SOCKET_PATH, Magiclinkd::Client.new.socket_path
    end
  end

  def test_timeouts_are_configurable_and_default_sensibly
    c = Magiclinkd::Client.new(socket_path: "/x.sock")
    assert_equal 1.0, c.connect_timeout
    assert_equal 5.0, c.read_timeout
    c = Magiclinkd::Client.new(socket_path: "/x.sock", connect_timeout: 0.25, read_timeout: 2)
    assert_equal 0.25, c.connect_timeout
    assert_equal 2.0, c.read_timeout
  end

  def test_open_with_a_block_closes_the_connection
    c = nil
    server = Magiclinkd::Client.open(socket_path: daemon.socket_path) do |client|
      c = client
      client.hello.server
    end
    assert_equal "magiclinkd", server
    refute_match(/connected=true/, c.inspect)
  end
end
