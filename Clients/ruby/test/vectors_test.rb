# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/strict_json"

# Runs every case of every Protocol/vectors/*.json file against one real daemon, with the
# matching rules of Protocol/vectors/README.md. One test method per case, named after it.
#
# Cases whose request line is a valid request envelope (a strict JSON object with a string `op`,
# `params` absent or an object, and a valid or absent `id`) go through Client#call, the code path
# of every per-op method: the client sends its own id and checks its echo, so the case's `id` is
# not compared there; the test checks the result, or the exception's class, code, retryable flag
# and details. All other cases (malformed bytes, request_base64, wrong-typed envelope members)
# are sent as raw bytes through the client's internal Client#raw_line, and the whole reply is
# compared, `id` included.
class VectorsTest < Minitest::Test
  VECTOR_DIR = File.join(TestSupport::REPO_ROOT, "Protocol", "vectors")
  MAX_SAFE_INTEGER = (2**53) - 1

  class << self
    def daemon
      @daemon ||= begin
        d = TestSupport::Daemon.new
        begin
          d.start
        rescue StandardError
          d.remove_dir
          raise
        end
        Minitest.after_run { stop_daemon }
        d
      end
    end

    def client
      @client ||= Magiclinkd::Client.new(socket_path: daemon.socket_path)
    end

    def stop_daemon
      return unless @daemon

      @client&.close
      status = @daemon.stop
      log = @daemon.log
      @daemon.remove_dir
      return if status.nil? || status.zero?

      warn "VectorsTest: magiclinkd exited #{status} on SIGTERM:\n#{log}"
      exit 1
    end

    def cases
      files = Dir[File.join(VECTOR_DIR, "*.json")].sort
      raise "no vector files in #{VECTOR_DIR}" if files.empty?

      files.flat_map do |file|
        JSON.parse(File.read(file, encoding: "UTF-8"))["cases"].map { |c| [File.basename(file), c] }
      end
    end
  end

  CASES = cases
  raise "duplicate vector case names" unless CASES.map { |_, c| c["name"] }.uniq.size == CASES.size

  CASES.each do |file, kase|
    define_method("test_vector_#{kase['name'].tr('-', '_')}") do
      run_case(file, kase)
    end
  end

  # The generic path is taken for enough cases to matter (and the raw path too): guards against
  # a sorting bug that would send everything one way.
  def test_cases_split_between_generic_and_raw_paths
    generic = CASES.count { |_, c| generic_request(c) }
    assert_operator generic, :>, 150
    assert_operator CASES.size - generic, :>, 40
  end

  private

  def client = self.class.client

  def run_case(file, kase)
    label = "#{file}: #{kase['name']}"
    expect = kase.fetch("expect")
    if (request = generic_request(kase))
      run_generic(label, request, expect)
    else
      run_raw(label, request_bytes(kase), expect)
    end
  end

  # [op, params] when the case's line is a valid envelope the client could have produced.
  def generic_request(kase)
    line = kase["request"] or return nil
    envelope = TestSupport::StrictJSON.parse(line)
    return nil unless envelope.is_a?(Hash) && envelope["op"].is_a?(String)
    return nil unless !envelope.key?("params") || envelope["params"].is_a?(Hash)

    id = envelope["id"]
    valid_id = id.nil? || (id.is_a?(Integer) && id.abs <= MAX_SAFE_INTEGER) || (id.is_a?(String) && id.bytesize <= 256)
    valid_id ? [envelope["op"], envelope["params"]] : nil
  rescue TestSupport::StrictJSON::Invalid
    nil
  end

  def request_bytes(kase)
    if kase.key?("request_base64")
      kase["request_base64"].unpack1("m0")
    else
      kase.fetch("request").b
    end
  end

  def run_generic(label, (op, params), expect)
    if expect["ok"]
      result = client.call(op, params)
      check_result(label, result, expect)
    else
      error = assert_raises(Magiclinkd::ServerError, "#{label}: expected an error reply") { client.call(op, params) }
      code = expect["error_code"]
      if code
        assert_equal code, error.code, "#{label}: error code"
        expected_class = Magiclinkd::ServerError::CLASSES.fetch(code, Magiclinkd::ServerError)
        assert_instance_of expected_class, error, "#{label}: exception class"
      end
      assert_equal expect["retryable"], error.retryable?, "#{label}: retryable" if expect.key?("retryable")
      check_details(label, error.details, expect["details"]) if expect.key?("details")
    end
  end

  def run_raw(label, bytes, expect)
    reply = JSON.parse(client.raw_line(bytes))
    assert_kind_of Hash, reply, "#{label}: reply is not an object"
    assert json_equal(expect["ok"], reply["ok"]), "#{label}: ok is #{reply['ok'].inspect}"
    if expect.key?("id")
      assert reply.key?("id") && json_equal(expect["id"], reply["id"]),
             "#{label}: id #{reply['id'].inspect}, expected #{expect['id'].inspect}"
    end
    if expect["ok"]
      check_result(label, reply["result"], expect)
    else
      error = reply["error"]
      assert_kind_of Hash, error, "#{label}: no error object"
      assert_equal expect["error_code"], error["code"], "#{label}: error code" if expect.key?("error_code")
      assert json_equal(expect["retryable"], error["retryable"]), "#{label}: retryable" if expect.key?("retryable")
      check_details(label, error["details"], expect["details"]) if expect.key?("details")
    end
  end

  def check_result(label, result, expect)
    assert_kind_of Hash, result, "#{label}: result is not an object"
    if expect.key?("result")
      assert result_match(expect["result"], result),
             "#{label}: result #{result.to_json} does not match #{expect['result'].to_json}"
    end
    Array(expect["result_keys"]).each do |key|
      assert result.key?(key), "#{label}: result has no member #{key.inspect}"
    end
  end

  def check_details(label, details, expected)
    assert_kind_of Hash, details, "#{label}: details is not an object"
    expected.each do |name, value|
      assert details.key?(name) && json_equal(value, details[name]),
             "#{label}: details.#{name} is #{details[name].inspect}, expected #{value.inspect}"
    end
  end

  # JSON equality: numbers by value (1 == 1.0), booleans never equal numbers, strings by code
  # points, arrays in order, objects by member names and values.
  def json_equal(a, b)
    case a
    when true, false, nil then a.equal?(b)
    when Numeric then b.is_a?(Numeric) && a == b
    when String then b.is_a?(String) && a == b
    when Array then b.is_a?(Array) && a.size == b.size && a.zip(b).all? { |x, y| json_equal(x, y) }
    when Hash then b.is_a?(Hash) && a.keys.sort == b.keys.sort && a.all? { |k, v| json_equal(v, b[k]) }
    else false
    end
  end

  # The `result` rule: objects match as subsets (recursively), everything else exactly.
  def result_match(expected, actual)
    return json_equal(expected, actual) unless expected.is_a?(Hash)

    actual.is_a?(Hash) && expected.all? { |k, v| actual.key?(k) && result_match(v, actual[k]) }
  end
end
