import ExtrasBase64
// RFC 5322 / MIME message building for magic-link mails.
//
// No Foundation: everything here is plain Swift standard library so the
// encoding rules are explicit and testable byte for byte.

// MARK: - Errors

/// A configuration value (typically a mailbox) could not be parsed.
public struct MailFormatError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "invalid mail format: \(reason)" }
}

// MARK: - Mailbox

/// A mailbox for headers: an optional display name and an address (already validated elsewhere;
/// may have a UTF-8 local part and an ASCII domain).
public struct Mailbox: Sendable, Equatable {
    public var displayName: String?
    public var address: String

    public init(displayName: String? = nil, address: String) {
        self.displayName = displayName
        self.address = address
    }

    /// Parses configuration text: `Name <addr@host>`, `"Quoted, Name" <addr@host>`, `<addr@host>`
    /// or `addr@host`. Throws `MailFormatError` on anything else: CR/LF/NUL anywhere is refused,
    /// and the text must hold exactly one address.
    public init(parsing text: String) throws(MailFormatError) {
        for scalar in text.unicodeScalars where scalar == "\r" || scalar == "\n" || scalar == "\0" {
            throw MailFormatError(reason: "mailbox contains a CR, LF or NUL character")
        }
        let trimmed = MailText.trimWhitespace(text)
        if trimmed.isEmpty { throw MailFormatError(reason: "mailbox is empty") }

        guard trimmed.hasSuffix(">") else {
            // Bare address.
            if trimmed.contains("<") {
                throw MailFormatError(reason: "unbalanced '<' in mailbox \"\(trimmed)\"")
            }
            try Mailbox.validateAddress(trimmed)
            self.init(displayName: nil, address: trimmed)
            return
        }

        // "Name <addr>" form: the address is between the last '<' and the final '>'.
        let scalars = Array(trimmed.unicodeScalars)
        guard let open = scalars.lastIndex(of: "<") else {
            throw MailFormatError(reason: "unbalanced '>' in mailbox \"\(trimmed)\"")
        }
        let address = String(String.UnicodeScalarView(scalars[(open + 1)..<(scalars.count - 1)]))
        try Mailbox.validateAddress(address)
        let namePart = MailText.trimWhitespace(String(String.UnicodeScalarView(scalars[..<open])))
        let name = try Mailbox.parseDisplayName(namePart)
        self.init(displayName: name, address: address)
    }

    /// The part after the last "@" (empty when there is none).
    public var domain: String {
        guard let at = address.lastIndex(of: "@") else { return "" }
        return String(address[address.index(after: at)...])
    }

    // MARK: Parsing helpers

    private static func parseDisplayName(_ text: String) throws(MailFormatError) -> String? {
        if text.isEmpty { return nil }
        let scalars = Array(text.unicodeScalars)
        if scalars.first == "\"" {
            // One complete quoted-string and nothing else.
            var result = String.UnicodeScalarView()
            var index = 1
            var closed = false
            while index < scalars.count {
                let s = scalars[index]
                if s == "\\" {
                    guard index + 1 < scalars.count else { break }
                    result.append(scalars[index + 1])
                    index += 2
                    continue
                }
                if s == "\"" {
                    closed = true
                    index += 1
                    break
                }
                result.append(s)
                index += 1
            }
            guard closed else {
                throw MailFormatError(reason: "unterminated quoted display name \(text)")
            }
            guard index == scalars.count else {
                throw MailFormatError(reason: "unexpected text after quoted display name \(text)")
            }
            let name = String(result)
            return name.isEmpty ? nil : name
        }
        for s in scalars {
            if s.value < 0x20 || s.value == 0x7F {
                throw MailFormatError(reason: "control character in display name")
            }
            if "<>@,;:\\\"[]()".unicodeScalars.contains(s) {
                throw MailFormatError(
                    reason: "display name \"\(text)\" contains '\(s)'; put the name in double quotes")
            }
        }
        return text
    }

