import XCTest
@testable import MagicLinkProtocol

final class JSONWriterTests: XCTestCase {
    /// A result serialized ahead gives the very line the tree would.
    func testPreSerializedResultMakesTheSameLine() {
        let result: JSONObject = ["server": "magiclinkd", "ops": .array(["hello", "session"]), "n": 3]
        let serialized = JSONValue.object(result).serialized()
        for id: JSONValue in [.null, .integer(7), .integer(-9_007_199_254_740_991), .string("a\"b\\c\u{1}é")] {
            XCTAssertEqual(Envelope.success(id: id, serializedResult: serialized), Envelope.success(id: id, result: result))
        }
    }

    /// `session`'s reply written straight to bytes is the line its JSON object would make,
    /// whatever the address holds (quotes, controls, non-ASCII) and whatever the numbers.
    func testSessionResultWritesTheLineItsObjectWould() {
        let results = [
            SessionResult(userID: "0b8a7c1e-1d2f-4a3b-9c4d-5e6f7a8b9c0d", email: "alice@example.com", expiresAt: 1_800_000_000, idleExpiresAt: 1_799_000_000),
            SessionResult(userID: "", email: "\"q\\\u{0}\u{1f}\u{7f}@bücher.example", expiresAt: 0, idleExpiresAt: -1),
            SessionResult(userID: "u", email: "ä@例え.jp", expiresAt: Int64.max, idleExpiresAt: Int64.min),
        ]
        for result in results {
            var direct: [UInt8] = []
            result.serialize(into: &direct)
            XCTAssertEqual(direct, JSONValue.object(result.object).serialized())
            for id: JSONValue in [.null, .integer(42), .string("x\ny")] {
                XCTAssertEqual(Envelope.success(id: id, sessionResult: result), Envelope.success(id: id, result: result.object))
            }
        }
    }

