# frozen_string_literal: true

require "socket"
require "tmpdir"
require "fileutils"

module TestSupport
  # A Unix socket server for what the real daemon cannot do (never answer, answer garbage,
  # close mid-request). The handler gets each accepted connection and its 0-based index; it runs
  # in its own thread. Lines received are recorded in #requests.
  class FakeServer
    attr_reader :path, :requests

    def initialize(&handler)
      @dir = Dir.mktmpdir("mldfk", "/tmp")
      @path = File.join(@dir, "f.sock")
      @server = UNIXServer.new(@path)
      @handler = handler
      @requests = Queue.new
      @accepted = 0
      @lock = Mutex.new
      @connections = []
      @threads = []
      @acceptor = Thread.new { accept_loop }
      @acceptor.report_on_exception = false
    end

    def accepted
      @lock.synchronize { @accepted }
    end

    # Reads one request line from `conn` (nil at EOF) and records it.
    def read_request(conn)
      line = conn.gets("\n")
      @requests << line.chomp if line
      line
    end

    # The `id` of a request line.
    def self.id_of(line)
      JSON.parse(line)["id"]
    end

    def close
      @acceptor.kill
      @threads.each(&:kill)
      @threads.each { |t| t.join(2) }
      @server.close unless @server.closed?
      @connections.each { |c| c.close unless c.closed? }
      FileUtils.rm_rf(@dir)
    end

    private

    def accept_loop
      loop do
        conn = @server.accept
        index = @lock.synchronize do
          @connections << conn
          (@accepted += 1) - 1
        end
        thread = Thread.new do
          @handler.call(conn, index)
        rescue IOError, SystemCallError
          nil
        end
        thread.report_on_exception = false
        @threads << thread
      end
    end
  end
end