    private static func validateAddress(_ address: String) throws(MailFormatError) {
        if address.isEmpty { throw MailFormatError(reason: "empty address") }
        for s in address.unicodeScalars {
            if s.value <= 0x20 || s.value == 0x7F || (0x80...0x9F).contains(s.value) {
                throw MailFormatError(reason: "address \"\(address)\" contains whitespace or a control character")
            }
            if "<>,;\"()[]\\".unicodeScalars.contains(s) {
                throw MailFormatError(reason: "address \"\(address)\" contains '\(s)' (exactly one plain address expected)")
            }
        }
        guard let at = address.lastIndex(of: "@") else {
            throw MailFormatError(reason: "address \"\(address)\" has no '@'")
        }
        let local = address[..<at]
        let domain = address[address.index(after: at)...]
        if local.isEmpty { throw MailFormatError(reason: "address \"\(address)\" has an empty local part") }
        if local.contains("@") { throw MailFormatError(reason: "address \"\(address)\" has more than one '@'") }
        if domain.isEmpty { throw MailFormatError(reason: "address \"\(address)\" has an empty domain") }
        if local.hasPrefix(".") || local.hasSuffix(".") || local.contains("..") {
            throw MailFormatError(reason: "address \"\(address)\" has a malformed local part")
        }
        for s in domain.unicodeScalars {
            let ok = (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "-" || s == "."
            if !ok {
                throw MailFormatError(reason: "domain \"\(domain)\" must be ASCII letters, digits, '-' and '.'")
            }
        }
        if domain.hasPrefix(".") || domain.hasSuffix(".") || domain.contains("..")
            || domain.hasPrefix("-") || domain.contains(".-") || domain.contains("-.")
        {
            throw MailFormatError(reason: "domain \"\(domain)\" is malformed")
        }
    }
}

// MARK: - MailMessage

/// A complete RFC 5322 message with a text and an HTML alternative.
public struct MailMessage: Sendable {
    public var from: Mailbox
    public var to: Mailbox
    public var subject: String
    public var textBody: String
    public var htmlBody: String
    /// Without angle brackets, e.g. "2kd9...@example.com".
    public var messageID: String
    /// Unix seconds, rendered in UTC as "+0000".
    public var date: Int64
    /// ASCII, validated (no CR/LF). Rendering still sanitizes them: CR/LF/NUL and other control
    /// characters become spaces, a header whose name is not a valid field name or that would
    /// duplicate a header generated here (From, To, Subject, Date, Message-ID, MIME-Version,
    /// Auto-Submitted, Content-*) or add recipients (Cc, Bcc) is dropped, and so is one that cannot be folded
    /// under 998 octets per line.
    public var extraHeaders: [(name: String, value: String)]

    public init(
        from: Mailbox,
        to: Mailbox,
        subject: String,
        textBody: String,
        htmlBody: String,
        messageID: String,
        date: Int64,
        extraHeaders: [(name: String, value: String)] = []
    ) {
        self.from = from
        self.to = to
        self.subject = subject
        self.textBody = textBody
        self.htmlBody = htmlBody
        self.messageID = messageID
        self.date = date
        self.extraHeaders = extraHeaders
    }

    /// Header names that `render` writes itself (lowercased); extra headers with these names are dropped.
    static let reservedHeaderNames: Set<String> = [
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "auto-submitted",
    ]

    static func isReservedHeaderName(_ name: String) -> Bool {
        let lower = MailText.asciiLowercased(name)
        return reservedHeaderNames.contains(lower) || lower.hasPrefix("content-")
    }

