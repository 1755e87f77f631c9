// loadgen: a closed-loop load generator for magiclinkd (JSON lines) and redis-server (RESP),
// both over Unix sockets, with the same client machinery for both.
//
// C connections, each on its own thread, blocking I/O, one request in flight per connection.
// Each connection runs for warmup + duration seconds; requests that start inside the measured
// window are counted and their latency (send of the request to the last byte of its reply) goes
// into a log-linear histogram (64 sub-buckets per power of two: under 1.6 % error).
//
//   loadgen --scenario hello|session|start|callback|ping|get --socket PATH
//           [--conns C] [--duration S] [--warmup S] [--keys FILE] [--tokens FILE] [--label TEXT]
//
// session/get read keys (one 43-char session text per line) from --keys; callback reads
// "token flow" lines from --tokens and gives each connection its own slice (each token is used
// once; a connection that runs out stops and the result says "exhausted").
// Prints one JSON object on stdout and a one-line summary on stderr.

import Glibc

// MARK: - small helpers

func fail(_ message: String) -> Never {
    fputs("loadgen: \(message)\n", stderr)
    exit(2)
}

@inline(__always) func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func readLines(_ path: String) -> [String] {
    guard let file = fopen(path, "r") else { fail("cannot open \(path)") }
    defer { fclose(file) }
    var lines: [String] = []
    var linePointer: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    while getline(&linePointer, &capacity, file) > 0 {
        var line = String(cString: linePointer!)
        while line.last == "\n" || line.last == "\r" { line.removeLast() }
        if !line.isEmpty { lines.append(line) }
    }
    free(linePointer)
    return lines
}

// MARK: - histogram

struct Histogram {
    static let subBits = 6
    static let subCount = 1 << subBits          // 64
    static let bucketCount = 64 * subCount + 2 * subCount
    var counts = [UInt64](repeating: 0, count: bucketCount)
    var total: UInt64 = 0
    var sum: UInt64 = 0
    var max: UInt64 = 0

    @inline(__always) static func index(_ v: UInt64) -> Int {
        if v < UInt64(2 * subCount) { return Int(v) }
        let exponent = 63 - v.leadingZeroBitCount       // >= 7
        let shift = exponent - subBits                   // >= 1
        return shift * subCount + Int(v >> UInt64(shift)) // v >> shift in [64, 128)
    }

    /// Midpoint of a bucket, in the recorded unit.
    static func value(_ index: Int) -> Double {
        if index < 2 * subCount { return Double(index) }
        let shift = index / subCount - 1
        let sub = index - shift * subCount
        let low = Double(UInt64(sub) << UInt64(shift))
        return low + Double(UInt64(1) << UInt64(shift)) / 2
    }

    @inline(__always) mutating func record(_ v: UInt64) {
        counts[Histogram.index(v)] &+= 1
        total &+= 1
        sum &+= v
        if v > max { max = v }
    }

    mutating func merge(_ other: Histogram) {
        for i in 0..<counts.count { counts[i] &+= other.counts[i] }
        total &+= other.total
        sum &+= other.sum
        if other.max > max { max = other.max }
    }

    func percentile(_ p: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = UInt64((p / 100 * Double(total)).rounded(.up))
        var seen: UInt64 = 0
        for i in 0..<counts.count {
            seen += counts[i]
            if seen >= Swift.max(rank, 1) { return Swift.min(Histogram.value(i), Double(max)) }
        }
        return Double(max)
    }
}

// MARK: - one blocking Unix-socket connection

final class Connection {
    let fd: Int32
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    var start = 0
    var end = 0

