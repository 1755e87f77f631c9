#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in Unix seconds. Injected so tests can move time without sleeping.
public protocol TimeSource: Sendable {
    func now() -> Int64
}

/// The real clock.
public struct SystemTime: TimeSource {
    public init() {}
    public func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
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
    public init() {}
    public func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let chunk = min(256, buffer.count - offset)
                guard getentropy(buffer.baseAddress! + offset, chunk) == 0 else {
                    // Only where getrandom(2) is missing (Linux before 3.17): the standard
                    // library's generator, which stops the process rather than return weak bytes.
                    var generator = SystemRandomNumberGenerator()
                    for index in offset..<buffer.count { buffer[index] = UInt8(truncatingIfNeeded: generator.next()) }
                    return
                }
                offset += chunk
            }
        }
        return out
    }
}