    /// The message as bytes with CRLF line ends, ready for a Maildir file or an SMTP DATA phase
    /// (no dot-stuffing here).
    ///
    /// - Parameter boundary: the multipart boundary. `nil` picks a random one. A supplied boundary
    ///   that is not a valid RFC 2046 boundary or that occurs in the encoded parts is replaced by a
    ///   random one (the output stays well-formed either way).
    public func render(boundary: String? = nil) -> [UInt8] {
        let textPart = MailMessage.part(contentType: "text/plain; charset=utf-8", body: textBody)
        let htmlPart = MailMessage.part(contentType: "text/html; charset=utf-8", body: htmlBody)

        func usable(_ b: String) -> Bool {
            guard MailText.isValidBoundary(b) else { return false }
            let needle = Array(("--" + b).utf8)
            return !MailText.contains(textPart, needle) && !MailText.contains(htmlPart, needle)
        }
        var chosen: String
        if let b = boundary, usable(b) {
            chosen = b
        } else {
            var rng = SystemRandomNumberGenerator()
            repeat {
                chosen = "=_magiclink_" + MailText.randomHex(byteCount: 16, using: &rng)
            } while !usable(chosen)
        }

        var out: [UInt8] = []
        out.reserveCapacity(textPart.count + htmlPart.count + 1024)

        var h = HeaderWriter()
        h.mailboxHeader("From", from)
        h.mailboxHeader("To", to)
        h.unstructuredHeader("Subject", subject)
        h.rawHeader("Date", [MailDate.rfc5322(unixSeconds: date)])
        h.rawHeader("Message-ID", ["<" + sanitizedMessageID() + ">"])
        h.rawHeader("MIME-Version", ["1.0"])
        h.rawHeader("Auto-Submitted", ["auto-generated"])
        for header in extraHeaders {
            guard MailText.isValidFieldName(header.name),
                !MailMessage.isReservedHeaderName(header.name)
            else { continue }
            h.extraHeader(header.name, header.value)
        }
        h.rawHeader("Content-Type", ["multipart/alternative;", "boundary=\"" + chosen + "\""])
        out += h.bytes
        out += MailText.crlf

        let delimiter = Array(("--" + chosen).utf8)
        out += Array("This is a multi-part message in MIME format.".utf8) + MailText.crlf
        out += delimiter + MailText.crlf
        out += textPart
        out += MailText.crlf + delimiter + MailText.crlf
        out += htmlPart
        out += MailText.crlf + delimiter + Array("--".utf8) + MailText.crlf
        return out
    }

    private static func part(contentType: String, body: String) -> [UInt8] {
        var out: [UInt8] = []
        out += Array("Content-Type: \(contentType)".utf8) + MailText.crlf
        out += Array("Content-Transfer-Encoding: quoted-printable".utf8) + MailText.crlf
        out += MailText.crlf
        out += QuotedPrintable.encode(Array(body.utf8))
        return out
    }

    private func sanitizedMessageID() -> String {
        var scalars = String.UnicodeScalarView()
        for s in messageID.unicodeScalars {
            if s.value <= 0x20 || s.value == 0x7F || (0x80...0x9F).contains(s.value) || s == "<" || s == ">" {
                continue
            }
            scalars.append(s)
        }
        var id = String(scalars)
        if id.isEmpty || id.utf8.count > 900 {
            var rng = SystemRandomNumberGenerator()
            let domain = MailText.sanitizedDomain(from.domain)
            id = MailText.randomHex(byteCount: 16, using: &rng) + "@" + (domain.isEmpty ? "localhost" : domain)
        }
        return id
    }
}

// MARK: - Header writing

/// Builds header lines, folding at whitespace so lines stay within 78 octets where possible
/// (and always within 998).
struct HeaderWriter {
    static let softLimit = 78
    static let hardLimit = 998

    private(set) var bytes: [UInt8] = []
    private var line: [UInt8] = []
    private var lines: [[UInt8]] = []

    /// Starts a field: "Name:".
    private mutating func begin(_ name: String) {
        lines = []
        line = Array(name.utf8) + [UInt8(ascii: ":")]
    }

    /// Appends a token preceded by a single space, folding before the space when the token
    /// would overflow the soft limit and something besides the field name is already on the line.
    private mutating func appendWord(_ token: [UInt8], fieldNameLength: Int) {
        if line.count + 1 + token.count > HeaderWriter.softLimit && line.count > fieldNameLength + 1 {
            lines.append(line)
            line = []
        }
        line.append(UInt8(ascii: " "))
        line += token
    }

    private mutating func appendSpace() {
        line.append(UInt8(ascii: " "))
    }

    /// Finishes the field. Returns false (and writes nothing) if a line would exceed 998 octets.
    @discardableResult
    private mutating func finish() -> Bool {
        lines.append(line)
        defer { lines = []; line = [] }
        for l in lines where l.count > HeaderWriter.hardLimit { return false }
        for l in lines {
            bytes += l
            bytes += MailText.crlf
        }
        return true
    }

    /// A header whose value is made of the given ASCII words, separated by foldable spaces.
    mutating func rawHeader(_ name: String, _ words: [String]) {
        begin(name)
        for w in words { appendWord(Array(w.utf8), fieldNameLength: name.utf8.count) }
        finish()
    }

