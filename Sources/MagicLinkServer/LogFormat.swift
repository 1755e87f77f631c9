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
        let journal = getenv("JOURNAL_STREAM") != nil
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, journal: journal) }
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
        text += Self.oneLine(message.description)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            text += " " + key + "=" + Self.quoted(Self.oneLine("\(value)"))
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

    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == "\n" || $0 == "\r" }) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : $0 }))
    }

    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\\\"") + "\""
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

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}