    /// The reply the cached `session` writes into a buffer sized by `sessionSuccessCapacity` is
    /// the same line, and fits, even when every byte of the strings needs the longest escape.
    func testSessionSuccessWrittenIntoABufferIsTheSameLineAndFits() {
        let worstStrings = [String(repeating: "\u{1}", count: 254), String(repeating: "\u{2028}", count: 80),
                            String(repeating: "\"\\", count: 100), ""]
        let strings = worstStrings + ["0b8a7c1e-1d2f-4a3b-9c4d-5e6f7a8b9c0d", "ä@例え.jp", "a\u{7f}\u{2029}b\t@x"]
        let ids: [JSONValue] = [.null, .integer(0), .integer(Int64.min), .integer(Int64.max), .string(""),
                                .string(String(repeating: "\u{0}", count: 64)), .string("req-1")]
        var fullest = 0.0
        for userID in strings {
            for email in strings {
                for id in ids {
                    for (expiresAt, idleExpiresAt) in [(Int64.min, Int64.max), (1_800_000_000, -1)] {
                        var (userIDText, emailText) = (userID, email)
                        let expected = userIDText.withUTF8 { u in
                            emailText.withUTF8 { e in
                                Envelope.success(id: id, sessionUserID: UnsafeRawBufferPointer(u), email: UnsafeRawBufferPointer(e),
                                                 expiresAt: expiresAt, idleExpiresAt: idleExpiresAt)
                            }
                        }
                        XCTAssertEqual(expected, Envelope.success(id: id, sessionResult: SessionResult(
                            userID: userID, email: email, expiresAt: expiresAt, idleExpiresAt: idleExpiresAt)))
                        let capacity = Envelope.sessionSuccessCapacity(id: id, userIDCount: userID.utf8.count, emailCount: email.utf8.count)
                        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 1)
                        defer { buffer.deallocate() }
                        let written = userIDText.withUTF8 { u in
                            emailText.withUTF8 { e in
                                Envelope.writeSessionSuccess(id: id, sessionUserID: UnsafeRawBufferPointer(u), email: UnsafeRawBufferPointer(e),
                                                             expiresAt: expiresAt, idleExpiresAt: idleExpiresAt, into: buffer)
                            }
                        }
                        XCTAssertEqual(Array(buffer[..<written]), expected)
                        fullest = max(fullest, Double(written) / Double(capacity))
                    }
                }
            }
        }
        // The bound is tight enough to mean something: the worst case comes close to it.
        XCTAssertGreaterThan(fullest, 0.9)
    }

    /// The bound on a value's serialized length holds, and is exact for the short scalars.
    func testSerializedCountBoundHolds() {
        let values: [JSONValue] = [.null, .bool(true), .bool(false), .integer(Int64.min), .integer(7), .double(1e-300),
                                   .string("\u{0}\u{2028}é\""), .array([.null, .string("x")]), .object(["k": .integer(1)])]
        for value in values {
            XCTAssertGreaterThanOrEqual(value.serializedCountBound, value.serialized().count, value.jsonString)
        }
        XCTAssertEqual(JSONValue.null.serializedCountBound, 4)
        XCTAssertEqual(JSONValue.integer(Int64.min).serializedCountBound, JSONValue.integer(Int64.min).serialized().count)
        XCTAssertEqual(JSONValue.string(String(repeating: "\u{1}", count: 9)).serializedCountBound,
                       JSONValue.string(String(repeating: "\u{1}", count: 9)).serialized().count)
    }

    private func assertWrites(_ value: JSONValue, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(value.jsonString, expected, file: file, line: line)
        XCTAssertEqual(value.serialized(), Array(expected.utf8), file: file, line: line)
    }

    private func assertRoundTrips(_ value: JSONValue, file: StaticString = #filePath, line: UInt = #line) {
        do {
            let parsed = try JSONParser.parse(value.serialized())
            XCTAssertEqual(parsed, value, "via \(value.jsonString)", file: file, line: line)
            // Writing again gives the same bytes.
            XCTAssertEqual(parsed.serialized(), value.serialized(), file: file, line: line)
        } catch {
            XCTFail("\(value.jsonString) did not parse back: \(error)", file: file, line: line)
        }
    }

    // MARK: Output format

    func testScalars() {
        assertWrites(.null, "null")
        assertWrites(true, "true")
        assertWrites(false, "false")
        assertWrites(0, "0")
        assertWrites(-7, "-7")
        assertWrites(.integer(.max), "9223372036854775807")
        assertWrites(.integer(.min), "-9223372036854775808")
        assertWrites("", #""""#)
        assertWrites("abc", #""abc""#)
    }

    func testCompactAndOrdered() {
        var object = JSONObject()
        object["z"] = 1
        object["a"] = [true, nil, "x"]
        object["m"] = .object(["k": .object([:])])
        assertWrites(.object(object), #"{"z":1,"a":[true,null,"x"],"m":{"k":{}}}"#)
        assertWrites([], "[]")
        assertWrites([[], [[]]], "[[],[[]]]")
        assertWrites(.object([:]), "{}")
    }

    func testStringEscapes() {
        assertWrites("\"", #""\"""#)
        assertWrites("\\", #""\\""#)
        assertWrites("a/b", #""a/b""#)
        assertWrites("\n\r\t\u{8}\u{C}", #""\n\r\t\b\f""#)
        assertWrites("\u{0}\u{1}\u{1F}", #""\u0000\u0001\u001f""#)
        assertWrites("\u{B}\u{1B}", #""\u000b\u001b""#)
        assertWrites("\u{7F}", "\"\u{7F}\"")
        assertWrites("\u{2028}x\u{2029}", #""\u2028x\u2029""#)
        assertWrites("say \"hi\"\n", #""say \"hi\"\n""#)
    }

    func testUnicodeIsWrittenRaw() {
        let text = "é € 😀 \u{10FFFF} \u{2027} \u{202A} \u{E000} \u{FFFF}"
        XCTAssertEqual(JSONValue.string(text).serialized(), [0x22] + Array(text.utf8) + [0x22])
    }

    func testKeysAreEscaped() {
        assertWrites(.object(JSONObject([("a\"b\n", 1)])), #"{"a\"b\n":1}"#)
    }

    func testDoubles() {
        assertWrites(.double(0.1), "0.1")
        assertWrites(.double(5), "5.0")
        assertWrites(.double(-0.0), "-0.0")
        assertWrites(.double(1e-5), "1e-05")
        assertWrites(.double(1e20), "1e+20")
        assertWrites(.double(-2.5), "-2.5")
        assertWrites(.double(.greatestFiniteMagnitude), "1.7976931348623157e+308")
        assertWrites(.double(.leastNonzeroMagnitude), "5e-324")
        assertWrites(.double(9223372036854775808.0), "9.223372036854776e+18")
    }

    func testNonFiniteDoublesBecomeNull() {
        assertWrites(.double(.nan), "null")
        assertWrites(.double(.signalingNaN), "null")
        assertWrites(.double(.infinity), "null")
        assertWrites(.double(-.infinity), "null")
        assertWrites([.double(.nan), .double(1)], "[null,1.0]")
    }

    func testSerializeIntoAppends() {
        var bytes = Array("prefix ".utf8)
        JSONValue.object(["a": 1]).serialize(into: &bytes)
        bytes.append(0x0A)
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "prefix {\"a\":1}\n")
    }

    // MARK: Round trips

    func testRoundTrips() {
        let values: [JSONValue] = [
            .null, true, false,
            0, 1, -1, .integer(.max), .integer(.min), .integer(.max - 1), .integer(.min + 1),
            .double(0.5), .double(-0.0), .double(1e-7), .double(123456.789), .double(1e300),
            .double(9223372036854775808.0), .double(-9223372036854775809.0), .double(3.0),
            .double(.greatestFiniteMagnitude), .double(.leastNonzeroMagnitude), .double(.leastNormalMagnitude),
            "", "plain", "quote \" backslash \\ slash /", "\n\r\t\u{8}\u{C}\u{0}\u{1F}\u{7F}",
            "é€😀𝄞\u{10FFFF}", "\u{2028}\u{2029}", "e\u{301}", "👨‍👩‍👧‍👦", "\u{FEFF}bom",
            [], [[[]]], [1, "two", .double(3.5), nil, [false]],
            .object([:]),
            .object(["id": 7, "op": "hello", "params": .object([:])]),
            .object(JSONObject([("", 1), ("\u{0}", 2), ("😀", .object(["nested": [.object(["a": nil])]])), ("\u{2028}", "x")])),
        ]
        for value in values {
            assertRoundTrips(value)
        }
    }

    func testParsedEscapesRoundTrip() throws {
        let text = #"["\ud83d\ude00","\u00e9","\/","\u2028","\u0007",{"\ud834\udd1e":"\"\\"}]"#
        let value = try JSONParser.parse(text)
        XCTAssertEqual(value, ["😀", "é", "/", "\u{2028}", "\u{7}", .object(["𝄞": "\"\\"])])
        XCTAssertEqual(value.jsonString, #"["😀","é","/","\u2028","\u0007",{"𝄞":"\"\\"}]"#)
        assertRoundTrips(value)
    }

    func testInt64BoundariesAndBeyond() throws {
        XCTAssertEqual(try JSONParser.parse(JSONValue.integer(.max).serialized()), .integer(.max))
        XCTAssertEqual(try JSONParser.parse(JSONValue.integer(.min).serialized()), .integer(.min))
        // 2^63 does not fit Int64: it becomes a double, and stays one.
        let twoTo63 = try JSONParser.parse("9223372036854775808")
        XCTAssertEqual(twoTo63, .double(9223372036854775808.0))
        XCTAssertNil(twoTo63.int64Value)
        assertRoundTrips(twoTo63)
    }

    func testManyDoublesRoundTripExactly() throws {
        // Deterministic pseudo-random bit patterns over the whole finite range.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        var checked = 0
        for _ in 0..<20000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let double = Double(bitPattern: state ^ (state >> 29))
            guard double.isFinite else { continue }
            let parsed = try JSONParser.parse(JSONValue.double(double).serialized())
            guard case .double(let back) = parsed else {
                XCTFail("\(double) came back as \(parsed)")
                continue
            }
            XCTAssertEqual(back.bitPattern, double.bitPattern, "\(double)")
            checked += 1
        }
        XCTAssertGreaterThan(checked, 19000)
    }

    // MARK: JSONObject and JSONValue API

    func testObjectSubscript() {
        var object: JSONObject = ["a": 1, "b": 2]
        XCTAssertEqual(object["a"], 1)
        XCTAssertNil(object["c"])
        object["a"] = "replaced"
        object["c"] = .null
        XCTAssertEqual(object.members.map { $0.key }, ["a", "b", "c"])
        XCTAssertEqual(object["a"], "replaced")
        XCTAssertEqual(object["c"], .null)
        object["b"] = nil
        XCTAssertEqual(object.members.map { $0.key }, ["a", "c"])
        XCTAssertEqual(object.count, 2)
        XCTAssertFalse(object.isEmpty)
        XCTAssertTrue(JSONObject().isEmpty)
        // Lookup is by code points, like the parser's duplicate check.
        object["\u{E9}"] = 1
        XCTAssertNil(object["e\u{301}"])
    }

    func testObjectInitKeepsLastValueForRepeatedKey() {
        let object = JSONObject([("a", 1), ("b", 2), ("a", 3)])
        XCTAssertEqual(object.members.map { $0.key }, ["a", "b"])
        XCTAssertEqual(object["a"], 3)
    }

    func testObjectEqualityIgnoresOrder() {
        let ab = JSONObject([("a", 1), ("b", 2)])
        let ba = JSONObject([("b", 2), ("a", 1)])
        XCTAssertEqual(ab, ba)
        XCTAssertNotEqual(JSONValue.object(ab).serialized(), JSONValue.object(ba).serialized())
        XCTAssertNotEqual(ab, JSONObject([("a", 1), ("b", 3)]))
        XCTAssertNotEqual(ab, JSONObject([("a", 1)]))
        XCTAssertNotEqual(ab, JSONObject([("a", 1), ("c", 2)]))
    }

    func testValueEquality() {
        XCTAssertNotEqual(JSONValue.integer(1), .double(1))
        XCTAssertNotEqual(JSONValue.null, false)
        XCTAssertNotEqual(JSONValue.string("1"), 1)
        XCTAssertEqual(JSONValue.double(0), .double(-0.0))
        XCTAssertNotEqual([1, 2] as JSONValue, [2, 1])
    }

    func testLiteralsAndAccessors() {
        let value: JSONValue = ["s", 1, true, nil, ["x"]]
        XCTAssertEqual(value, .array([.string("s"), .integer(1), .bool(true), .null, .array([.string("x")])]))
        guard let array = value.arrayValue else { return XCTFail("not an array") }
        XCTAssertEqual(array[0].stringValue, "s")
        XCTAssertEqual(array[1].int64Value, 1)
        XCTAssertEqual(array[2].boolValue, true)
        XCTAssertNil(array[3].stringValue)
        XCTAssertNil(array[0].int64Value)
        XCTAssertNil(array[1].boolValue)
        XCTAssertNil(JSONValue.double(1).int64Value)
        XCTAssertNil(value.objectValue)
        let object: JSONValue = .object(["k": "v"])
        XCTAssertEqual(object.objectValue?["k"]?.stringValue, "v")
        XCTAssertNil(object.arrayValue)
    }
}
