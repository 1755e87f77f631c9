/// One complete server reply: a three-digit code and one or more lines of text.
struct SMTPReply: Sendable, Equatable {
    var code: Int
    /// The text of each line, without the code and the "-"/" " separator.
    var lines: [String]

    var isPositiveCompletion: Bool { (200..<300).contains(code) }
    var isIntermediate: Bool { (300..<400).contains(code) }
    var isTransientFailure: Bool { (400..<500).contains(code) }
    var isPermanentFailure: Bool { (500..<600).contains(code) }

    /// "550 5.1.1 no such user" – all lines joined by spaces, sanitized, 512 bytes at most.
    var summary: String {
        let text = lines.filter { !$0.isEmpty }.joined(separator: " ")
        return Sanitize.oneLine(text.isEmpty ? "\(code)" : "\(code) \(text)", limit: 512)
    }
}

/// One line of a reply, as sent: `250-PIPELINING` (more follow) or `250 OK` (last).
struct SMTPReplyLine: Sendable, Equatable {
    var code: Int
    var isLast: Bool
    var text: String
}

extension SMTPReplyLine {
    /// Parses one line without its CRLF. Strict about the code (three digits, 2xx–5xx) and
    /// the separator, since anything else means we are not talking to an SMTP server.
    init?(_ bytes: some Collection<UInt8>) {
        var iterator = bytes.makeIterator()
        var code = 0
        for position in 0..<3 {
            guard let byte = iterator.next(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else {
                return nil
            }
            if position == 0, !(UInt8(ascii: "2")...UInt8(ascii: "5")).contains(byte) { return nil }
            code = code * 10 + Int(byte - UInt8(ascii: "0"))
        }
        self.code = code
        switch iterator.next() {
        case nil:
            self.isLast = true
            self.text = ""
        case UInt8(ascii: " "):
            self.isLast = true
            self.text = String(decoding: bytes.dropFirst(4), as: UTF8.self)
        case UInt8(ascii: "-"):
            self.isLast = false
            self.text = String(decoding: bytes.dropFirst(4), as: UTF8.self)
        default:
            return nil
        }
    }
}

/// Collects reply lines into replies; rejects a reply whose lines disagree on the code.
struct SMTPReplyAssembler {
    static let maxLinesPerReply = 256
    private var pending: [SMTPReplyLine] = []

    var isMidReply: Bool { !pending.isEmpty }

    enum Outcome: Equatable { case needMore, reply(SMTPReply), invalid(String) }

    mutating func add(lineBytes: some Collection<UInt8>) -> Outcome {
        guard let line = SMTPReplyLine(lineBytes) else { return .invalid("malformed reply line") }
        if let first = pending.first, first.code != line.code {
            return .invalid("reply lines with different codes (\(first.code), \(line.code))")
        }
        pending.append(line)
        if pending.count > Self.maxLinesPerReply { return .invalid("reply has too many lines") }
        guard line.isLast else { return .needMore }
        let reply = SMTPReply(code: line.code, lines: pending.map(\.text))
        pending.removeAll()
        return .reply(reply)
    }
}
