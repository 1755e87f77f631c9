/// Why a request line is not acceptable JSON, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset where the problem was found.
    public var offset: Int
    /// Short English, e.g. "invalid UTF-8", "duplicate key \"a\"", "nesting deeper than 64".
    public var reason: String

    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    public var description: String { "\(reason) at byte \(offset)" }
}

/// Strict RFC 8259 parser over raw bytes.
///
/// Stricter than RFC 8259 where the protocol asks for it: duplicate keys and nesting deeper than
/// `maximumDepth` are refused, and the whole input must be valid UTF-8. The parser keeps its own
/// stack instead of recursing, so hostile nesting cannot overflow the thread's stack.
public enum JSONParser {
    public static let defaultMaximumDepth = 64

    public static func parse(
        _ bytes: UnsafeRawBufferPointer, maximumDepth: Int = defaultMaximumDepth
    ) throws(JSONParseError) -> JSONValue {
        var parser = Parser(bytes: bytes, maximumDepth: maximumDepth)
        return try parser.parseDocument()
    }

    public static func parse(
        _ bytes: [UInt8], maximumDepth: Int = defaultMaximumDepth
    ) throws(JSONParseError) -> JSONValue {
        // Closures here are untyped-rethrows, so carry the typed error out in a Result.
        let result = bytes.withUnsafeBytes { raw in
            parseResult(raw, maximumDepth: maximumDepth)
        }
        return try result.get()
    }

    public static func parse(
        _ string: String, maximumDepth: Int = defaultMaximumDepth
    ) throws(JSONParseError) -> JSONValue {
        var string = string
        let result = string.withUTF8 { utf8 in
            parseResult(UnsafeRawBufferPointer(utf8), maximumDepth: maximumDepth)
        }
        return try result.get()
    }

    private static func parseResult(
        _ bytes: UnsafeRawBufferPointer, maximumDepth: Int
    ) -> Result<JSONValue, JSONParseError> {
        do throws(JSONParseError) {
            return .success(try parse(bytes, maximumDepth: maximumDepth))
        } catch {
            return .failure(error)
        }
    }
}

// MARK: - Implementation

private enum ASCII {
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let quote: UInt8 = 0x22
    static let plus: UInt8 = 0x2B
    static let comma: UInt8 = 0x2C
    static let minus: UInt8 = 0x2D
    static let period: UInt8 = 0x2E
    static let slash: UInt8 = 0x2F
    static let zero: UInt8 = 0x30
    static let nine: UInt8 = 0x39
    static let colon: UInt8 = 0x3A
    static let upperE: UInt8 = 0x45
    static let openBracket: UInt8 = 0x5B
    static let backslash: UInt8 = 0x5C
    static let closeBracket: UInt8 = 0x5D
    static let lowerE: UInt8 = 0x65
    static let openBrace: UInt8 = 0x7B
    static let closeBrace: UInt8 = 0x7D
}

/// One open array or object on the parser's explicit stack.
private struct Frame {
    var isObject: Bool
    /// Where this container's values start in `Parser.values`.
    var valueStart: Int
    /// Where this object's keys start in `Parser.keys`.
    var keyStart: Int
    /// Built only once an object grows large, so duplicate detection stays O(n) for big objects
    /// without paying for hashing on the small ones the protocol actually sends.
    var keySet: Set<ByteKey>?
}

/// A key hashed and compared by its UTF-8 bytes (see `jsonStringsEqual`).
private struct ByteKey: Hashable {
    var string: String

    static func == (lhs: ByteKey, rhs: ByteKey) -> Bool {
        jsonStringsEqual(lhs.string, rhs.string)
    }

