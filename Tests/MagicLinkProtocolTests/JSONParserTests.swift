import XCTest
@testable import MagicLinkProtocol

final class JSONParserTests: XCTestCase {
    // MARK: Helpers

    private func parse(_ text: String, maximumDepth: Int = JSONParser.defaultMaximumDepth, file: StaticString = #filePath, line: UInt = #line) -> JSONValue? {
        do {
            return try JSONParser.parse(text, maximumDepth: maximumDepth)
        } catch {
            XCTFail("unexpected error \(error) for \(text.debugDescription)", file: file, line: line)
            return nil
        }
    }

    private func assertParses(_ text: String, _ expected: JSONValue, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(parse(text, file: file, line: line), expected, text.debugDescription, file: file, line: line)
    }

    private func assertParses(bytes: [UInt8], _ expected: JSONValue, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let value = try JSONParser.parse(bytes)
            XCTAssertEqual(value, expected, file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error) for \(bytes)", file: file, line: line)
        }
    }

    /// Returns the error so callers can check it further.
    @discardableResult
    private func assertFails(bytes: [UInt8], maximumDepth: Int = JSONParser.defaultMaximumDepth, reason: String? = nil, offset: Int? = nil, file: StaticString = #filePath, line: UInt = #line) -> JSONParseError? {
        do {
            let value = try JSONParser.parse(bytes, maximumDepth: maximumDepth)
            XCTFail("expected an error for \(bytes.prefix(40)), got \(value)", file: file, line: line)
            return nil
        } catch {
            if let reason { XCTAssertEqual(error.reason, reason, "input \(bytes.prefix(40))", file: file, line: line) }
            if let offset { XCTAssertEqual(error.offset, offset, "input \(bytes.prefix(40))", file: file, line: line) }
            return error
        }
    }

    @discardableResult
    private func assertFails(_ text: String, maximumDepth: Int = JSONParser.defaultMaximumDepth, reason: String? = nil, offset: Int? = nil, file: StaticString = #filePath, line: UInt = #line) -> JSONParseError? {
        assertFails(bytes: Array(text.utf8), maximumDepth: maximumDepth, reason: reason, offset: offset, file: file, line: line)
    }

    // MARK: Values

    func testLiteralsAtTopLevel() {
        assertParses("null", .null)
        assertParses("true", .bool(true))
        assertParses("false", .bool(false))
        assertParses("\"x\"", .string("x"))
        assertParses("42", .integer(42))
        assertParses(" \t\r\n[]\n ", .array([]))
        assertParses("{}", .object(JSONObject()))
    }

    func testNestedStructure() {
        let text = #"{"id":7,"op":"session","params":{"session":"abc","list":[1,-2.5,true,null,[],{}]}}"#
        let expected: JSONValue = .object([
            "id": 7,
            "op": "session",
            "params": .object([
                "session": "abc",
                "list": [1, .double(-2.5), true, nil, [], .object([:])],
            ]),
        ])
        assertParses(text, expected)
        // Document order is kept.
        XCTAssertEqual(parse(text)?.objectValue?.members.map { $0.key }, ["id", "op", "params"])
    }

    func testWhitespaceEverywhere() {
        assertParses(" { \"a\" : [ 1 , 2 ] , \"b\" :\t{\r\n} } ", .object(["a": [1, 2], "b": .object([:])]))
    }

    func testOnlyFourWhitespaceCharacters() {
        assertFails("\u{0B}1", reason: "unexpected character", offset: 0)
        assertFails("\u{0C}1", reason: "unexpected character", offset: 0)
        assertFails("[1,\u{A0}2]", reason: "unexpected character")
        assertFails("1\u{2028}", reason: "trailing characters", offset: 1)
    }

    func testEmptyInput() {
        assertFails("", reason: "empty input", offset: 0)
        assertFails("  \n", reason: "empty input", offset: 3)
        XCTAssertThrowsError(try JSONParser.parse(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    func testTrailingCharacters() {
        assertFails("{} x", reason: "trailing characters", offset: 3)
        assertFails("1 2", reason: "trailing characters", offset: 2)
        assertFails("[]]", reason: "trailing characters", offset: 2)
        assertFails("truex", reason: "trailing characters", offset: 4)
        assertFails("{}\u{0}", reason: "trailing characters", offset: 2)
    }

    func testUnexpectedEnd() {
        for text in ["[", "[1", "[1,", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "tru", "-"] {
            assertFails(text, reason: "unexpected end of input", offset: text.utf8.count)
        }
        assertFails("\"abc", reason: "unterminated string", offset: 4)
    }

    func testBadStructure() {
        assertFails("[1,]", reason: "unexpected character", offset: 3)
        assertFails("{\"a\":1,}", reason: "expected string key", offset: 7)
        assertFails("[,1]", reason: "unexpected character", offset: 1)
        assertFails("[1 2]", reason: "expected ',' or ']'", offset: 3)
        assertFails("{\"a\" 1}", reason: "expected ':'", offset: 5)
        assertFails("{\"a\":1 \"b\":2}", reason: "expected ',' or '}'", offset: 7)
        assertFails("{1:2}", reason: "expected string key", offset: 1)
        assertFails("{'a':1}", reason: "expected string key")
        assertFails("['a']", reason: "unexpected character")
        assertFails("[1}", reason: "expected ',' or ']'")
        assertFails("{\"a\":1]", reason: "expected ',' or '}'")
        assertFails("]", reason: "unexpected character")
    }

    func testLiterals() {
        assertFails("nul", reason: "unexpected end of input")
        assertFails("nulL", reason: "invalid literal", offset: 3)
        assertFails("True", reason: "unexpected character", offset: 0)
        assertFails("NaN", reason: "unexpected character")
        assertFails("Infinity")
        assertFails("-Infinity", reason: "invalid number")
        assertFails("undefined")
    }

    func testCommentsRefused() {
        assertFails("/* c */ {}", reason: "unexpected character", offset: 0)
        assertFails("{} // c", reason: "trailing characters")
        assertFails("[1, # c\n 2]")
    }

    func testByteOrderMarkRefused() {
        assertFails(bytes: [0xEF, 0xBB, 0xBF, 0x7B, 0x7D], reason: "unexpected character", offset: 0)
    }

    // MARK: Numbers

    func testIntegers() {
        assertParses("0", .integer(0))
        assertParses("-0", .integer(0))
        assertParses("123", .integer(123))
        assertParses("-123", .integer(-123))
        assertParses("9223372036854775807", .integer(.max))
        assertParses("-9223372036854775808", .integer(.min))
    }

    func testIntegersBeyondInt64BecomeDoubles() {
        assertParses("9223372036854775808", .double(9223372036854775808.0))
        assertParses("-9223372036854775809", .double(-9223372036854775809.0))
        assertParses("100000000000000000000000", .double(1e23))
    }

    func testFractionsAndExponentsAreDoubles() {
        assertParses("1.0", .double(1))
        assertParses("1e2", .double(100))
        assertParses("1E2", .double(100))
        assertParses("1e+2", .double(100))
        assertParses("1e-2", .double(0.01))
        assertParses("-0.0", .double(-0.0))
        assertParses("0.1", .double(0.1))
        assertParses("123.456e-7", .double(123.456e-7))
        assertParses("1.7976931348623157e308", .double(.greatestFiniteMagnitude))
        assertParses("5e-324", .double(.leastNonzeroMagnitude))
        // Underflow to zero is not an error.
        assertParses("1e-400", .double(0))
        XCTAssertEqual(parse("-0.0")?.int64Value, nil)
    }

    func testNumberOutOfRange() {
        assertFails("1e999", reason: "number out of range", offset: 0)
        assertFails("[-1e309]", reason: "number out of range", offset: 1)
        assertFails("1.8e308", reason: "number out of range")
    }

    func testNumberSyntax() {
        assertFails("01", reason: "leading zero in number", offset: 1)
        assertFails("-01", reason: "leading zero in number", offset: 2)
        assertFails("00", reason: "leading zero in number")
        assertFails("+1", reason: "unexpected character", offset: 0)
        assertFails(".5", reason: "unexpected character")
        assertFails("1.", reason: "unexpected end of input")
        assertFails("[1.]", reason: "invalid number", offset: 3)
        assertFails("1.e2", reason: "invalid number")
        assertFails("1e", reason: "unexpected end of input")
        assertFails("[1e]", reason: "invalid number")
        assertFails("[1e+]", reason: "invalid number")
        assertFails("--1", reason: "invalid number", offset: 1)
        assertFails("- 1", reason: "invalid number")
        assertFails("0x10", reason: "trailing characters", offset: 1)
        assertFails("1_000", reason: "trailing characters")
        assertFails("[1.5.2]")
    }

    // MARK: Strings

    func testSimpleEscapes() {
        assertParses(#""\"\\\/\b\f\n\r\t""#, .string("\"\\/\u{8}\u{C}\n\r\t"))
        assertParses(#""a\u0041\u00e9\u20AC""#, .string("aAé€"))
        assertParses(#""\u0000""#, .string("\u{0}"))
        assertParses(#""x\u001fy""#, .string("x\u{1F}y"))
    }

    func testInvalidEscapes() {
        assertFails(#""\a""#, reason: "invalid escape", offset: 1)
        assertFails(#""\'""#, reason: "invalid escape")
        assertFails(#""\x41""#, reason: "invalid escape")
        assertFails(#""\U0041""#, reason: "invalid escape")
        assertFails(#""\u41""#, reason: "invalid \\u escape", offset: 1)
        assertFails(#""\u00G1""#, reason: "invalid \\u escape")
        assertFails(#""\"#, reason: "unterminated string")
        assertFails(#""\u00"#, reason: "unterminated string")
    }

    func testSurrogatePairs() {
        assertParses(#""\uD83D\uDE00""#, .string("😀"))
        assertParses(#""\ud834\udd1e""#, .string("\u{1D11E}"))
        assertParses(#""\uDBFF\uDFFF""#, .string("\u{10FFFF}"))
        assertParses(#""a\uD800\uDC00b""#, .string("a\u{10000}b"))
    }

    func testUnpairedSurrogates() {
        assertFails(#""\uD800""#, reason: "unpaired surrogate", offset: 1)
        assertFails(#""\uDC00""#, reason: "unpaired surrogate", offset: 1)
        assertFails(#""\uD800x""#, reason: "unpaired surrogate")
        assertFails(#""\uD800\n""#, reason: "unpaired surrogate")
        assertFails(#""\uD800\uD800""#, reason: "unpaired surrogate")
        assertFails(#""\uDE00\uD83D""#, reason: "unpaired surrogate")
        assertFails(#""\uD800\u0041""#, reason: "unpaired surrogate")
    }

    func testControlCharactersMustBeEscaped() {
        for byte in UInt8(0)..<0x20 {
            assertFails(bytes: [0x22, byte, 0x22], reason: "unescaped control character in string", offset: 1)
        }
        // DEL is not a control character for JSON.
        assertParses(bytes: [0x22, 0x7F, 0x22], .string("\u{7F}"))
    }

    func testRawUnicode() {
        assertParses("\"héllo wörld € 😀 \u{10FFFF} \u{FFFF}\"", .string("héllo wörld € 😀 \u{10FFFF} \u{FFFF}"))
        assertParses("\"\u{2028}\u{2029}\"", .string("\u{2028}\u{2029}"))
    }

    func testStringsCompareByCodePoints() {
        // NFC "é" and NFD "e\u{301}" are equal to Swift's String == but are different JSON strings.
        XCTAssertNotEqual(JSONValue.string("\u{E9}"), JSONValue.string("e\u{301}"))
        assertParses("{\"\u{E9}\":1,\"e\u{301}\":2}", .object(JSONObject([("\u{E9}", 1), ("e\u{301}", 2)])))
    }

    // MARK: UTF-8

    func testInvalidUTF8() {
        let cases: [(String, [UInt8])] = [
            ("lone continuation", [0x80]),
            ("lone continuation 2", [0xBF]),
            ("C0 overlong", [0xC0, 0xAF]),
            ("C1 overlong", [0xC1, 0xBF]),
            ("E0 overlong", [0xE0, 0x80, 0xAF]),
            ("F0 overlong", [0xF0, 0x80, 0x80, 0xAF]),
            ("UTF-8 surrogate D800", [0xED, 0xA0, 0x80]),
            ("UTF-8 surrogate DFFF", [0xED, 0xBF, 0xBF]),
            ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]),
            ("F5 lead", [0xF5, 0x80, 0x80, 0x80]),
            ("FF", [0xFF]),
            ("FE", [0xFE]),
            ("truncated 2", [0xC3]),
            ("truncated 3", [0xE2, 0x82]),
            ("truncated 4", [0xF0, 0x9F, 0x98]),
            ("bad continuation", [0xC3, 0x41]),
            ("bad continuation 3", [0xE2, 0x28, 0xA1]),
            ("6-byte overlong", [0xFC, 0x80, 0x80, 0x80, 0x80, 0xAF]),
            ("latin-1", [0xE9]),
        ]
        for (name, sequence) in cases {
            // Inside a string.
            let inString = assertFails(bytes: [0x22] + sequence + [0x22], reason: "invalid UTF-8", offset: 1)
            XCTAssertNotNil(inString, name)
            // Inside a string, after valid text.
            assertFails(bytes: Array("[\"ok é\",\"".utf8) + sequence + [0x22, 0x5D], reason: "invalid UTF-8")
            // Outside any string.
            assertFails(bytes: [0x5B] + sequence + [0x5D], reason: "invalid UTF-8", offset: 1)
            assertFails(bytes: [0x31, 0x20] + sequence, reason: "invalid UTF-8", offset: 2)
        }
    }

    func testTruncatedSequenceAtEndOfString() {
        assertFails(bytes: [0x22, 0x61, 0xE2, 0x82], reason: "invalid UTF-8", offset: 2)
        assertFails(bytes: [0x22, 0xF0, 0x9F, 0x98, 0x22], reason: "invalid UTF-8", offset: 1)
    }

    func testValidUTF8Boundaries() {
        let cases: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF],
            [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for sequence in cases {
            assertParses(bytes: [0x22] + sequence + [0x22], .string(String(decoding: sequence, as: UTF8.self)))
        }
    }

    // MARK: Objects

    func testDuplicateKeys() {
        assertFails(#"{"a":1,"a":2}"#, reason: #"duplicate key "a""#, offset: 7)
        assertFails(#"{"a":1,"a":1}"#, reason: #"duplicate key "a""#)
        assertFails(#"{"a":1,"b":2,"a":3}"#, reason: #"duplicate key "a""#)
        // The same key written with an escape is still the same key.
        assertFails(#"{"a":1,"\u0061":2}"#, reason: #"duplicate key "a""#)
        assertFails(#"{"":1,"":2}"#, reason: #"duplicate key """#)
        // Nested objects are checked too, and separately.
        assertFails(#"{"o":{"k":1,"k":2}}"#, reason: #"duplicate key "k""#)
        assertParses(#"{"k":{"k":{"k":1}}}"#, .object(["k": .object(["k": .object(["k": 1])])]))
        assertParses(#"[{"a":1},{"a":2}]"#, [.object(["a": 1]), .object(["a": 2])])
    }

    func testDuplicateKeyReasonIsShortAndEscaped() {
        let long = String(repeating: "x", count: 100)
        let error = assertFails("{\"\(long)\":1,\"\(long)\":2}")
        XCTAssertEqual(error?.reason, "duplicate key \"\(String(repeating: "x", count: 40))…\"")
        let control = assertFails(#"{"a\nb":1,"a\nb":2}"#)
        XCTAssertEqual(control?.reason, #"duplicate key "a\nb""#)
    }

    func testDuplicateKeysInLargeObjects() {
        // Past the threshold the parser switches to a hash set; check both sides of it.
        for size in [10, 15, 16, 17, 40, 2000] {
            let members = (0..<size).map { "\"k\($0)\":\($0)" }
            let valid = "{" + members.joined(separator: ",") + "}"
            let object = parse(valid)?.objectValue
            XCTAssertEqual(object?.count, size)
            XCTAssertEqual(object?["k\(size - 1)"], .integer(Int64(size - 1)))
            for duplicate in [0, size / 2, size - 1] {
                let text = "{" + members.joined(separator: ",") + ",\"k\(duplicate)\":0}"
                assertFails(text, reason: "duplicate key \"k\(duplicate)\"")
            }
        }
    }

    func testManyKeysParseQuickly() {
        let members = (0..<20000).map { "\"key\($0)\":\($0)" }.joined(separator: ",")
        let text = "{" + members + "}"
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            XCTAssertEqual(parse(text)?.objectValue?.count, 20000)
        }
        XCTAssertLessThan(elapsed, .seconds(2))
    }

    // MARK: Depth

    func testDepthLimit() {
        let depth64 = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNotNil(parse(depth64))
        assertFails(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), reason: "nesting deeper than 64", offset: 64)

        let objects64 = String(repeating: "{\"a\":", count: 63) + "{}" + String(repeating: "}", count: 63)
        XCTAssertNotNil(parse(objects64))
        let objects65 = String(repeating: "{\"a\":", count: 64) + "{}" + String(repeating: "}", count: 64)
        assertFails(objects65, reason: "nesting deeper than 64", offset: 64 * 5)

        // Arrays and objects count together.
        let mixed = String(repeating: "[{\"a\":", count: 33) + "1" + String(repeating: "}]", count: 33)
        assertFails(mixed, reason: "nesting deeper than 64")
        let mixedOK = String(repeating: "[{\"a\":", count: 32) + "1" + String(repeating: "}]", count: 32)
        XCTAssertNotNil(parse(mixedOK))
    }

    func testCustomDepth() {
        XCTAssertNotNil(parse("[[1]]", maximumDepth: 2))
        assertFails("[[[1]]]", maximumDepth: 2, reason: "nesting deeper than 2", offset: 2)
        XCTAssertEqual(parse("1", maximumDepth: 0), .integer(1))
        assertFails("[]", maximumDepth: 0, reason: "nesting deeper than 0", offset: 0)
        // Empty containers count as a level.
        assertFails("[[]]", maximumDepth: 1, reason: "nesting deeper than 1")
        assertFails("[{}]", maximumDepth: 1, reason: "nesting deeper than 1")
    }

    func testDeepNestingWithRaisedLimitDoesNotRecurse() {
        let depth = 5000
        let text = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        var value = parse(text, maximumDepth: depth)
        var levels = 0
        while case .array(let elements)? = value {
            levels += 1
            value = elements.first
        }
        XCTAssertEqual(levels, depth)
    }

    func testHostileDepthFailsFast() {
        let clock = ContinuousClock()
        let arrays = [UInt8](repeating: UInt8(ascii: "["), count: 100_000)
        let objects = Array(String(repeating: "{\"a\":", count: 100_000).utf8)
        let elapsed = clock.measure {
            assertFails(bytes: arrays, reason: "nesting deeper than 64", offset: 64)
            assertFails(bytes: objects, reason: "nesting deeper than 64", offset: 64 * 5)
        }
        XCTAssertLessThan(elapsed, .milliseconds(500))
    }

    // MARK: Entry points

    func testEntryPointsAgree() throws {
        let text = #"{"a":[1,"é",null]}"#
        let expected: JSONValue = .object(["a": [1, "é", nil]])
        XCTAssertEqual(try JSONParser.parse(text), expected)
        XCTAssertEqual(try JSONParser.parse(Array(text.utf8)), expected)
        let viaRaw = try Array(text.utf8).withUnsafeBytes { try JSONParser.parse($0) }
        XCTAssertEqual(viaRaw, expected)
        // A substring-backed String (non-zero offset into another buffer).
        let padded = "xx" + text
        XCTAssertEqual(try JSONParser.parse(String(padded.dropFirst(2))), expected)
    }

    func testRawBufferSliceIsBounded() throws {
        // Parsing a slice must not read past its end.
        let bytes = Array("[1]trailing".utf8)
        let value = try bytes.withUnsafeBytes { raw in
            try JSONParser.parse(UnsafeRawBufferPointer(rebasing: raw[0..<3]))
        }
        XCTAssertEqual(value, [1])
    }

    func testErrorDescription() {
        let error = JSONParseError(offset: 3, reason: "trailing characters")
        XCTAssertEqual(error.description, "trailing characters at byte 3")
    }
}
