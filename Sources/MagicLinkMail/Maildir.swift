// Maildir delivery (development transport): tmp/ → fsync → rename into new/ → fsync new/.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A Maildir operation failed.
public struct MaildirError: Error, Sendable, CustomStringConvertible {
    /// The file or directory the failing system call was about.
    public var path: String
    /// What failed, including the errno text, e.g. "mkdir: Permission denied".
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "maildir error at \(path): \(reason)" }
}

/// Delivers messages into a Maildir (tmp/ then an atomic rename into new/), so `mutt -f DIR` reads them.
public struct Maildir: Sendable {
    public let path: String

    /// Creates DIR, DIR/tmp, DIR/new, DIR/cur (mode 0700) when missing; throws MaildirError with the
    /// failing path and errno text. The parent of DIR must already exist. Existing directories are
    /// accepted as they are; an existing non-directory is an error.
    public init(path: String) throws(MaildirError) {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        if p.isEmpty { throw MaildirError(path: path, reason: "empty Maildir path") }
        self.path = p
        for dir in [p, p + "/tmp", p + "/new", p + "/cur"] {
            try Maildir.ensureDirectory(dir)
        }
    }

    /// Writes to tmp/<unique>, fsyncs, renames into new/<unique>, fsyncs the new/ directory;
    /// returns the final file path. The unique name follows the Maildir convention:
    /// "<unix seconds>.M<microseconds>P<pid>Q<counter>R<random hex>.<hostname with / and : escaped>".
    /// The file is created with mode 0600.
    public func deliver(_ message: [UInt8]) throws(MaildirError) -> String {
        var name = ""
        var tmpPath = ""
        var fd: Int32 = -1
        // A collision is practically impossible (counter + 64 random bits); retry a few times anyway.
        for attempt in 0..<5 {
            name = Maildir.uniqueName()
            tmpPath = path + "/tmp/" + name
            fd = Maildir.retryingEINTR { open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
            if fd >= 0 { break }
            let err = errno
            if err != EEXIST || attempt == 4 { throw Maildir.error(tmpPath, "open", err) }
        }

        var ok = false
        defer {
            if !ok { _ = unlink(tmpPath) }
        }
        do {
            defer { if fd >= 0 { _ = close(fd) } }
            // Enforce 0600 regardless of the umask (which can only have removed bits).
            if fchmod(fd, 0o600) != 0 { throw Maildir.error(tmpPath, "fchmod", errno) }
            try Maildir.writeAll(fd: fd, message, path: tmpPath)
            if Maildir.retryingEINTR({ fsync(fd) }) != 0 { throw Maildir.error(tmpPath, "fsync", errno) }
            let rc = close(fd)
            fd = -1
            // Linux closes the descriptor even when close() reports EINTR; never retry it.
            if rc != 0 && errno != EINTR { throw Maildir.error(tmpPath, "close", errno) }
        }

        let newPath = path + "/new/" + name
        if rename(tmpPath, newPath) != 0 { throw Maildir.error(newPath, "rename from \(tmpPath)", errno) }
        ok = true  // the tmp file is gone now; the message is delivered even if the directory sync fails

        try Maildir.syncDirectory(path + "/new")
        return newPath
    }

    // MARK: - Helpers

    private static func error(_ path: String, _ operation: String, _ err: Int32) -> MaildirError {
        MaildirError(path: path, reason: "\(operation): \(String(cString: strerror(err))) (errno \(err))")
    }

    private static func retryingEINTR(_ call: () -> Int32) -> Int32 {
        while true {
            let rc = call()
            if rc == -1 && errno == EINTR { continue }
            return rc
        }
    }

    private static func ensureDirectory(_ dir: String) throws(MaildirError) {
        if mkdir(dir, 0o700) == 0 { return }
        let err = errno
        guard err == EEXIST else { throw error(dir, "mkdir", err) }
        var st = stat()
        if stat(dir, &st) != 0 { throw error(dir, "stat", errno) }
        if (st.st_mode & S_IFMT) != S_IFDIR { throw error(dir, "mkdir", ENOTDIR) }
    }

    private static func writeAll(fd: Int32, _ bytes: [UInt8], path: String) throws(MaildirError) {
        var failure: Int32 = 0
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 {
                    failure = EIO
                    return
                }
                offset += n
            }
        }
        if failure != 0 { throw error(path, "write", failure) }
    }

    private static func syncDirectory(_ dir: String) throws(MaildirError) {
        let dfd = retryingEINTR { open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if dfd < 0 { throw error(dir, "open", errno) }
        defer { _ = close(dfd) }
        if retryingEINTR({ fsync(dfd) }) != 0 {
            let err = errno
            // Some file systems cannot fsync directories; that is not a delivery failure.
            if err != EINVAL && err != ENOTSUP { throw error(dir, "fsync", err) }
        }
    }

    private static func uniqueName() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let seconds = Int64(ts.tv_sec)
        let micros = Int64(ts.tv_nsec) / 1000
        var rng = SystemRandomNumberGenerator()
        let random = String(rng.next() as UInt64, radix: 16)
        return "\(seconds).M\(micros)P\(getpid())Q\(DeliveryCounter.shared.next())R\(random).\(escapedHostname())"
    }

    /// The host name with "/" and ":" escaped as "\057" and "\072" (Maildir convention).
    private static func escapedHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let host: String
        if gethostname(&buffer, buffer.count - 1) == 0 {
            buffer[buffer.count - 1] = 0
            host = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            host = "localhost"
        }
        var out = ""
        for c in host.unicodeScalars {
            switch c {
            case "/": out += "\\057"
            case ":": out += "\\072"
            default:
                if c.value < 0x21 || c.value == 0x7F { out += "_" } else { out.unicodeScalars.append(c) }
            }
        }
        return out.isEmpty ? "localhost" : out
    }
}

/// Process-wide delivery counter (the "Q" part of Maildir names), guarded by a pthread mutex so it
/// works without Foundation or the Synchronization module (which needs macOS 15).
private final class DeliveryCounter: @unchecked Sendable {
    static let shared = DeliveryCounter()

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: UInt64 = 0

    private init() {
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    func next() -> UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        value += 1
        return value
    }
}
