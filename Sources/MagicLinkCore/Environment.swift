#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in Unix seconds. Injected so tests can move time without sleeping.
public protocol TimeSource: Sendable {
    func now() -> Int64
    /// The same clock in microseconds, for ids that should sort in creation order.
    func nowMicroseconds() -> Int64
}

extension TimeSource {
    /// For clocks that only know seconds (test clocks).
    public func nowMicroseconds() -> Int64 { now() * 1_000_000 }
}

/// The real clock.
public struct SystemTime: TimeSource {
    public init() {}
    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    public func nowMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }
}

/// Where secret bytes come from. Injected so tests can be deterministic; production uses the OS CSPRNG.
public protocol RandomSource: Sendable {
    func bytes(_ count: Int) -> [UInt8]
}

/// The operating system's CSPRNG: `getentropy(3)`, which is `getrandom(2)` on Linux, up to 256
/// bytes a call. One call per request for bytes: a `start` draws six secrets, and eight bytes
/// a system call (the standard library's generator) made that about twenty system calls.
public struct SystemRandom: RandomSource {
    /// Fills a buffer of at most 256 bytes; 0 on success. `getentropy` but in tests.
    typealias Entropy = @Sendable (UnsafeMutableRawPointer, Int) -> Int32
    private let entropy: Entropy

    public init() { entropy = { getentropy($0, $1) } }
    init(entropy: @escaping Entropy) { self.entropy = entropy }

    public func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let chunk = min(256, buffer.count - offset)
                guard entropy(buffer.baseAddress! + offset, chunk) == 0 else {
                    // getrandom(2) missing (Linux before 3.17) or refused (a seccomp filter):
                    // the standard library's generator fills the rest; it falls back to
                    // /dev/urandom, and stops the process rather than return weak bytes.
                    Self.fill(buffer[offset...], using: SystemRandomNumberGenerator())
                    return
                }
                offset += chunk
            }
        }
        return out
    }

    private static func fill(_ bytes: Slice<UnsafeMutableRawBufferPointer>, using generator: SystemRandomNumberGenerator) {
        var generator = generator
        var index = bytes.startIndex
        while index < bytes.endIndex {
            var word = generator.next()
            for _ in 0..<8 where index < bytes.endIndex {
                bytes.base[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
    }
}