    init(path: String) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        if fd < 0 { fail("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        if bytes.count >= MemoryLayout.size(ofValue: address.sun_path) { fail("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if ok != 0 { fail("connect \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    fail("write: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    /// Makes sure at least one more unread byte is buffered; compacts when the buffer is full.
    func fill() {
        if end == buffer.count {
            if start == 0 { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
            else {
                buffer.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + start, end - start)
                }
                end -= start
                start = 0
            }
        }
        let n = buffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress! + end, raw.count - end) }
        if n < 0 {
            if errno == EINTR { return }
            fail("read: \(String(cString: strerror(errno)))")
        }
        if n == 0 { fail("connection closed by the server") }
        end += n
    }

    /// Reads one line; returns the range of its bytes (without the line feed) in `buffer`.
    func readLine() -> Range<Int> {
        var scanned = 0    // bytes after `start` already looked at; fill() keeps them after `start`
        while true {
            var i = start + scanned
            while i < end {
                if buffer[i] == 0x0A {
                    let line = start..<i
                    start = i + 1
                    if start == end { start = 0; end = 0 }
                    return line
                }
                i += 1
            }
            scanned = end - start
            fill()
        }
    }

    /// Drops `count` bytes, reading as needed.
    func skip(_ count: Int) {
        var left = count
        while left > 0 {
            if start == end { start = 0; end = 0; fill() }
            let take = Swift.min(left, end - start)
            start += take
            left -= take
        }
        if start == end { start = 0; end = 0 }
    }
}

// Note on readLine: when the line ends exactly at `end`, start/end are reset to 0 before the
// caller reads the returned range; the bytes are still in `buffer` (nothing overwrote them),
// so the range stays valid until the next read.

// MARK: - scenarios

enum Scenario: String {
    case hello, session, start, callback, ping, get
    var isRedis: Bool { self == .ping || self == .get }
}

struct Options {
    var scenario = Scenario.hello
    var socketPath = ""
    var conns = 1
    var duration = 10.0
    var warmup = 1.0
    var keysPath: String? = nil
    var tokensPath: String? = nil
    var label = ""
    /// Ask for every key once, spread over the connections, unmeasured (fills a cache).
    var prime = false
}

func parseOptions() -> Options {
    var o = Options()
    var args = Array(CommandLine.arguments.dropFirst())
    func value(_ name: String) -> String {
        guard !args.isEmpty else { fail("\(name) needs a value") }
        return args.removeFirst()
    }
    while !args.isEmpty {
        let a = args.removeFirst()
        switch a {
        case "--scenario":
            let v = value(a)
            guard let s = Scenario(rawValue: v) else { fail("unknown scenario \(v)") }
            o.scenario = s
        case "--socket": o.socketPath = value(a)
        case "--conns": o.conns = Int(value(a)) ?? 0
        case "--duration": o.duration = Double(value(a)) ?? 0
        case "--warmup": o.warmup = Double(value(a)) ?? -1
        case "--keys": o.keysPath = value(a)
        case "--tokens": o.tokensPath = value(a)
        case "--label": o.label = value(a)
        case "--prime": o.prime = true
        case "-h", "--help":
            print("usage: loadgen --scenario hello|session|start|callback|ping|get --socket PATH [--conns C] [--duration S] [--warmup S] [--keys FILE] [--tokens FILE] [--label TEXT] [--prime]")
            exit(0)
        default: fail("unknown argument \(a)")
        }
    }
    if o.socketPath.isEmpty { fail("--socket is required") }
    if o.conns < 1 || o.duration <= 0 || o.warmup < 0 { fail("bad --conns, --duration or --warmup") }
    return o
}

/// Everything one connection's thread needs, and what it measured.
final class Worker {
    let index: Int
    let options: Options
    let keys: [String]
    /// The keys as bytes (RESP), made once for all connections before the clock starts.
    let keyBytes: [[UInt8]]
    let tokens: ArraySlice<String>
    let measureFrom: UInt64
    let stopAt: UInt64
    var histogram = Histogram()
    var errors = 0
    var exhausted = false
    var firstError: String? = nil
    var thread = pthread_t()

    init(index: Int, options: Options, keys: [String], keyBytes: [[UInt8]], tokens: ArraySlice<String>, measureFrom: UInt64, stopAt: UInt64) {
        self.index = index
        self.options = options
        self.keys = keys
        self.keyBytes = keyBytes
        self.tokens = tokens
        self.measureFrom = measureFrom
        self.stopAt = stopAt
    }

    func run() {
        let connection = Connection(path: options.socketPath)
        var rng = UInt64(0x9E37_79B9_7F4A_7C15) &* UInt64(index + 1) ^ nowNanos()
        @inline(__always) func nextRandom() -> UInt64 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return rng
        }
        let ip = "10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)"
        let runTag = "\(getpid())-\(nowNanos() % 1_000_000_000)"
        var sequence = 0
        var tokenCursor = tokens.startIndex
        let okMarker = Array("\"ok\":true".utf8)

