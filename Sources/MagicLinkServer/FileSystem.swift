import MagicLinkCore
#if canImport(Glibc)
import Glibc
#endif

struct SystemCallError: Error, CustomStringConvertible {
    let operation: String
    let path: String
    let code: Int32
    var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

func readFile(_ path: String, limit: Int = 1 << 20) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemCallError(operation: "open", path: path, code: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count <= limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemCallError(operation: "read", path: path, code: errno)
        }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
    throw SystemCallError(operation: "read", path: path, code: EFBIG)
}

func readTextFile(_ path: String) throws -> String {
    String(decoding: try readFile(path), as: UTF8.self)
}

/// Loads the 32-byte key that seals queued tokens, creating it (mode 0600, from the CSPRNG)
/// on first start. A key of the wrong size or with group/other access is refused.
func loadOrCreateKey(at path: String, random: some RandomSource) throws -> [UInt8] {
    var info = stat()
    if stat(path, &info) == 0 {
        guard info.st_mode & 0o077 == 0 else {
            throw KeyFileError(path: path, problem: "is readable by group or others; chmod 600 it")
        }
        let bytes = try readFile(path, limit: 64)
        guard bytes.count == TokenSealer.keyByteCount else {
            throw KeyFileError(path: path, problem: "must hold exactly \(TokenSealer.keyByteCount) bytes (it holds \(bytes.count))")
        }
        return bytes
    }
    let key = random.bytes(TokenSealer.keyByteCount)
    // A name of our own, so two first starts at once cannot write into each other's file.
    let temporary = path + ".tmp." + hex(random.bytes(8))
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw SystemCallError(operation: "create", path: temporary, code: errno) }
    let written = key.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    let synced = fsync(fd)
    close(fd)
    guard written == key.count, synced == 0 else {
        unlink(temporary)
        throw SystemCallError(operation: "write", path: temporary, code: errno)
    }
    // link() fails if another process created the key meanwhile: then use theirs.
    if link(temporary, path) != 0 {
        let code = errno
        unlink(temporary)
        if code == EEXIST { return try loadOrCreateKey(at: path, random: random) }
        throw SystemCallError(operation: "link", path: path, code: code)
    }
    unlink(temporary)
    syncDirectory(containing: path)
    return key
}

/// fsync of the directory, so a newly linked file survives a power loss.
func syncDirectory(containing path: String) {
    let directory: String
    if let slash = path.lastIndex(of: "/") {
        directory = slash == path.startIndex ? "/" : String(path[..<slash])
    } else {
        directory = "."
    }
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    fsync(fd)
    close(fd)
}

struct KeyFileError: Error, CustomStringConvertible {
    let path: String
    let problem: String
    var description: String { "key file \(path) \(problem)" }
}

/// Makes `path` free for a new listening socket without ever harming what is there: a live
/// socket (another daemon) is an error, a dead one (left by a crash) is removed, anything that
/// is not a socket is an error and stays untouched.
func prepareSocketPath(_ path: String) throws {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        if errno == ENOENT { return }
        throw SystemCallError(operation: "stat", path: path, code: errno)
    }
    guard info.st_mode & S_IFMT == S_IFSOCK else {
        throw SocketPathError(path: path, problem: "exists and is not a socket; refusing to replace it")
    }
    if socketAcceptsConnections(path) {
        throw SocketPathError(path: path, problem: "is in use by a running process (another magiclinkd?)")
    }
    guard unlink(path) == 0 || errno == ENOENT else {
        throw SystemCallError(operation: "remove stale socket", path: path, code: errno)
    }
}

struct SocketPathError: Error, CustomStringConvertible {
    let path: String
    let problem: String
    var description: String { "socket \(path) \(problem)" }
}

/// Whether something is listening on the Unix socket at `path`.
func socketAcceptsConnections(_ path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    guard var address = unixAddress(path) else { return false }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    return result == 0
}

