# frozen_string_literal: true

require_relative "test_helper"

# One client shared by threads, and used on both sides of fork.
class ConcurrencyTest < DaemonTestCase
  def signed_in(c, email)
    started = c.start(email, ip: "203.0.113.30")
    c.callback(daemon.wait_for_token(email), flow: started.flow)
  end

  def test_threads_share_one_client_and_one_connection
    c = client
    logins = %w[t1@example.com t2@example.com t3@example.com].map { |e| signed_in(c, e) }
    errors = Queue.new
    threads = 8.times.map do |n|
      Thread.new do
        40.times do |i|
          login = logins[(n + i) % logins.size]
          case i % 3
          when 0 then errors << "hello" unless c.hello.server == "magiclinkd"
          when 1 then errors << "session #{n}/#{i}" unless c.session(login.session).user == login.user
          else
            begin
              c.session("not-a-session-#{n}-#{i}")
              errors << "no InvalidSession #{n}/#{i}"
            rescue Magiclinkd::InvalidSession
              nil
            end
          end
        end
      rescue StandardError => e
        errors << "#{e.class}: #{e.message}"
      end
    end
    threads.each(&:join)
    assert_empty Array.new(errors.size) { errors.pop }
    assert_equal 1, c.connects
  end

  # Parent and child use the same client object at the same time after fork. Without the pid
  # check they would share one socket and read each other's replies.
  def test_fork_child_opens_its_own_connection
    c = client
    login = signed_in(c, "kim@example.com")
    assert_equal 1, c.connects
    parent_socket = c.instance_variable_get(:@connection).socket

    go_r, go_w = IO.pipe
    out_r, out_w = IO.pipe
    pid = Process.fork do
      go_w.close
      out_r.close
      go_r.read(1)
      failures = 0
      200.times { failures += 1 unless c.session(login.session).user == login.user }
      out_w.write(JSON.generate("failures" => failures, "connects" => c.connects,
                                "same_socket" => c.instance_variable_get(:@connection).socket.equal?(parent_socket)))
      out_w.close
      exit!(0)
    rescue Exception => e # rubocop:disable Lint/RescueException
      out_w.write(JSON.generate("error" => "#{e.class}: #{e.message}"))
      out_w.close
      exit!(1)
    end
    go_r.close
    out_w.close
    go_w.write("g") # both start together
    go_w.close
    200.times { assert_equal login.user, c.session(login.session).user }
    report = JSON.parse(out_r.read)
    out_r.close
    _, status = Process.wait2(pid)

    assert status.success?, "child failed: #{report}"
    assert_equal 0, report["failures"]
    assert_equal 2, report["connects"], "the child opened its own connection"
    refute report["same_socket"]
    assert_equal 1, c.connects, "the parent kept its connection"
    assert c.instance_variable_get(:@connection).socket.equal?(parent_socket)
    assert_equal "magiclinkd", c.hello.server, "the parent's connection still works after the child exits"
    assert_equal 1, c.connects
  end

  def test_fork_then_start_in_the_child
    c = client
    c.hello
    r, w = IO.pipe
    pid = Process.fork do
      r.close
      c.start("leo@example.com", ip: "203.0.113.31")
      w.write("ok")
      exit!(0)
    rescue Exception => e # rubocop:disable Lint/RescueException
      w.write("#{e.class}: #{e.message}")
      exit!(1)
    end
    w.close
    message = r.read
    _, status = Process.wait2(pid)
    assert status.success?, message
    assert_equal "ok", message
    assert daemon.wait_for_token("leo@example.com")
    assert_equal "magiclinkd", c.hello.server
    assert_equal 1, c.connects
  end
end
