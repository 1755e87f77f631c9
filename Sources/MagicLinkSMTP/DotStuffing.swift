/// Turns a message into the exact bytes to send after a 354 reply (RFC 5321 §4.5.2).
enum DotStuffing {
    /// Every line that starts with "." gets a second "."; the body always ends with CRLF and then
    /// the terminating ".\r\n". A bare CR or LF is turned into CRLF first: servers disagree on
    /// what a bare LF means, and that disagreement is what "SMTP smuggling" exploits
    /// (a "\n.\n" that one server takes as the end of the message and another does not).
    static func encode(_ message: [UInt8]) -> [UInt8] {
        let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), dot = UInt8(ascii: ".")
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 8)
        var atLineStart = true
        var index = message.startIndex
        while index < message.endIndex {
            let byte = message[index]
            if byte == cr || byte == lf {
                // CRLF, bare CR and bare LF all end one line.
                if byte == cr, message.index(after: index) < message.endIndex, message[message.index(after: index)] == lf {
                    index = message.index(after: index)
                }
                out.append(cr)
                out.append(lf)
                atLineStart = true
            } else {
                if atLineStart && byte == dot { out.append(dot) }
                out.append(byte)
                atLineStart = false
            }
            index = message.index(after: index)
        }
        if !atLineStart { out.append(contentsOf: [cr, lf]) }
        out.append(contentsOf: [dot, cr, lf])
        return out
    }

    /// Whether the message needs `BODY=8BITMIME`.
    static func hasEightBitBytes(_ message: [UInt8]) -> Bool {
        message.contains { $0 >= 0x80 }
    }
}