/// A listening Unix socket we created, and the identity of its file, so that we later chmod or
/// unlink only that file (NIO would unlink whatever sits at the path when it closes a socket it
/// bound itself, even a newer instance's).
struct ListeningSocket {
    let descriptor: Int32
    let device: dev_t
    let inode: ino_t
}

/// Binds and listens on `path`, then gives the file `mode` without following symlinks. The
/// process umask (0077) makes the file private until then, so the mode only ever widens.
func listenOnUnixSocket(path: String, mode: UInt32, backlog: Int32 = 256) throws -> ListeningSocket {
    guard var address = unixAddress(path) else {
        throw SocketPathError(path: path, problem: "is longer than a Unix socket path may be (\(MemoryLayout<sockaddr_un>.size - 3) bytes)")
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemCallError(operation: "socket", path: path, code: errno) }
    func fail(_ operation: String) -> SystemCallError {
        let error = SystemCallError(operation: operation, path: path, code: errno)
        close(fd)
        return error
    }
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard bound == 0 else { throw fail("bind") }
    guard fchmodat(AT_FDCWD, path, mode_t(mode), AT_SYMLINK_NOFOLLOW) == 0 else {
        let error = fail("chmod")
        unlink(path)
        throw error
    }
    var info = stat()
    guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { throw fail("stat") }
    guard listen(fd, backlog) == 0 else {
        let error = fail("listen")
        unlink(path)
        throw error
    }
    return ListeningSocket(descriptor: fd, device: info.st_dev, inode: info.st_ino)
}

/// Removes the socket file at `path` only if it is still the one described by `socket`.
func removeSocketFile(at path: String, ifStill socket: ListeningSocket) {
    var info = stat()
    if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK,
       info.st_dev == socket.device, info.st_ino == socket.inode {
        unlink(path)
    }
}

/// The socket address for `path`, or nil when the path does not fit.
func unixAddress(_ path: String) -> sockaddr_un? {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    return address
}

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

/// An inherited descriptor is served only if it is what the socket unit promises: a listening
/// Unix stream socket. Anything else (a misconfigured unit, `ListenStream=127.0.0.1:…`, a
/// datagram socket) is refused with a clear error before the database is opened.
func checkInheritedListeningSocket(_ fd: Int32) throws {
    func option(_ name: Int32) throws -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 else {
            throw InheritedSocketError(descriptor: fd, problem: "is not a socket (\(String(cString: strerror(errno))))")
        }
        return value
    }
    guard try option(SO_DOMAIN) == AF_UNIX else {
        throw InheritedSocketError(descriptor: fd, problem: "is not a Unix domain socket (use ListenStream=/path in the socket unit)")
    }
    guard try option(SO_TYPE) == Int32(SOCK_STREAM.rawValue) else {
        throw InheritedSocketError(descriptor: fd, problem: "is not a stream socket (use ListenStream=, not ListenDatagram= or ListenSequentialPacket=)")
    }
    guard try option(SO_ACCEPTCONN) != 0 else {
        throw InheritedSocketError(descriptor: fd, problem: "is not listening (Accept=no is required in the socket unit)")
    }
}

/// The path a listening Unix socket is bound to, if it has one (not abstract, not unnamed).
func boundPath(ofSocket fd: Int32) -> String? {
    var address = sockaddr_un()
    var length = socklen_t(MemoryLayout<sockaddr_un>.size)
    let got = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    let offset = MemoryLayout<sa_family_t>.size
    guard got == 0, Int(length) > offset + 1 else { return nil }
    return withUnsafeBytes(of: &address.sun_path) { raw in
        let bytes = raw.prefix(Int(length) - offset)
        guard bytes.first != 0 else { return nil }  // abstract namespace
        return String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

struct InheritedSocketError: Error, CustomStringConvertible {
    let descriptor: Int32
    let problem: String
    var description: String { "the socket passed by systemd (fd \(descriptor)) \(problem)" }
}