        if options.prime {
            // Each key once: connection i takes keys i, i + C, i + 2C, ...
            for key in stride(from: index, to: keys.count, by: options.conns).lazy.map({ self.keys[$0] }) {
                connection.send(Array("{\"id\":1,\"op\":\"session\",\"params\":{\"session\":\"\(key)\",\"ip\":\"\(ip)\"}}\n".utf8))
                _ = connection.readLine()
            }
            return
        }

        while true {
            // Build the request.
            var request: [UInt8]
            switch options.scenario {
            case .hello:
                request = Array("{\"id\":1,\"op\":\"hello\"}\n".utf8)
            case .session:
                let key = keys[Int(nextRandom() % UInt64(keys.count))]
                request = Array("{\"id\":1,\"op\":\"session\",\"params\":{\"session\":\"\(key)\",\"ip\":\"\(ip)\"}}\n".utf8)
            case .start:
                sequence += 1
                request = Array("{\"id\":1,\"op\":\"start\",\"params\":{\"email\":\"s\(index)-\(sequence)-\(runTag)@bench.example\",\"ip\":\"\(ip)\",\"redirect\":\"/\"}}\n".utf8)
            case .callback:
                if tokenCursor == tokens.endIndex { exhausted = true; return }
                let pair = tokens[tokenCursor].split(separator: " ")
                tokenCursor += 1
                request = Array("{\"id\":1,\"op\":\"callback\",\"params\":{\"token\":\"\(pair[0])\",\"flow\":\"\(pair[1])\",\"ip\":\"\(ip)\"}}\n".utf8)
            case .ping:
                request = Array("*1\r\n$4\r\nPING\r\n".utf8)
            case .get:
                let key = keyBytes[Int(nextRandom() % UInt64(keyBytes.count))]
                request = Array("*2\r\n$3\r\nGET\r\n$\(key.count)\r\n".utf8)
                request.append(contentsOf: key)
                request.append(contentsOf: [0x0D, 0x0A])
            }

            let began = nowNanos()
            if began >= stopAt { return }
            connection.send(request)

            // Read and check the reply.
            var ok = true
            if options.scenario.isRedis {
                let line = connection.readLine()
                let first = connection.buffer[line.lowerBound]
                if first == UInt8(ascii: "$") {
                    var length = 0
                    var negative = false
                    for i in (line.lowerBound + 1)..<line.upperBound {
                        let b = connection.buffer[i]
                        if b == UInt8(ascii: "-") { negative = true } else if b >= 48 && b <= 57 { length = length * 10 + Int(b - 48) }
                    }
                    if negative { ok = false } else { connection.skip(length + 2) }
                } else if first != UInt8(ascii: "+") {
                    ok = false
                }
                if !ok && firstError == nil { firstError = String(decoding: connection.buffer[line], as: UTF8.self) }
            } else {
                let line = connection.readLine()
                ok = false
                let b = connection.buffer
                var i = line.lowerBound
                let last = line.upperBound - okMarker.count
                while i <= last {
                    if b[i] == okMarker[0] && b[i + 1] == okMarker[1] && b[i + 5] == okMarker[5] && b[i + 6] == okMarker[6] {
                        var match = true
                        for j in 0..<okMarker.count where b[i + j] != okMarker[j] { match = false; break }
                        if match { ok = true; break }
                    }
                    i += 1
                }
                if !ok && firstError == nil { firstError = String(decoding: b[line], as: UTF8.self) }
            }
            let finished = nowNanos()
            if began >= measureFrom {
                histogram.record(finished - began)
                if !ok { errors += 1 }
            }
        }
    }
}

// MARK: - main

let options = parseOptions()
signal(SIGPIPE, SIG_IGN)

