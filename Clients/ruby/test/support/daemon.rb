# frozen_string_literal: true

require "tmpdir"
require "fileutils"

module TestSupport
  # A real magiclinkd started for a test: own short temp dir under /tmp, configured by
  # environment variables (every inherited MAGICLINKD_* variable removed), or, given `config`
  # (YAML text, e.g. with `apps:`), by that file in MAGICLINKD_CONFIG plus only the variables
  # for the socket, database and outbox (the callback URL and origins would win over the file);
  # stopped with SIGTERM.
  class Daemon
    CALLBACK_URL = "https://app.example.com/auth/callback"
    ORIGIN = "https://app.example.com"

    def self.binary
      bin = ENV.fetch("MAGICLINKD_BIN", "")
      bin = File.join(REPO_ROOT, ".build", "debug", "magiclinkd") if bin.empty?
      unless File.file?(bin) && File.executable?(bin)
        raise "magiclinkd binary not found at #{bin}: set MAGICLINKD_BIN to a built magiclinkd " \
              "(or build .build/debug/magiclinkd)"
      end
      bin
    end

    attr_reader :dir, :pid

    def initialize(extra_env: {}, config: nil)
      @binary = self.class.binary
      @dir = Dir.mktmpdir("mldrb", "/tmp")
      @extra_env = extra_env
      @config = config
      @pid = nil
    end

    def socket_path = File.join(@dir, "d.sock")
    def outbox = File.join(@dir, "outbox")
    def log_path = File.join(@dir, "daemon.log")
    def config_path = File.join(@dir, "config.yaml")

    def log
      File.exist?(log_path) ? File.read(log_path) : "(no log)"
    end

    def env
      cleaned = ENV.keys.grep(/\AMAGICLINKD_/).to_h { |k| [k, nil] }
      env = cleaned.merge(
        "MAGICLINKD_SOCKET" => socket_path,
        "MAGICLINKD_DATABASE" => File.join(@dir, "db.sqlite"),
        "MAGICLINKD_OUTBOX_DIR" => outbox,
        "MAGICLINKD_MAIL_TRANSPORT" => "outbox"
      )
      if @config
        env["MAGICLINKD_CONFIG"] = config_path
      else
        env["MAGICLINKD_CALLBACK_URL"] = CALLBACK_URL
        env["MAGICLINKD_ALLOWED_REDIRECT_ORIGINS"] = ORIGIN
      end
      env.merge(@extra_env)
    end

    # Starts the daemon and waits (bounded) until `hello` answers.
    def start(timeout: 20)
      raise "already running" if running?

      File.write(config_path, @config) if @config
      @pid = Process.spawn(env, @binary, "serve", chdir: @dir, in: File::NULL,
                                                            %i[out err] => [log_path, "a"])
      ready = TestSupport.wait_until(timeout: timeout, interval: 0.02) do
        if (status = reap)
          raise "magiclinkd exited (#{status.inspect}) before it was ready:\n#{log}"
        end

        begin
          Magiclinkd::Client.open(socket_path: socket_path, connect_timeout: 0.5, read_timeout: 2, &:hello)
        rescue Magiclinkd::TransportError
          nil
        end
      end
      raise "magiclinkd did not answer hello within #{timeout} s:\n#{log}" unless ready

      self
    rescue StandardError
      kill
      raise
    end

    # SIGKILL and reap, for a daemon that failed to start.
    def kill
      return unless running?

      Process.kill("KILL", @pid)
      Process.wait(@pid)
    rescue SystemCallError
      nil
    ensure
      @pid = nil
    end

    def running?
      !@pid.nil?
    end

    # SIGTERM, then wait (bounded); returns the exit status (Integer), or nil if not running.
    def stop(timeout: 20)
      return nil unless running?

      begin
        Process.kill("TERM", @pid)
      rescue Errno::ESRCH
        nil
      end
      status = TestSupport.wait_until(timeout: timeout) { reap }
      unless status
        kill
        raise "magiclinkd did not stop within #{timeout} s of SIGTERM:\n#{log}"
      end
      status.exitstatus || -status.termsig.to_i
    end

    # Stops and starts again on the same socket, database and outbox.
    def restart
      status = stop
      raise "magiclinkd exited #{status} on SIGTERM:\n#{log}" unless status.zero?

      start
    end

    def remove_dir
      FileUtils.rm_rf(@dir)
    end

    # Mail files (Maildir new/) addressed to `to`, oldest first.
    def mails_to(to)
      Dir[File.join(outbox, "new", "*")].sort_by { |f| File.mtime(f) }.select do |f|
        File.read(f, mode: "rb").match?(/^To: #{Regexp.escape(to)}\r?$/i)
      end
    end

    # Waits for the `count`-th mail to `to` and returns the login token from its link.
    def wait_for_token(to, count: 1, timeout: 15)
      self.class.token_from_mail(wait_for_mail(to, count: count, timeout: timeout))
    end

    # Waits for the `count`-th mail to `to` and returns the 6-digit code in it.
    def wait_for_code(to, count: 1, timeout: 15)
      self.class.code_from_mail(wait_for_mail(to, count: count, timeout: timeout))
    end

    # The raw text of the `count`-th mail to `to`, once it is there.
    def wait_for_mail(to, count: 1, timeout: 15)
      files = TestSupport.wait_until(timeout: timeout) do
        found = mails_to(to)
        found.size >= count ? found : nil
      end
      raise "no mail number #{count} to #{to} in #{outbox}/new within #{timeout} s" unless files

      File.read(files[count - 1], mode: "rb")
    end

    # Quoted-printable: soft line breaks, then =XX escapes (decoding the whole message is fine
    # for finding the link and the code).
    def self.decode_mail(raw)
      raw.gsub("\r\n", "\n").gsub("=\n", "").gsub(/=(\h\h)/) { Regexp.last_match(1).hex.chr }
    end

    # The login link (callback URL and token) in a mail.
    def self.link_from_mail(raw)
      link = decode_mail(raw)[%r{https?://[^\s"<>?]+[?&]token=[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])}]
      raise "no token link in mail" unless link

      link
    end

    def self.token_from_mail(raw)
      token = decode_mail(raw)[/[?&]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])/, 1]
      raise "no token link in mail" unless token

      token
    end

    # The code stands alone on an indented line of the text part.
    def self.code_from_mail(raw)
      code = decode_mail(raw)[/^[ \t]+(\d{6})[ \t]*$/, 1]
      raise "no code in mail" unless code

      code
    end

    private

    def reap
      return nil unless @pid

      pid, status = Process.waitpid2(@pid, Process::WNOHANG)
      return nil unless pid

      @pid = nil
      status
    end
  end
end