    func hash(into hasher: inout Hasher) {
        var copy = string
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

private let keySetThreshold = 16

private struct Parser {
    let bytes: UnsafeRawBufferPointer
    let end: Int
    let maximumDepth: Int
    var index = 0

    /// Finished values of all open containers, innermost last.
    var values: [JSONValue] = []
    /// Keys of all open objects; an object's key count equals its value count plus one while a
    /// member value is being parsed.
    var keys: [String] = []
    var frames: [Frame] = []
    /// Reused for strings that contain escapes.
    var scratch: [UInt8] = []

    init(bytes: UnsafeRawBufferPointer, maximumDepth: Int) {
        self.bytes = bytes
        self.end = bytes.count
        self.maximumDepth = maximumDepth
        // Enough for a typical request line without regrowing.
        values.reserveCapacity(16)
        keys.reserveCapacity(16)
        frames.reserveCapacity(8)
    }

    // MARK: Structure

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard index < end else {
            throw JSONParseError(offset: index, reason: "empty input")
        }

        parseValue: while true {
            skipWhitespace()
            guard index < end else { throw unexpectedEnd() }
            var value: JSONValue
            switch bytes[index] {
            case ASCII.openBracket:
                try checkDepth()
                index += 1
                skipWhitespace()
                if index < end && bytes[index] == ASCII.closeBracket {
                    index += 1
                    value = .array([])
                } else {
                    frames.append(Frame(isObject: false, valueStart: values.count, keyStart: keys.count))
                    continue parseValue
                }
            case ASCII.openBrace:
                try checkDepth()
                index += 1
                skipWhitespace()
                if index < end && bytes[index] == ASCII.closeBrace {
                    index += 1
                    value = .object(JSONObject())
                } else {
                    frames.append(Frame(isObject: true, valueStart: values.count, keyStart: keys.count))
                    try parseKeyAndColon()
                    continue parseValue
                }
            case ASCII.quote:
                value = .string(try parseString())
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                value = .null
            case ASCII.minus, ASCII.zero...ASCII.nine:
                value = try parseNumber()
            default:
                throw unexpected("unexpected character")
            }

            // A value is complete: hand it to its container, closing containers as they end.
            while true {
                guard !frames.isEmpty else {
                    skipWhitespace()
                    guard index == end else { throw unexpected("trailing characters") }
                    return value
                }
                values.append(value)
                skipWhitespace()
                guard index < end else { throw unexpectedEnd() }
                let byte = bytes[index]
                // Copy the fields, not the frame: a second reference to its key set would make
                // the next insert copy the whole set.
                let top = frames.count - 1
                let isObject = frames[top].isObject
                let valueStart = frames[top].valueStart
                if isObject {
                    if byte == ASCII.comma {
                        index += 1
                        skipWhitespace()
                        try parseKeyAndColon()
                        continue parseValue
                    }
                    guard byte == ASCII.closeBrace else { throw unexpected("expected ',' or '}'") }
                    index += 1
                    var members: [(key: String, value: JSONValue)] = []
                    let keyStart = frames[top].keyStart
                    members.reserveCapacity(values.count - valueStart)
                    for (key, member) in zip(keys[keyStart...], values[valueStart...]) {
                        members.append((key: key, value: member))
                    }
                    keys.removeSubrange(keyStart...)
                    values.removeSubrange(valueStart...)
                    frames.removeLast()
                    value = .object(JSONObject(uncheckedMembers: members))
                } else {
                    if byte == ASCII.comma {
                        index += 1
                        continue parseValue
                    }
                    guard byte == ASCII.closeBracket else { throw unexpected("expected ',' or ']'") }
                    index += 1
                    let elements = Array(values[valueStart...])
                    values.removeSubrange(valueStart...)
                    frames.removeLast()
                    value = .array(elements)
                }
            }
        }
    }

    @inline(__always)
    func checkDepth() throws(JSONParseError) {
        if frames.count >= maximumDepth {
            throw JSONParseError(offset: index, reason: "nesting deeper than \(maximumDepth)")
        }
    }

    /// Parses `"key"` and `:` for the innermost (object) frame, refusing a repeated key.
    mutating func parseKeyAndColon() throws(JSONParseError) {
        guard index < end else { throw unexpectedEnd() }
        guard bytes[index] == ASCII.quote else { throw unexpected("expected string key") }
        let keyOffset = index
        let key = try parseString()

        let top = frames.count - 1
        let keyStart = frames[top].keyStart
        let existing = keys.count - keyStart
        var isDuplicate = false
        if frames[top].keySet != nil {
            isDuplicate = !frames[top].keySet!.insert(ByteKey(string: key)).inserted
        } else if existing < keySetThreshold {
            for position in keyStart..<keys.count where jsonStringsEqual(keys[position], key) {
                isDuplicate = true
                break
            }
        } else {
            var set = Set<ByteKey>(minimumCapacity: existing * 2)
            for other in keys[keyStart...] { set.insert(ByteKey(string: other)) }
            isDuplicate = !set.insert(ByteKey(string: key)).inserted
            frames[top].keySet = set
        }
        if isDuplicate {
            throw JSONParseError(offset: keyOffset, reason: "duplicate key \(Self.quoted(key))")
        }
        keys.append(key)

        skipWhitespace()
        guard index < end else { throw unexpectedEnd() }
        guard bytes[index] == ASCII.colon else { throw unexpected("expected ':'") }
        index += 1
    }

    /// The key as it may appear in an error message: quoted, short, control characters escaped.
    static func quoted(_ key: String) -> String {
        let limit = 40
        var text = ""
        var count = 0
        for scalar in key.unicodeScalars {
            if count == limit {
                text += "…"
                break
            }
            count += 1
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value):
                text += scalar.escaped(asASCII: true)
            default: text.unicodeScalars.append(scalar)
            }
        }
        return "\"" + text + "\""
    }

    // MARK: Whitespace and literals

    @inline(__always)
    mutating func skipWhitespace() {
        while index < end {
            switch bytes[index] {
            case ASCII.space, ASCII.lineFeed, ASCII.carriageReturn, ASCII.tab:
                index += 1
            default:
                return
            }
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let start = index
        for offset in 0..<count {
            guard start + offset < end else { throw unexpectedEnd() }
            guard bytes[start + offset] == literal.utf8Start[offset] else {
                index = start + offset
                throw unexpected("invalid literal")
            }
        }
        index = start + count
    }

    // MARK: Numbers

    @inline(__always)
    func isDigit(at position: Int) -> Bool {
        position < end && bytes[position] >= ASCII.zero && bytes[position] <= ASCII.nine
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        let negative = bytes[index] == ASCII.minus
        if negative { index += 1 }

        guard isDigit(at: index) else { throw invalidNumber() }
        if bytes[index] == ASCII.zero {
            index += 1
            if isDigit(at: index) { throw JSONParseError(offset: index, reason: "leading zero in number") }
        } else {
            while isDigit(at: index) { index += 1 }
        }
        let integerEnd = index

        var isInteger = true
        if index < end && bytes[index] == ASCII.period {
            isInteger = false
            index += 1
            guard isDigit(at: index) else { throw invalidNumber() }
            while isDigit(at: index) { index += 1 }
        }
        if index < end && (bytes[index] == ASCII.lowerE || bytes[index] == ASCII.upperE) {
            isInteger = false
            index += 1
            if index < end && (bytes[index] == ASCII.plus || bytes[index] == ASCII.minus) { index += 1 }
            guard isDigit(at: index) else { throw invalidNumber() }
            while isDigit(at: index) { index += 1 }
        }

        if isInteger, let integer = integerValue(digitsFrom: negative ? start + 1 : start, to: integerEnd, negative: negative) {
            return .integer(integer)
        }

        // The text is validated JSON number syntax (pure ASCII), which Swift's parser accepts.
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let double = Double(text[...]), double.isFinite else {
            throw JSONParseError(offset: start, reason: "number out of range")
        }
        return .double(double)
    }

    /// Accumulates toward the sign so that Int64.min fits; nil on overflow.
    func integerValue(digitsFrom start: Int, to end: Int, negative: Bool) -> Int64? {
        var result: Int64 = 0
        for position in start..<end {
            let digit = Int64(bytes[position] &- ASCII.zero)
            let (shifted, overflow1) = result.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative
                ? shifted.subtractingReportingOverflow(digit)
                : shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            result = next
        }
        return result
    }

    func invalidNumber() -> JSONParseError {
        if index >= end { return unexpectedEnd() }
        return unexpected("invalid number")
    }

    // MARK: Strings

    /// Parses a string starting at its opening quote, validating UTF-8 as it goes.
    mutating func parseString() throws(JSONParseError) -> String {
        index += 1
        var runStart = index
        var escaped = false
        scratch.removeAll(keepingCapacity: true)

        while true {
            guard index < end else {
                throw JSONParseError(offset: end, reason: "unterminated string")
            }
            let byte = bytes[index]
            if byte >= ASCII.space && byte < 0x80 && byte != ASCII.quote && byte != ASCII.backslash {
                index += 1
                continue
            }
            switch byte {
            case ASCII.quote:
                let run = UnsafeRawBufferPointer(rebasing: bytes[runStart..<index])
                index += 1
                if !escaped {
                    return String(decoding: run, as: UTF8.self)
                }
                scratch.append(contentsOf: run)
                return String(decoding: scratch, as: UTF8.self)
            case ASCII.backslash:
                escaped = true
                scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                try parseEscape()
                runStart = index
            case 0..<ASCII.space:
                throw JSONParseError(offset: index, reason: "unescaped control character in string")
            default:
                guard let length = utf8SequenceLength(at: index) else {
                    throw JSONParseError(offset: index, reason: "invalid UTF-8")
                }
                index += length
            }
        }
    }

    /// Parses one escape starting at the backslash and appends its UTF-8 to `scratch`.
    mutating func parseEscape() throws(JSONParseError) {
        let escapeStart = index
        index += 1
        guard index < end else { throw JSONParseError(offset: end, reason: "unterminated string") }
        let byte = bytes[index]
        index += 1
        switch byte {
        case ASCII.quote: scratch.append(ASCII.quote)
        case ASCII.backslash: scratch.append(ASCII.backslash)
        case ASCII.slash: scratch.append(ASCII.slash)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(ASCII.lineFeed)
        case UInt8(ascii: "r"): scratch.append(ASCII.carriageReturn)
        case UInt8(ascii: "t"): scratch.append(ASCII.tab)
        case UInt8(ascii: "u"):
            var scalar = try parseHex4(escapeStart: escapeStart)
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard index + 1 < end, bytes[index] == ASCII.backslash, bytes[index + 1] == UInt8(ascii: "u") else {
                    throw JSONParseError(offset: escapeStart, reason: "unpaired surrogate")
                }
                let lowStart = index
                index += 2
                let low = try parseHex4(escapeStart: lowStart)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw JSONParseError(offset: escapeStart, reason: "unpaired surrogate")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw JSONParseError(offset: escapeStart, reason: "unpaired surrogate")
            }
            appendUTF8(scalar)
        default:
            throw JSONParseError(offset: escapeStart, reason: "invalid escape")
        }
    }

    /// Reads the four hex digits after `\u`.
    mutating func parseHex4(escapeStart: Int) throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard index < end else { throw JSONParseError(offset: end, reason: "unterminated string") }
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case ASCII.zero...ASCII.nine: digit = byte - ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw JSONParseError(offset: escapeStart, reason: "invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Length of the well-formed UTF-8 sequence starting at `position` (Unicode table 3-7), or nil:
    /// refuses overlongs, encoded surrogates, scalars above U+10FFFF and truncated sequences.
    func utf8SequenceLength(at position: Int) -> Int? {
        let lead = bytes[position]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: return nil
        }
        guard position + length <= end else { return nil }
        let second = bytes[position + 1]
        guard second >= low && second <= high else { return nil }
        for offset in 2..<length {
            let byte = bytes[position + offset]
            guard byte >= 0x80 && byte <= 0xBF else { return nil }
        }
        return length
    }

    // MARK: Errors

    func unexpectedEnd() -> JSONParseError {
        JSONParseError(offset: end, reason: "unexpected end of input")
    }

    /// An error at `index`; reported as invalid UTF-8 when that is what the byte is.
    func unexpected(_ reason: String) -> JSONParseError {
        if index < end && bytes[index] >= 0x80 && utf8SequenceLength(at: index) == nil {
            return JSONParseError(offset: index, reason: "invalid UTF-8")
        }
        return JSONParseError(offset: index, reason: reason)
    }
}
