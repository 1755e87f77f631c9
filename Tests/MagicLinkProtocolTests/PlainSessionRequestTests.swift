import Foundation
import XCTest
@testable import MagicLinkProtocol

/// `PlainSessionRequest.scan` may leave any line to the general decoder, but a line it takes
/// must decode there to the same request. The differential tests check that over about 25,000
/// lines: hand-written ones, every JSONTestSuite file, and single- and double-byte
/// mutations of plain session lines.
final class PlainSessionRequestTests: XCTestCase {
    private let session = "Ab3_-Ab3_-Ab3_-Ab3_-Ab3_-Ab3_-Ab3_-Ab3_-Ab3"

    private func scan(_ line: String) -> PlainSessionRequest? {
        Array(line.utf8).withUnsafeBytes { PlainSessionRequest.scan($0) }
    }

    private func text(_ line: String, _ range: Range<Int>?) -> String? {
        range.map { String(decoding: Array(line.utf8)[$0], as: UTF8.self) }
    }

    func testPlainLinesAreRead() throws {
        let line = #"{"id":1,"op":"session","params":{"session":"\#(session)","ip":"192.0.2.1"}}"#
        let request = try XCTUnwrap(scan(line))
        XCTAssertEqual(request.id, .integer(1))
        XCTAssertEqual(text(line, request.session), session)
        XCTAssertEqual(text(line, request.ip), "192.0.2.1")
        XCTAssertNil(request.app)

        let spaced = " { \"params\" :\t{ \"app\" : \"shop\" , \"ip\" : null , \"session\" : \"\(session)\" } , \"op\" : \"session\" , \"id\" : \"req-7\" } \r"
        let other = try XCTUnwrap(scan(spaced))
        XCTAssertEqual(other.id, .string("req-7"))
        XCTAssertEqual(text(spaced, other.app), "shop")
        XCTAssertNil(other.ip, "null is not given")
        XCTAssertEqual(text(spaced, other.session), session)

        XCTAssertEqual(scan(#"{"op":"session","params":{"session":"x"}}"#)?.id, .null)
        XCTAssertEqual(scan(#"{"id":null,"op":"session","params":{"session":"x"}}"#)?.id, .null)
        XCTAssertEqual(scan(#"{"id":-9007199254740991,"op":"session","params":{"session":"x"}}"#)?.id, .integer(-9_007_199_254_740_991))
        XCTAssertEqual(scan(#"{"id":0,"op":"session","params":{"session":""}}"#)?.id, .integer(0))
        let longID = String(repeating: "i", count: Envelope.maximumIDBytes)
        XCTAssertEqual(scan(#"{"id":"\#(longID)","op":"session","params":{"session":"x"}}"#)?.id, .string(longID))
    }

    /// Each of these is left to the general decoder: it refuses some and accepts others, but
    /// only it knows which (and says why).
    func testEverythingElseIsLeftToTheDecoder() {
        let lines = [
            "",
            "{}",
            #"{"op":"session"}"#,
            #"{"params":{"session":"x"}}"#,
            #"{"op":"session","params":{}}"#,
            #"{"op":"session","params":{"ip":"1.2.3.4"}}"#,
            #"{"op":"hello","params":{"session":"x"}}"#,
            #"{"op":"sessions","params":{"session":"x"}}"#,
            #"{"op":"session","params":{"session":null}}"#,
            #"{"op":"session","params":{"session":1}}"#,
            #"{"op":"session","params":{"session":"x","user":"y"}}"#,
            #"{"op":"session","params":{"session":"x"},"extra":1}"#,
            #"{"op":"session","params":{"session":"x","session":"y"}}"#,
            #"{"op":"session","op":"session","params":{"session":"x"}}"#,
            #"{"id":1,"id":2,"op":"session","params":{"session":"x"}}"#,
            #"{"op":"session","params":{"session":"x"},"params":{"session":"x"}}"#,
            #"{"op":"session","params":{"session":"x\u0041"}}"#,
            #"{"op":"session","params":{"session":"x\"y"}}"#,
            #"{"op":"se\u0073sion","params":{"session":"x"}}"#,
            #"{"o\u0070":"session","params":{"session":"x"}}"#,
            "{\"op\":\"session\",\"params\":{\"session\":\"é\"}}",
            "{\"op\":\"session\",\"params\":{\"session\":\"x\u{7F}\"}}",
            "{\"op\":\"session\",\"params\":{\"session\":\"x\ty\"}}",
            "{\"op\":\"session\",\r\"params\":{\"session\":\"x\"}}",
            "{\"op\":\"session\",\n\"params\":{\"session\":\"x\"}}",
            #"{"id":1.0,"op":"session","params":{"session":"x"}}"#,
            #"{"id":1e3,"op":"session","params":{"session":"x"}}"#,
            #"{"id":-0,"op":"session","params":{"session":"x"}}"#,
            #"{"id":01,"op":"session","params":{"session":"x"}}"#,
            #"{"id":-,"op":"session","params":{"session":"x"}}"#,
            #"{"id":9007199254740992,"op":"session","params":{"session":"x"}}"#,
            #"{"id":12345678901234567,"op":"session","params":{"session":"x"}}"#,
            #"{"id":true,"op":"session","params":{"session":"x"}}"#,
            #"{"id":nul,"op":"session","params":{"session":"x"}}"#,
            #"{"id":"\#(String(repeating: "i", count: Envelope.maximumIDBytes + 1))","op":"session","params":{"session":"x"}}"#,
            #"{"op":"session","params":{"session":"x"}} x"#,
            #"{"op":"session","params":{"session":"x"}}}"#,
            #"{"op":"session","params":{"session":"x"},}"#,
            #"{"op":"session","params":{"session":"x",}}"#,
            #"{"op":"session","params":{"session":"x"}"#,
            #"[{"op":"session","params":{"session":"x"}}]"#,
            #"{"op":"session","params":[{"session":"x"}]}"#,
            #"{"op":"session","params":{"session":"x","app":1}}"#,
            #"{"op":"session","params":{"session":"x","ip":["1.2.3.4"]}}"#,
            "{\"op\":\"session\",\"params\":{\"session\":\"x\"}}\r\r",
            "\u{FEFF}{\"op\":\"session\",\"params\":{\"session\":\"x\"}}",
            "{\"op\":\"session\",\"params\":{\"session\":\"x\u{0}\"}}",
        ]
        for line in lines {
            XCTAssertNil(scan(line), line)
        }
    }

    /// None of the suite's documents is a `session` request, so the scanner must take none of
    /// them (and read none out of bounds: they include truncated and malformed input of every kind).
    func testJSONTestSuiteFilesAreLeftToTheDecoder() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("../shared/conformance/JSONTestSuite/test_parsing").standardizedFileURL
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }
        XCTAssertGreaterThan(names.count, 300, "JSONTestSuite is part of every checkout's surroundings")
        for name in names {
            let bytes = try [UInt8](Data(contentsOf: directory.appendingPathComponent(name)))
            XCTAssertFalse(assertAgreement(bytes, name), "\(name) is not a session request")
        }
    }

    /// Mutations of plain lines: every byte deleted, doubled, or replaced by each byte that
    /// matters to JSON (and a few that do not), and pairs of such edits on a short line.
    func testMutationsAgreeWithTheDecoder() {
        let seeds = [
            #"{"id":17,"op":"session","params":{"session":"\#(session)","ip":"192.0.2.1","app":"shop"}}"#,
            #"{ "params" : { "session" : "s" , "ip" : null } , "op" : "session" , "id" : "a" }"#,
            #"{"id":-5,"op":"session","params":{"app":null,"session":"s"}}"#,
        ]
        let alphabet: [UInt8] = Array(#"{}[]:,"\ -+.eE019nultrfaidpos"#.utf8) + [0x00, 0x09, 0x0A, 0x0D, 0x1F, 0x7F, 0x80, 0xC3, 0xFF]
        var taken = 0
        var checked = 0
        func check(_ bytes: [UInt8]) {
            checked += 1
            if assertAgreement(bytes, String(decoding: bytes, as: UTF8.self)) { taken += 1 }
        }
        for seed in seeds {
            let line = Array(seed.utf8)
            check(line)
            for position in line.indices {
                var deleted = line
                deleted.remove(at: position)
                check(deleted)
                var doubled = line
                doubled.insert(line[position], at: position)
                check(doubled)
                for byte in alphabet {
                    var replaced = line
                    replaced[position] = byte
                    check(replaced)
                    var inserted = line
                    inserted.insert(byte, at: position)
                    check(inserted)
                }
            }
        }
        // Two edits at once on the short line.
        let short = Array(#"{"id":1,"op":"session","params":{"session":"s"}}"#.utf8)
        for first in short.indices {
            for second in short.indices where second > first {
                for (a, b) in [(UInt8(ascii: "\""), UInt8(ascii: "\"")), (UInt8(ascii: ","), UInt8(ascii: " ")), (UInt8(ascii: "}"), UInt8(ascii: "{")), (UInt8(ascii: "0"), UInt8(ascii: "-"))] {
                    var edited = short
                    edited[first] = a
                    edited[second] = b
                    check(edited)
                }
            }
        }
        XCTAssertGreaterThan(checked, 24_000)
        XCTAssertGreaterThan(taken, 100, "some mutations are still plain session lines")
        XCTAssertLessThan(taken, checked / 4, "most are not (those that are mostly changed a string's contents)")
    }

    /// When `scan` takes a line, `Envelope.decode` takes it too, as the same `session` request.
    /// Returns whether `scan` took it.
    @discardableResult
    private func assertAgreement(_ bytes: [UInt8], _ label: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        bytes.withUnsafeBytes { raw in
            guard let plain = PlainSessionRequest.scan(raw) else { return false }
            guard case .success(let request) = Envelope.decode(raw, knownOps: ["session", "hello"]) else {
                XCTFail("scan took a line the decoder refuses: \(label)", file: file, line: line)
                return true
            }
            func string(_ range: Range<Int>?) -> String? { range.map { String(decoding: raw[$0], as: UTF8.self) } }
            let params = Params(request.params)
            XCTAssertEqual(request.op, "session", label, file: file, line: line)
            XCTAssertEqual(request.id, plain.id, label, file: file, line: line)
            XCTAssertEqual(request.id.serialized(), plain.id.serialized(), label, file: file, line: line)
            XCTAssertEqual(try? params.requiredString("session"), string(plain.session), label, file: file, line: line)
            XCTAssertEqual(try? params.optionalString("app"), string(plain.app), label, file: file, line: line)
            XCTAssertEqual(try? params.optionalString("ip"), string(plain.ip), label, file: file, line: line)
            XCTAssertEqual(Set(request.params.members.map(\.key)).subtracting(["session", "app", "ip"]), [], label, file: file, line: line)
            return true
        }
    }
}
