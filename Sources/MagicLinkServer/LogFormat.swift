import Logging
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// One line per event on stderr, `key=value` metadata sorted by key. Under systemd (when
/// `JOURNAL_STREAM` is set) each line starts with its syslog priority (`<6>`) so journald files
/// it at the right level, and carries no timestamp of its own. The level is shared and can be
/// changed at run time (SIGHUP reload).
public struct DaemonLogHandler: LogHandler {
    static let sharedLevel = NIOLockedValueBox(Logger.Level.info)

    let label: String
    let journal: Bool
    public var metadata: Logger.Metadata = [:]

    public var logLevel: Logger.Level {
        get { Self.sharedLevel.withLockedValue { $0 } }
        set { Self.sharedLevel.withLockedValue { $0 = newValue } }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Installs this handler for every logger of the process.
    public static func bootstrap(level: Logger.Level) {
        sharedLevel.withLockedValue { $0 = level }
        let journal = stderrIsJournal(getenv("JOURNAL_STREAM").map { String(cString: $0) })
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, journal: journal) }
    }

    /// systemd sets `JOURNAL_STREAM=<device>:<inode>` for the stream it connected stderr to; the
    /// variable survives into children whose stderr goes elsewhere (a terminal, a file), so it
    /// counts only when stderr is still that very stream (systemd.exec(5)).
    static func stderrIsJournal(_ variable: String?) -> Bool {
        guard let variable else { return false }
        let parts = variable.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// Changes the level of every logger (reload).
    public static func setLevel(_ level: Logger.Level) {
        sharedLevel.withLockedValue { $0 = level }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        var merged = metadata
        if let explicit { merged.merge(explicit) { $1 } }
        var text = journal ? "<\(Self.priority(level))>" : Self.timestamp() + " " + level.rawValue + " "
        text += Self.escaped(message.description, limit: 4 * Self.valueLimit)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            text += " " + Self.escaped(key) + "=" + Self.quoted(Self.escaped("\(value)"))
        }
        text += "\n"
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }

    /// syslog priorities as sd-daemon(3) prefixes understand them.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Longest message or value written, in Unicode scalars; request values are attacker text.
    static let valueLimit = 512

    /// The text with every control character (C0, DEL, C1, U+2028/U+2029) and backslash
    /// escaped, cut at `limit` scalars: request data can never start a new journal line (journald
    /// also splits at NUL) or paint the terminal, and `\` in the output always begins an escape.
    static func escaped(_ text: String, limit: Int = valueLimit) -> String {
        func needsEscape(_ s: Unicode.Scalar) -> Bool {
            s.value < 0x20 || s.value == 0x5C || (0x7F..<0xA0).contains(s.value) || s.value == 0x2028 || s.value == 0x2029
        }
        // Most values are short printable ASCII: one pass over the bytes settles them.
        var length = 0
        var plain = true
        for byte in text.utf8 {
            length += 1
            if byte < 0x20 || byte >= 0x7F || byte == 0x5C {
                plain = false
                break
            }
        }
        if plain && length <= limit { return text }
        let scalars = text.unicodeScalars
        if scalars.count <= limit && !scalars.contains(where: needsEscape) { return text }
        var out = String.UnicodeScalarView()
        for (index, scalar) in scalars.enumerated() {
            if index == limit {
                out.append(contentsOf: "…(truncated)".unicodeScalars)
                break
            }
            guard needsEscape(scalar) else { out.append(scalar); continue }
            let escape: String
            switch scalar.value {
            case 0x5C: escape = "\\\\"
            case 0x0A: escape = "\\n"
            case 0x0D: escape = "\\r"
            case 0x09: escape = "\\t"
            default: escape = "\\u{" + String(scalar.value, radix: 16) + "}"
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// A metadata value, in double quotes when it would otherwise be ambiguous (`"` inside is `\"`).
    /// Works on bytes, not characters: a space or quote followed by a combining mark is one
    /// `Character` that equals neither, yet its byte still ends a field for a reader of the log.
    static func quoted(_ value: String) -> String {
        func special(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x22 || byte == 0x3D || byte == 0x5C }
        guard value.isEmpty || value.utf8.contains(where: special) else { return value }
        var bytes: [UInt8] = [0x22]
        bytes.reserveCapacity(value.utf8.count + 8)
        for byte in value.utf8 {
            if byte == 0x22 { bytes.append(0x5C) }
            bytes.append(byte)
        }
        bytes.append(0x22)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// `text` with control characters and backslashes escaped as in the log (for terminal output).
public func escapingControlCharacters(_ text: String) -> String {
    DaemonLogHandler.escaped(text, limit: Int.max)
}
