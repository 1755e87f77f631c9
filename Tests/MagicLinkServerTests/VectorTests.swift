import Foundation
import Logging
import MagicLinkCore
import MagicLinkProtocol
@testable import MagicLinkServer
@testable import MagicLinkStore
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
        let admin = AdminOps(store: store, apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, adminUIDs: [], adminGIDs: [],
                             startedAt: SystemTime().now(), rateWindow: 3_600, mailWakeup: MailWakeup(), time: SystemTime(),
                             logger: Logger(label: "test"))
        let dispatcher = Dispatcher(apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, maxLineBytes: 65_536,
                                    logger: Logger(label: "test"), mailWakeup: MailWakeup(), admin: admin)
        // The vectors are written for a root peer (admin ops allowed).
        let rootPeer = PeerCredentials(pid: 1, uid: 0, gid: 0)

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
                var replyBytes = await dispatcher.reply(to: ByteBuffer(bytes: line), peer: rootPeer)
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

    /// A cached `session` is answered with a buffer written in place (change 23): its bytes are
    /// the line `Envelope.success` makes, for the widest ids the plain-line scanner takes and
    /// for user data that needs every kind of escape.
    func testACachedSessionIsAnsweredWithTheSameLineWrittenInPlace() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-cached-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("v.sqlite").path)
        let policy = AuthPolicy(callbackURL: "https://app.example.com/auth/callback",
                                redirects: try RedirectPolicy(allowedOrigins: ["https://app.example.com"]))
        let authenticator = Authenticator(policy: policy, store: store, sealer: TokenSealer(keyBytes: SystemRandom().bytes(32))!)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let dispatcher = Dispatcher(apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, maxLineBytes: 65_536,
                                    logger: Logger(label: "test"), mailWakeup: MailWakeup())
        let cache = try XCTUnwrap(store.sessionCache)
        let now = SystemTime().now()
        let emails = ["a@example.com", String(repeating: "\u{1}", count: 200), String(repeating: "\u{2028}", count: 90),
                      String(repeating: "\"\\", count: 120), ""]
        for (index, email) in emails.enumerated() {
            // A user per email: the cache holds a user's email as its first fill had it.
            let userID = String(repeating: "\u{0}", count: 35) + "\(index)"
            let text = String(repeating: "A", count: 42) + String(Array("BCDEF")[index])
            cache.fill(Secret.hash(of: text), CachedSession(userID: userID, email: email, appID: "default", expiresAt: now + 1_000,
                                                            idleExpiresAt: now + 999, touchedAt: now), generation: cache.fillGeneration())
            for id in ["-9007199254740991", "9007199254740991", "\"" + String(repeating: "z", count: 64) + "\"", "null"] {
                let line = ByteBuffer(string: "{\"id\":\(id),\"op\":\"session\",\"params\":{\"session\":\"\(text)\"}}")
                let hitsBefore = store.sessionCacheStatistics.hits
                guard case .answered(let buffer) = dispatcher.prepare(line) else {
                    XCTFail("email \(index) id \(id): not answered at once")
                    continue
                }
                XCTAssertEqual(store.sessionCacheStatistics.hits, hitsBefore + 1, "answered from the cache")
                let expected = Envelope.success(id: try JSONParser.parse(Array(id.utf8)), sessionResult: SessionResult(
                    userID: userID, email: email, expiresAt: now + 1_000, idleExpiresAt: now + 999))
                XCTAssertEqual(buffer.readerIndex, 0)
                XCTAssertEqual(Array(buffer.readableBytesView), expected, "email \(index) id \(id)")
            }
        }
        try await pool.shutdownGracefully()
    }

    func testAdminOpsRefuseOtherPeers() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("magiclinkd-admin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteStore(path: directory.appendingPathComponent("a.sqlite").path)
        let authenticator = Authenticator(policy: AuthPolicy(callbackURL: "https://app.example.com/cb", redirects: try RedirectPolicy(allowedOrigins: [])),
                                          store: store, sealer: TokenSealer(keyBytes: SystemRandom().bytes(32))!)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let admin = AdminOps(store: store, apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, adminUIDs: [1000], adminGIDs: [2000],
                             startedAt: 0, rateWindow: 3_600, mailWakeup: MailWakeup(), time: SystemTime(), logger: Logger(label: "test"))
        let dispatcher = Dispatcher(apps: AppDirectory([(id: "default", authenticator: authenticator)]), blockingPool: pool, maxLineBytes: 65_536,
                                    logger: Logger(label: "test"), mailWakeup: MailWakeup(), admin: admin)
        let line = ByteBuffer(string: #"{"id":1,"op":"admin_status"}"#)
        func code(_ peer: PeerCredentials) async throws -> JSONValue? {
            var bytes = await dispatcher.reply(to: line, peer: peer)
            bytes.removeLast()
            return try JSONParser.parse(bytes).objectValue?["error"]?.objectValue?["code"]
        }
        let stranger = try await code(PeerCredentials(pid: 9, uid: 33, gid: 33))
        let unknown = try await code(.unknown)
        let root = try await code(PeerCredentials(pid: 9, uid: 0, gid: 0))
        let adminUID = try await code(PeerCredentials(pid: 9, uid: 1000, gid: 5))
        let adminGID = try await code(PeerCredentials(pid: 9, uid: 7, gid: 2000))
        XCTAssertEqual(stranger, "permission_denied")
        XCTAssertEqual(unknown, "permission_denied")
        XCTAssertNil(root, "root may")
        XCTAssertNil(adminUID, "a configured admin uid may")
        XCTAssertNil(adminGID, "a configured admin gid may")
        // App ops stay open to every peer.
        var hello = await dispatcher.reply(to: ByteBuffer(string: #"{"op":"hello"}"#), peer: PeerCredentials(pid: 9, uid: 33, gid: 33))
        hello.removeLast()
        XCTAssertEqual(try JSONParser.parse(hello).objectValue?["ok"], true)
        try await pool.shutdownGracefully()
    }
}