    /// Subject-like text: raw ASCII folded at spaces when that is safe, RFC 2047 encoded-words otherwise.
    mutating func unstructuredHeader(_ name: String, _ value: String) {
        let text = MailText.trimWhitespace(MailText.sanitizeHeaderText(value))
        begin(name)
        let n = name.utf8.count
        if MailText.canWriteRaw(text) {
            let chunks = text.split(separator: " ", omittingEmptySubsequences: false)
            for (i, chunk) in chunks.enumerated() {
                if chunk.isEmpty {
                    // A run of several spaces: keep them, but never fold onto a whitespace-only line.
                    if i > 0 { appendSpace() }
                    continue
                }
                appendWord(Array(chunk.utf8), fieldNameLength: n)
            }
        } else if !text.isEmpty {
            appendEncodedWords(text, fieldNameLength: n)
        }
        finish()
    }

    /// "Name <address>" with the display name as atoms, a quoted-string or encoded-words.
    mutating func mailboxHeader(_ name: String, _ mailbox: Mailbox) {
        begin(name)
        let n = name.utf8.count
        let address = MailText.sanitizedAddress(mailbox.address)
        let displayName = mailbox.displayName.map {
            MailText.collapseSpaces(MailText.trimWhitespace(MailText.sanitizeHeaderText($0)))
        } ?? ""
        if displayName.isEmpty {
            appendWord(Array(address.utf8), fieldNameLength: n)
        } else {
            if MailText.canWriteRaw(displayName) {
                let words = displayName.split(separator: " ").map(String.init)
                if words.allSatisfy(MailText.isAtom) {
                    for w in words { appendWord(Array(w.utf8), fieldNameLength: n) }
                } else {
                    // Quoted-string; folding at its inner spaces is allowed (FWS inside quoted-string).
                    for (i, w) in words.enumerated() {
                        var token = i == 0 ? "\"" : ""
                        token += MailText.quotedStringEscape(w)
                        if i == words.count - 1 { token += "\"" }
                        appendWord(Array(token.utf8), fieldNameLength: n)
                    }
                }
            } else {
                appendEncodedWords(displayName, fieldNameLength: n)
            }
            appendWord(Array(("<" + address + ">").utf8), fieldNameLength: n)
        }
        finish()
    }

    /// An extra header: sanitized value folded at spaces, written raw; dropped if it cannot be
    /// folded within 998 octets.
    mutating func extraHeader(_ name: String, _ value: String) {
        let text = MailText.trimWhitespace(MailText.sanitizeHeaderText(value))
        begin(name)
        let n = name.utf8.count
        let chunks = text.split(separator: " ", omittingEmptySubsequences: false)
        for (i, chunk) in chunks.enumerated() {
            if chunk.isEmpty {
                if i > 0 { appendSpace() }
                continue
            }
            appendWord(Array(chunk.utf8), fieldNameLength: n)
        }
        finish()
    }

    /// RFC 2047 "B" encoded-words, each at most 75 characters, split on Unicode scalar boundaries,
    /// sized so every line stays within 78 octets.
    private mutating func appendEncodedWords(_ text: String, fieldNameLength: Int) {
        let prefix = Array("=?utf-8?B?".utf8)
        let suffix = Array("?=".utf8)
        let overhead = prefix.count + suffix.count  // 12
        var scalars = Array(text.unicodeScalars)[...]
        while !scalars.isEmpty {
            var room = HeaderWriter.softLimit - line.count - 1
            if room < overhead + 8 {
                // Not even one 4-byte scalar fits here: fold first.
                lines.append(line)
                line = []
                room = HeaderWriter.softLimit - 1
            }
            let wordChars = min(room, 75)
            let maxBytes = (wordChars - overhead) / 4 * 3
            var chunk: [UInt8] = []
            var taken = 0
            var lastSpace: (bytes: Int, scalars: Int)? = nil
            for s in scalars {
                let length = String(s).utf8.count
                if chunk.count + length > maxBytes { break }
                chunk += String(s).utf8
                taken += 1
                if s == " " { lastSpace = (chunk.count, taken) }
            }
            // Prefer to end a word just after a space: decoders that wrongly keep the whitespace
            // between adjacent encoded-words (e.g. CPython's address parser, gh-128110) then show a
            // doubled space instead of splitting a word in two.
            if taken < scalars.count, let space = lastSpace, space.bytes * 2 >= chunk.count {
                chunk.removeLast(chunk.count - space.bytes)
                taken = space.scalars
            }
            scalars = scalars.dropFirst(taken)
            line.append(UInt8(ascii: " "))
            line += prefix + Base64.encodeToBytes(bytes: chunk) + suffix
        }
    }
}

// MARK: - Text helpers

enum MailText {
    static let crlf: [UInt8] = [13, 10]

