import Foundation
import Logging
import MagicLinkCore
import MagicLinkProtocol
@testable import MagicLinkServer
import MagicLinkStore
import NIOCore
import NIOPosix
import XCTest

/// Runs every case of Protocol/vectors/*.json through the real dispatcher and a real SQLite
/// store, configured as Protocol/vectors/README.md says. (The integration suite runs the same
/// vectors against the built binary over its socket.)
final class VectorTests: XCTestCase {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func testAllProtocolVectors() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-vectors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        let store = try SQLiteStore(path: directory.appendingPathComponent("v.sqlite").path)
        let policy = AuthPolicy(callbackURL: "https://app.example.com/auth/callback",
                                redirects: try RedirectPolicy(allowedOrigins: ["https://app.example.com"]))
        let authenticator = Authenticator(policy: policy, store: store,
                                          sealer: TokenSealer(keyBytes: SystemRandom().bytes(32))!)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let dispatcher = Dispatcher(authenticator: authenticator, blockingPool: pool, maxLineBytes: 65_536,
                                    logger: Logger(label: "test"), mailWakeup: MailWakeup())

        let vectorDirectory = Self.repositoryRoot.appendingPathComponent("Protocol/vectors")
        let files = try FileManager.default.contentsOfDirectory(atPath: vectorDirectory.path).filter { $0.hasSuffix(".json") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 7, "vector files missing in \(vectorDirectory.path)")
        var count = 0
        for file in files {
            let data = try Data(contentsOf: vectorDirectory.appendingPathComponent(file))
            let root = try JSONParser.parse(Array(data))
            for testCase in root.objectValue?["cases"]?.arrayValue ?? [] {
                guard let object = testCase.objectValue, let name = object["name"]?.stringValue,
                      let expect = object["expect"]?.objectValue else {
                    XCTFail("\(file): malformed case \(testCase)")
                    continue
                }
                let line: [UInt8]
                if let text = object["request"]?.stringValue {
                    line = Array(text.utf8)
                } else if let encoded = object["request_base64"]?.stringValue, let decoded = Data(base64Encoded: encoded) {
                    line = Array(decoded)
                } else {
                    XCTFail("\(name): no request")
                    continue
                }
                var replyBytes = await dispatcher.reply(to: ByteBuffer(bytes: line))
                XCTAssertEqual(replyBytes.last, UInt8(ascii: "\n"), name)
                replyBytes.removeLast()
                let reply = try JSONParser.parse(replyBytes).objectValue ?? [:]
                check(reply, against: expect, name: "\(file):\(name)")
                count += 1
            }
        }
        XCTAssertGreaterThan(count, 200)
        try await pool.shutdownGracefully()
    }

    func check(_ reply: JSONObject, against expect: JSONObject, name: String, file: StaticString = #filePath, line: UInt = #line) {
        if let ok = expect["ok"] { XCTAssertEqual(reply["ok"], ok, "\(name): ok; reply \(reply)") }
        if let id = expect["id"] { XCTAssertEqual(reply["id"], id, "\(name): id; reply \(reply)") }
        let error = reply["error"]?.objectValue
        if let code = expect["error_code"] { XCTAssertEqual(error?["code"], code, "\(name): code; reply \(reply)") }
        if let retryable = expect["retryable"] { XCTAssertEqual(error?["retryable"], retryable, "\(name): retryable") }
        if let details = expect["details"]?.objectValue {
            XCTAssertTrue(isSubset(.object(details), of: error?["details"]), "\(name): details; reply \(reply)")
        }
        let result = reply["result"]
        if let expected = expect["result"] {
            XCTAssertTrue(isSubset(expected, of: result), "\(name): result; reply \(reply)")
        }
        for key in expect["result_keys"]?.arrayValue ?? [] {
            XCTAssertNotNil(result?.objectValue?[key.stringValue ?? ""], "\(name): result lacks \(key); reply \(reply)")
        }
    }

    func isSubset(_ expected: JSONValue, of actual: JSONValue?) -> Bool {
        guard let actual else { return false }
        if case .object(let want) = expected {
            guard case .object(let have) = actual else { return false }
            return want.members.allSatisfy { isSubset($0.value, of: have[$0.key]) }
        }
        return expected == actual
    }
}