var keys: [String] = []
if options.scenario == .session || options.scenario == .get {
    guard let path = options.keysPath else { fail("\(options.scenario.rawValue) needs --keys") }
    keys = readLines(path)
    if keys.isEmpty { fail("no keys in \(path)") }
}
var tokens: [String] = []
if options.scenario == .callback {
    guard let path = options.tokensPath else { fail("callback needs --tokens") }
    tokens = readLines(path)
    if tokens.isEmpty { fail("no tokens in \(path)") }
}

// Built before the clock starts: making 1M arrays in each of 32 threads once took seconds of
// the measured window.
let keyBytes = options.scenario == .get ? keys.map { Array($0.utf8) } : []

let t0 = nowNanos()
let measureFrom = t0 + UInt64(options.warmup * 1e9)
let stopAt = measureFrom + UInt64(options.duration * 1e9)
var workers: [Worker] = []
let perConnection = tokens.count / options.conns
for i in 0..<options.conns {
    let slice = tokens.isEmpty ? tokens[0..<0] : tokens[(i * perConnection)..<((i + 1) * perConnection)]
    workers.append(Worker(index: i, options: options, keys: keys, keyBytes: keyBytes, tokens: slice, measureFrom: measureFrom, stopAt: stopAt))
}

for worker in workers {
    let context = Unmanaged.passRetained(worker).toOpaque()
    let rc = pthread_create(&worker.thread, nil, { raw in
        let worker = Unmanaged<Worker>.fromOpaque(raw!).takeRetainedValue()
        worker.run()
        return nil
    }, context)
    if rc != 0 { fail("pthread_create: \(rc)") }
}
for worker in workers { pthread_join(worker.thread, nil) }
let wallEnd = nowNanos()
if options.prime {
    print("{\"primed\":\(keys.count),\"seconds\":\(Double(wallEnd - t0) / 1e9)}")
    exit(0)
}

var total = Histogram()
var errors = 0
var exhausted = false
var firstError: String? = nil
for worker in workers {
    total.merge(worker.histogram)
    errors += worker.errors
    exhausted = exhausted || worker.exhausted
    if firstError == nil { firstError = worker.firstError }
}
// When a connection ran out of tokens early, the window it measured is shorter: count the
// requests over the time actually spent (a conservative rate).
let measuredSeconds = exhausted ? Double(wallEnd - measureFrom) / 1e9 : options.duration
let opsPerSecond = Double(total.total) / measuredSeconds

func us(_ nanos: Double) -> String {
    let v = nanos / 1000
    return String(Int((v * 10).rounded())) .withDecimal
}
extension String {
    /// "1234" (tenths) -> "123.4"
    var withDecimal: String {
        var s = self
        if s.count < 2 { s = String(repeating: "0", count: 2 - s.count) + s }
        s.insert(".", at: s.index(before: s.endIndex))
        return s
    }
}
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        default:
            if scalar.value < 0x20 { out += "\\u00" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

let target = options.scenario.isRedis ? "redis" : "magiclinkd"
var json = "{\"label\":\(jsonString(options.label)),\"target\":\"\(target)\",\"scenario\":\"\(options.scenario.rawValue)\","
json += "\"conns\":\(options.conns),\"duration_s\":\(measuredSeconds),\"warmup_s\":\(options.warmup),"
json += "\"keys\":\(keys.count),\"requests\":\(total.total),\"errors\":\(errors),\"exhausted\":\(exhausted),"
json += "\"ops_per_s\":\(Int(opsPerSecond.rounded())),"
json += "\"mean_us\":\(us(total.total > 0 ? Double(total.sum) / Double(total.total) : 0)),"
json += "\"p50_us\":\(us(total.percentile(50))),\"p99_us\":\(us(total.percentile(99))),"
json += "\"p999_us\":\(us(total.percentile(99.9))),\"max_us\":\(us(Double(total.max)))"
if let firstError { json += ",\"first_error\":\(jsonString(String(firstError.prefix(300))))" }
json += "}"
print(json)
fputs("\(target) \(options.scenario.rawValue) c=\(options.conns) \(options.label): \(Int(opsPerSecond.rounded())) ops/s, p50 \(us(total.percentile(50))) us, p99 \(us(total.percentile(99))) us, p99.9 \(us(total.percentile(99.9))) us, errors \(errors)\(exhausted ? ", tokens exhausted" : "")\n", stderr)
