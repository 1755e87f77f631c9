# frozen_string_literal: true

# Shared setup for the minitest suite. Run from the repository root:
#   ruby -IClients/ruby/lib -IClients/ruby/test -e 'Dir["Clients/ruby/test/**/*_test.rb"].sort.each { |f| require File.expand_path(f) }'
# The daemon binary comes from MAGICLINKD_BIN, else <repo>/.build/debug/magiclinkd.

$LOAD_PATH.push(File.expand_path("../lib", __dir__)) unless $LOAD_PATH.include?(File.expand_path("../lib", __dir__))

require "minitest/autorun"
require "magiclinkd"
require "json"
require "tmpdir"
require "fileutils"
require "socket"
require_relative "support/daemon"
require_relative "support/fake_server"

# The tests give each client its app themselves: an app from the environment running them
# would go with every request, to daemons that do not serve it.
ENV.delete("MAGICLINKD_APP")

module TestSupport
  REPO_ROOT = File.expand_path("../../..", __dir__)

  # Polls `block` until it returns a truthy value or `timeout` seconds pass; returns the value
  # or nil.
  def self.wait_until(timeout: 10, interval: 0.01)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value
      return nil if Process.clock_gettime(Process::CLOCK_MONOTONIC) >= deadline

      sleep interval
    end
  end

  def self.monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

# A test case with its own daemon, started before each test and stopped (expecting exit 0)
# after it.
class DaemonTestCase < Minitest::Test
  attr_reader :daemon

  # Extra MAGICLINKD_* settings for this class's daemons (override in subclasses).
  def self.daemon_env
    {}
  end

  # YAML configuration for this class's daemons (MAGICLINKD_CONFIG), or nil for env vars only.
  def self.daemon_config
    nil
  end

  def setup
    super
    @clients = []
    daemon = TestSupport::Daemon.new(extra_env: self.class.daemon_env, config: self.class.daemon_config)
    begin
      daemon.start
    rescue StandardError
      daemon.remove_dir
      raise
    end
    @daemon = daemon
  end

  def teardown
    @clients&.each(&:close)
    if @daemon
      status = @daemon.stop
      @daemon.remove_dir
      assert_equal 0, status, "magiclinkd did not exit 0 on SIGTERM:\n#{@daemon.log}" unless status.nil?
    end
    super
  end

  def client(**options)
    c = Magiclinkd::Client.new(socket_path: daemon.socket_path, **options)
    @clients << c
    c
  end
end