    /// Replaces every character that must never appear raw in a header (CR, LF, NUL, all other C0
    /// controls including TAB, DEL, C1 controls, U+2028/U+2029) with a space.
    static func sanitizeHeaderText(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            let v = s.value
            if v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) || v == 0x2028 || v == 0x2029 {
                out.append(" ")
            } else {
                out.append(s)
            }
        }
        return String(out)
    }

    /// Address as given, minus any control character or angle bracket (it was validated elsewhere;
    /// this only guarantees it cannot break the header structure).
    static func sanitizedAddress(_ address: String) -> String {
        var out = String.UnicodeScalarView()
        for s in address.unicodeScalars {
            let v = s.value
            if v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v) || v == 0x2028 || v == 0x2029
                || s == "<" || s == ">"
            {
                continue
            }
            out.append(s)
        }
        return String(out)
    }

    static func sanitizedDomain(_ domain: String) -> String {
        var out = String.UnicodeScalarView()
        for s in domain.unicodeScalars
        where (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || (s >= "0" && s <= "9") || s == "-" || s == "." {
            out.append(s)
        }
        return String(out)
    }

    static func trimWhitespace(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        func isWS(_ s: Unicode.Scalar) -> Bool { s == " " || s == "\t" }
        guard let first = scalars.firstIndex(where: { !isWS($0) }),
            let last = scalars.lastIndex(where: { !isWS($0) })
        else { return "" }
        return String(String.UnicodeScalarView(scalars[first...last]))
    }

    static func collapseSpaces(_ text: String) -> String {
        text.split(separator: " ").joined(separator: " ")
    }

    /// True when `text` may go into a header as plain ASCII: printable ASCII and spaces only,
    /// nothing that looks like an encoded-word, and no word so long that it would overflow a line.
    static func canWriteRaw(_ text: String) -> Bool {
        for b in text.utf8 where b < 0x20 || b > 0x7E { return false }
        if text.contains("=?") { return false }
        for word in text.split(separator: " ") where word.utf8.count > 60 { return false }
        return true
    }

    /// RFC 5322 atext (a phrase made of such words needs no quoting).
    static func isAtom(_ word: String) -> Bool {
        if word.isEmpty { return false }
        for b in word.utf8 {
            let isAlnum = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            if !isAlnum && !"!#$%&'*+-/=?^_`{|}~".utf8.contains(b) { return false }
        }
        return true
    }

    static func quotedStringEscape(_ text: String) -> String {
        var out = ""
        for c in text {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }

    /// RFC 5322 field name: printable ASCII except ':' (at most 76 so the name fits a line).
    static func isValidFieldName(_ name: String) -> Bool {
        if name.isEmpty || name.utf8.count > 76 { return false }
        for b in name.utf8 where b < 33 || b > 126 || b == UInt8(ascii: ":") { return false }
        return true
    }

    static func asciiLowercased(_ text: String) -> String {
        String(decoding: text.utf8.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 + 32 : $0 }, as: UTF8.self)
    }

    /// RFC 2046 boundary: 1-70 bchars, not ending in a space.
    static func isValidBoundary(_ b: String) -> Bool {
        let bytes = Array(b.utf8)
        if bytes.isEmpty || bytes.count > 70 || bytes.last == UInt8(ascii: " ") { return false }
        let specials = Array("'()+_,-./:=? ".utf8)
        for c in bytes {
            let isAlnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
            if !isAlnum && !specials.contains(c) { return false }
        }
        return true
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
        let first = needle[0]
        var i = 0
        let end = haystack.count - needle.count
        while i <= end {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
    }

    static func randomHex<R: RandomNumberGenerator>(byteCount: Int, using rng: inout R) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(byteCount * 2)
        // Eight bytes per draw: the system generator makes a system call for each.
        var word: UInt64 = 0
        for index in 0..<byteCount {
            if index % 8 == 0 { word = rng.next() }
            let b = UInt8(truncatingIfNeeded: word)
            word >>= 8
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

// MARK: - Quoted-printable

enum QuotedPrintable {
    static let maxLineLength = 76

    /// RFC 2045 quoted-printable. Line ends in the input (CRLF, LF or CR) become CRLF hard breaks;
    /// encoded lines (including a trailing soft-break '=') never exceed 76 characters; '=' and
    /// non-ASCII/control bytes are encoded; a space or tab at the end of a line is encoded; a line
    /// beginning with "From " gets its 'F' encoded (mbox safety) and a leading '.' is encoded
    /// (so the encoded body never needs SMTP dot-stuffing). The output does not end in a line break unless the input did.
    static func encode(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 8 + 16)
        // Split into lines (without terminators), remembering whether the input ended with a break.
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i < input.count {
            let b = input[i]
            if b == 13 || b == 10 {
                lines.append(input[start..<i])
                if b == 13 && i + 1 < input.count && input[i + 1] == 10 { i += 1 }
                i += 1
                start = i
            } else {
                i += 1
            }
        }
        lines.append(input[start..<input.count])  // last line (empty if input ended in a break)

        for (index, line) in lines.enumerated() {
            encodeLine(Array(line), into: &out)
            if index < lines.count - 1 { out += MailText.crlf }
        }
        return out
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    private static func encodeLine(_ bytes: [UInt8], into out: inout [UInt8]) {
        var column = 0
        let startsWithFrom = bytes.starts(with: Array("From ".utf8))
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            // A UTF-8 sequence is kept together on one encoded line (purely cosmetic: decoders
            // join soft-broken lines anyway).
            var count = 1
            if b >= 0xC0 {
                let expected = b >= 0xF0 ? 4 : (b >= 0xE0 ? 3 : 2)
                while count < expected && i + count < bytes.count && bytes[i + count] & 0xC0 == 0x80 { count += 1 }
            }
            let isLast = i + count == bytes.count
            var mustEncode: Bool
            switch b {
            case UInt8(ascii: "="): mustEncode = true
            case 32, 9: mustEncode = isLast
            case 33...126: mustEncode = false
            default: mustEncode = true
            }
            if i == 0 && startsWithFrom { mustEncode = true }
            if i == 0 && b == UInt8(ascii: ".") { mustEncode = true }
            let width = mustEncode ? 3 * count : count
            // Leave room for the soft-break '=' unless this ends the line.
            let limit = isLast ? maxLineLength : maxLineLength - 1
            if column + width > limit && column > 0 {
                out.append(UInt8(ascii: "="))
                out += MailText.crlf
                column = 0
            }
            for k in i..<(i + count) {
                if mustEncode {
                    out.append(UInt8(ascii: "="))
                    out.append(hex[Int(bytes[k] >> 4)])
                    out.append(hex[Int(bytes[k] & 0x0F)])
                } else {
                    out.append(bytes[k])
                }
            }
            column += width
            i += count
        }
    }
}

// MARK: - Date

enum MailDate {
    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// "Thu, 26 Nov 2026 15:19:09 +0000" for the given Unix time (UTC).
    static func rfc5322(unixSeconds: Int64) -> String {
        let (days, secondsOfDay) = floorDivMod(unixSeconds, 86_400)
        let (year, month, day) = civilFromDays(days)
        let weekday = Int(floorDivMod(days + 4, 7).1)  // 1970-01-01 was a Thursday
        let hour = secondsOfDay / 3600
        let minute = secondsOfDay % 3600 / 60
        let second = secondsOfDay % 60
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v < 0 ? -v : v)
            return (v < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(weekdays[weekday]), \(day) \(months[Int(month) - 1]) \(pad(year, 4)) "
            + "\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)) +0000"
    }

    static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var q = a / b
        var r = a % b
        if r < 0 {
            q -= 1
            r += b
        }
        return (q, r)
    }

    /// Howard Hinnant's civil_from_days: days since 1970-01-01 → (year, month 1-12, day 1-31).
    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return (y, m, d)
    }
}
