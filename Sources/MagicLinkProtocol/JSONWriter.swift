extension JSONValue {
    /// Compact JSON, members in order, no spaces, UTF-8.
    public func serialized() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256)
        serialize(into: &bytes)
        return bytes
    }

    /// Appends compact JSON to `bytes`, so a reply line can be built in one buffer.
    ///
    /// Recurses per nesting level; values from `JSONParser` are depth-capped, and values built
    /// in code are as deep as the code makes them.
    public func serialize(into bytes: inout [UInt8]) {
        write(to: &bytes)
    }

    /// The same into any output (specialized for each where it is used, in this module).
    func write<Output: JSONOutput>(to bytes: inout Output) {
        switch self {
        case .null:
            JSONWriter.append("null", to: &bytes)
        case .bool(let value):
            JSONWriter.append(value ? "true" : "false", to: &bytes)
        case .integer(let value):
            JSONWriter.appendInteger(value, to: &bytes)
        case .double(let value):
            JSONWriter.appendDouble(value, to: &bytes)
        case .string(let value):
            JSONWriter.appendString(value, to: &bytes)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            var first = true
            for element in elements {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                element.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            var first = true
            for member in object.members {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                JSONWriter.appendString(member.key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                member.value.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// At least the length of `serialized()`: exact for the short scalars, six bytes for each
    /// byte of a string (`\u00XX`), and the serialization itself for anything else.
    public var serializedCountBound: Int {
        switch self {
        case .null: 4
        case .bool: 5
        case .integer: 20
        case .string(let value): 2 + 6 * value.utf8.count
        case .double, .array, .object: serialized().count
        }
    }

    public var jsonString: String {
        String(decoding: serialized(), as: UTF8.self)
    }
}

enum JSONWriter {
    @inline(__always)
    static func append<Output: JSONOutput>(_ text: StaticString, to bytes: inout Output) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Decimal digits without going through `String`.
    static func appendInteger<Output: JSONOutput>(_ value: Int64, to bytes: inout Output) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Swift's shortest round-trip text ("0.1", "1e-05", "1e+20", "5.0") is already valid JSON for
    /// finite values; JSON has no NaN or infinity, so those become null.
    static func appendDouble<Output: JSONOutput>(_ value: Double, to bytes: inout Output) {
        guard value.isFinite else {
            append("null", to: &bytes)
            return
        }
        var text = value.description
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// `\u00XX` escapes for control characters without a short form.
    private static let hexDigits: StaticString = "0123456789abcdef"

    static func appendString<Output: JSONOutput>(_ string: String, to bytes: inout Output) {
        var string = string
        string.withUTF8 { appendString(utf8: UnsafeRawBufferPointer($0), to: &bytes) }
    }

    /// The same for a string's UTF-8 bytes (valid UTF-8, as every Swift string's are).
    static func appendString<Output: JSONOutput>(utf8 raw: UnsafeRawBufferPointer, to bytes: inout Output) {
        bytes.append(UInt8(ascii: "\""))
        raw.withMemoryRebound(to: UInt8.self) { utf8 in
            bytes.reserve(additional: utf8.count + 1)
            var runStart = 0
            var index = 0
            let count = utf8.count
            while index < count {
                let byte = utf8[index]
                // Fast path: everything that is copied as is.
                if byte >= 0x20 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte != 0xE2 {
                    index += 1
                    continue
                }
                var escapeLength = 1
                switch byte {
                case 0xE2:
                    // U+2028 and U+2029 (E2 80 A8/A9) are escaped so the output is also safe
                    // to embed in JavaScript.
                    guard index + 2 < count, utf8[index + 1] == 0x80,
                          utf8[index + 2] == 0xA8 || utf8[index + 2] == 0xA9
                    else {
                        index += 1
                        continue
                    }
                    escapeLength = 3
                default:
                    break
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                switch byte {
                case UInt8(ascii: "\""): append("\\\"", to: &bytes)
                case UInt8(ascii: "\\"): append("\\\\", to: &bytes)
                case 0x0A: append("\\n", to: &bytes)
                case 0x0D: append("\\r", to: &bytes)
                case 0x09: append("\\t", to: &bytes)
                case 0x08: append("\\b", to: &bytes)
                case 0x0C: append("\\f", to: &bytes)
                case 0xE2: append(utf8[index + 2] == 0xA8 ? "\\u2028" : "\\u2029", to: &bytes)
                default:
                    append("\\u00", to: &bytes)
                    bytes.append(hexDigits.utf8Start[Int(byte >> 4)])
                    bytes.append(hexDigits.utf8Start[Int(byte & 0x0F)])
                }
                index += escapeLength
                runStart = index
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// Where JSON text is written: a growing array, or memory sized for it in advance
/// (`JSONBufferOutput`, so a reply can be written straight into the buffer it is sent from).
protocol JSONOutput {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>)
    /// A hint that `additional` more bytes are coming.
    mutating func reserve(additional: Int)
}

extension Array: JSONOutput where Element == UInt8 {
    mutating func reserve(additional: Int) { reserveCapacity(count + additional) }
}

/// Writes into memory the caller sized (with a bound such as `Envelope.sessionSuccessCapacity`):
/// past its end is a crash, never an overrun.
struct JSONBufferOutput: JSONOutput {
    private let start: UnsafeMutablePointer<UInt8>
    private let capacity: Int
    private(set) var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) {
        start = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
        capacity = buffer.count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        precondition(count < capacity, "JSON output past its bound")
        start[count] = byte
        count += 1
    }

    @inline(__always)
    mutating func append(contentsOf bytes: UnsafeBufferPointer<UInt8>) {
        precondition(bytes.count <= capacity - count, "JSON output past its bound")
        guard let base = bytes.baseAddress else { return }
        (start + count).update(from: base, count: bytes.count)
        count += bytes.count
    }

    func reserve(additional: Int) {}
}
