/// A `session` request line in its plainest form, read in one pass over its bytes without
/// building a JSON tree: every page of every app sends one, and `Envelope.decode` spent about
/// as long on it (a tree, its strings and arrays) as all the rest of the answer.
///
/// `scan` takes only lines that `Envelope.decode` also takes, and to the same request:
/// - one object with members `id` (optional), `op` (`"session"`) and `params` (required), each
///   at most once and no other member;
/// - `params` an object with `session` (a string) and optionally `app` and `ip` (strings or
///   null), each at most once and no other member;
/// - every string plain printable ASCII (0x20-0x7E) without `"` or `\`, so no escape and no
///   UTF-8 question arises; `id` also a null or an integer of at most 16 digits within
///   ±(2^53−1), written without sign on zero, fraction or exponent;
/// - whitespace only spaces and tabs, and one CR at the very end.
/// Anything else gives nil, never an error: the caller then decodes the line the general way,
/// which accepts it or says precisely what is wrong. The differential tests hold `scan` to this
/// against `Envelope.decode`.
public struct PlainSessionRequest: Sendable, Equatable {
    /// `.null` (absent), `.integer` or `.string`, as `Envelope.decode` gives it.
    public var id: JSONValue
    /// Where the strings' contents are in the scanned line (without the quotes).
    public var app: Range<Int>?
    public var session: Range<Int>
    public var ip: Range<Int>?

    public static func scan(_ line: UnsafeRawBufferPointer) -> PlainSessionRequest? {
        var count = line.count
        if count > 0, line[count - 1] == UInt8(ascii: "\r") { count -= 1 }
        var scanner = Scanner(bytes: line, end: count)
        return scanner.request()
    }
}

private struct Scanner {
    let bytes: UnsafeRawBufferPointer
    let end: Int
    var index = 0

    init(bytes: UnsafeRawBufferPointer, end: Int) {
        self.bytes = bytes
        self.end = end
    }

    /// The whole line: `{ "id"?, "op", "params" }` in any order.
    mutating func request() -> PlainSessionRequest? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var id: JSONValue?
        var sawOp = false
        var params: (app: Range<Int>?, session: Range<Int>, ip: Range<Int>?)?
        repeat {
            guard let key = string() else { return nil }
            guard take(UInt8(ascii: ":")) else { return nil }
            switch Key(bytes, key) {
            case .id:
                guard id == nil, let value = idValue() else { return nil }
                id = value
            case .op:
                guard !sawOp, let op = string(), Key(bytes, op) == .session else { return nil }
                sawOp = true
            case .params:
                guard params == nil, let value = paramsValue() else { return nil }
                params = value
            default:
                return nil
            }
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")) else { return nil }
        skipWhitespace()
        guard index == end, sawOp, let params else { return nil }
        return PlainSessionRequest(id: id ?? .null, app: params.app, session: params.session, ip: params.ip)
    }

    /// `{ "session", "app"?, "ip"? }` in any order; `app` and `ip` may be null.
    mutating func paramsValue() -> (app: Range<Int>?, session: Range<Int>, ip: Range<Int>?)? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var session: Range<Int>?
        var app: Range<Int>??
        var ip: Range<Int>??
        repeat {
            guard let key = string() else { return nil }
            guard take(UInt8(ascii: ":")) else { return nil }
            switch Key(bytes, key) {
            case .session:
                guard session == nil, let value = string() else { return nil }
                session = value
            case .app:
                guard app == nil, let value = stringOrNull() else { return nil }
                app = value
            case .ip:
                guard ip == nil, let value = stringOrNull() else { return nil }
                ip = value
            default:
                return nil
            }
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")), let session else { return nil }
        return (app ?? nil, session, ip ?? nil)
    }

    /// null, a plain string, or a plain integer within ±(2^53−1).
    mutating func idValue() -> JSONValue? {
        skipWhitespace()
        guard index < end else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "n"):
            return literalNull() ? .null : nil
        case UInt8(ascii: "\""):
            guard let range = string(), range.count <= Envelope.maximumIDBytes else { return nil }
            return .string(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self))
        default:
            return integer().map(JSONValue.integer)
        }
    }

    /// A plain string's contents, or nil for `null`; nil overall for anything else.
    mutating func stringOrNull() -> Range<Int>?? {
        skipWhitespace()
        guard index < end else { return nil }
        if bytes[index] == UInt8(ascii: "n") { return literalNull() ? .some(nil) : nil }
        return string().map { .some($0) }
    }

    /// `"…"` of printable ASCII without `"` or `\`: the range of its contents.
    mutating func string() -> Range<Int>? {
        skipWhitespace()
        guard index < end, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        let start = index
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<(index - 1)
            }
            guard byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    mutating func literalNull() -> Bool {
        guard end - index >= 4, bytes[index + 1] == UInt8(ascii: "u"), bytes[index + 2] == UInt8(ascii: "l"),
              bytes[index + 3] == UInt8(ascii: "l") else { return false }
        index += 4
        return true
    }

    /// `-?(0|[1-9][0-9]{0,15})` not followed by a fraction, exponent or more digits, within
    /// ±(2^53−1); "-0" is left to the general parser.
    mutating func integer() -> Int64? {
        var position = index
        let negative = position < end && bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        let digitsStart = position
        var value: Int64 = 0
        while position < end, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            guard position - digitsStart < 16 else { return nil }
            value = value * 10 + Int64(bytes[position] - UInt8(ascii: "0"))
            position += 1
        }
        let digits = position - digitsStart
        guard digits > 0, !(digits > 1 && bytes[digitsStart] == UInt8(ascii: "0")), !(negative && value == 0) else { return nil }
        if position < end {
            switch bytes[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: ","), UInt8(ascii: "}"): break
            default: return nil
            }
        }
        guard value <= Envelope.maximumSafeInteger else { return nil }
        index = position
        return negative ? -value : value
    }

    /// Skips whitespace, then takes `byte` if it is next.
    mutating func take(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < end, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    mutating func skipWhitespace() {
        while index < end, bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") { index += 1 }
    }
}

/// The member names the scanner knows, matched by their bytes.
private enum Key {
    case id, op, params, session, app, ip, other

    init(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) {
        let text = UnsafeRawBufferPointer(rebasing: bytes[range])
        switch text.count {
        case 2 where text[0] == UInt8(ascii: "i"): self = text[1] == UInt8(ascii: "d") ? .id : text[1] == UInt8(ascii: "p") ? .ip : .other
        case 2 where text[0] == UInt8(ascii: "o") && text[1] == UInt8(ascii: "p"): self = .op
        case 3 where Self.equal(text, "app"): self = .app
        case 6 where Self.equal(text, "params"): self = .params
        case 7 where Self.equal(text, "session"): self = .session
        default: self = .other
        }
    }

    /// Byte by byte (`elementsEqual` against a string's UTF-8 view took the slow generic path).
    private static func equal(_ text: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard text.count == name.utf8CodeUnitCount else { return false }
        let expected = name.utf8Start
        for index in 0..<text.count where text[index] != expected[index] { return false }
        return true
    }
}
