# frozen_string_literal: true

require "socket"
require "io/wait"
require_relative "errors"

module Magiclinkd
  # @api private
  # One Unix socket connection to the daemon: connect with a timeout, write a line, read a line.
  # Not thread-safe on its own; Client serialises access with its mutex.
  class Connection
    # The peer went away (EOF, EPIPE, ECONNRESET). `sent` says whether any request byte may have
    # reached the daemon.
    class Lost < StandardError
      attr_reader :sent

      def initialize(message, sent:)
        super(message)
        @sent = sent
      end
    end

    # Raised by #read_line when no reply came in time.
    class ReadTimeout < StandardError; end

    # Raised by #read_line when a reply line exceeds the cap.
    class TooLong < StandardError; end

    CHUNK = 65_536

    attr_reader :pid, :socket

    def self.open(path, timeout)
      new(connect_socket(path, timeout))
    end

    def self.connect_socket(path, timeout)
      begin
        address = Socket.pack_sockaddr_un(path)
      rescue ArgumentError
        raise ConnectionError, "cannot connect to magiclinkd: socket path is too long (#{path})"
      end
      sock = Socket.new(Socket::AF_UNIX, Socket::SOCK_STREAM, 0)
      connected = false
      begin
        wait_connected(sock, address, path, timeout)
        connected = true
        sock
      rescue Errno::ENOENT, Errno::ENOTDIR
        raise ConnectionError, "cannot connect to magiclinkd at #{path}: no such socket (is the daemon running?)"
      rescue Errno::ECONNREFUSED
        raise ConnectionError, "cannot connect to magiclinkd at #{path}: connection refused (is the daemon running?)"
      rescue Errno::EACCES, Errno::EPERM
        raise ConnectionError, "cannot connect to magiclinkd at #{path}: permission denied (is this user in the socket's group?)"
      rescue SystemCallError => e
        raise ConnectionError, "cannot connect to magiclinkd at #{path}: #{e.class.name.split('::').last}"
      ensure
        sock.close unless connected
      end
    end

    def self.wait_connected(sock, address, path, timeout)
      deadline = now + timeout
      loop do
        case sock.connect_nonblock(address, exception: false)
        when 0 then return
        when :wait_writable
          # In progress: wait, then ask again (EISCONN means done).
          raise_connect_timeout(path, timeout) unless sock.wait_writable([deadline - now, 0].max)
        end
      rescue Errno::EISCONN
        return
      rescue Errno::EAGAIN
        # A Unix socket whose accept backlog is full: nothing is in progress, so try again until
        # the deadline (the daemon is overloaded or not accepting).
        raise_connect_timeout(path, timeout) if now >= deadline
        sleep([0.005, deadline - now].min)
      end
    end

    def self.raise_connect_timeout(path, timeout)
      raise TimeoutError, "connecting to magiclinkd at #{path} timed out after #{timeout} s"
    end

    def self.now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def initialize(socket)
      @socket = socket
      @pid = Process.pid
      @buffer = String.new(capacity: CHUNK, encoding: Encoding::BINARY)
    end

    # True when the idle connection can be reused: the peer has not closed it and sent nothing
    # unasked. Never blocks.
    def reusable?
      return false if @socket.closed? || !@buffer.empty?

      @socket.read_nonblock(1, exception: false) == :wait_readable
    rescue IOError, SystemCallError
      false
    end

    # Writes all of `data` within `timeout` seconds.
    def write(data, timeout)
      deadline = self.class.now + timeout
      written = 0
      while written < data.bytesize
        n = @socket.write_nonblock(data.byteslice(written..), exception: false)
        if n == :wait_writable
          remaining = deadline - self.class.now
          raise ReadTimeout if remaining <= 0 || !@socket.wait_writable(remaining)
        else
          written += n
        end
      end
    rescue Errno::EPIPE, Errno::ECONNRESET, Errno::ENOTCONN, IOError => e
      raise Lost.new("connection lost while sending (#{e.class.name.split('::').last})", sent: written.positive?)
    end

    # Reads one line (without its line feed and an optional carriage return before it).
    # `timeout` nil means: only what is already there (raise ReadTimeout otherwise).
    def read_line(timeout, max_bytes)
      deadline = timeout && self.class.now + timeout
      loop do
        if (index = @buffer.index("\n"))
          raise TooLong if index > max_bytes

          line = @buffer.slice!(0, index + 1)
          line.chomp!("\n")
          line.chomp!("\r")
          return line
        end
        raise TooLong if @buffer.bytesize > max_bytes

        chunk = @socket.read_nonblock(CHUNK, exception: false)
        case chunk
        when :wait_readable
          remaining = deadline ? deadline - self.class.now : 0
          raise ReadTimeout if remaining <= 0 || !@socket.wait_readable(remaining)
        when nil
          raise Lost.new("connection closed by magiclinkd before the reply", sent: true)
        else
          @buffer << chunk
        end
      end
    rescue Errno::ECONNRESET, Errno::EPIPE, Errno::ENOTCONN, IOError => e
      raise Lost.new("connection lost while waiting for the reply (#{e.class.name.split('::').last})", sent: true)
    end

    # Closes this process's descriptor. Never shuts the connection down, so a copy inherited
    # across fork (or held by the parent) is not disturbed.
    def close
      @socket.close unless @socket.closed?
    rescue IOError, SystemCallError
      nil
    end

    def inspect
      "#<#{self.class.name} fd=#{@socket.closed? ? 'closed' : @socket.fileno} pid=#{@pid}>"
    end
  end
end
