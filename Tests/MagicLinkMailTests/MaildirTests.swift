import Foundation
import MagicLinkMail
import XCTest

final class MaildirTests: XCTestCase {
    private var root: String = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "maildir-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    private func listing(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    private func permissions(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try XCTUnwrap(attributes[.posixPermissions] as? NSNumber).intValue & 0o777
    }

    func testInitCreatesMaildirLayout() throws {
        let dir = root + "/mail"
        let maildir = try Maildir(path: dir)
        XCTAssertEqual(maildir.path, dir)
        for sub in ["", "/tmp", "/new", "/cur"] {
            var isDirectory: ObjCBool = false
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + sub, isDirectory: &isDirectory), sub)
            XCTAssertTrue(isDirectory.boolValue, sub)
            XCTAssertEqual(try permissions(dir + sub), 0o700, sub)
        }
        // Opening an existing Maildir again is fine (and a trailing slash is tolerated).
        XCTAssertEqual(try Maildir(path: dir + "/").path, dir)
    }

    func testDeliverLandsInNewWithContentsAndMode() throws {
        let dir = root + "/mail"
        let maildir = try Maildir(path: dir)
        let message = Array("From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody ☕\r\n".utf8)

        let path = try maildir.deliver(message)

        XCTAssertTrue(path.hasPrefix(dir + "/new/"), path)
        let name = String(path.dropFirst((dir + "/new/").count))
        XCTAssertEqual(try listing(dir + "/new"), [name])
        XCTAssertEqual(try listing(dir + "/tmp"), [], "tmp/ must be empty after delivery")
        XCTAssertEqual(try listing(dir + "/cur"), [])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(message))
        XCTAssertEqual(try permissions(path), 0o600)

        // <seconds>.M<micros>P<pid>Q<counter>R<hex>.<host>
        let pattern = #"^[0-9]+\.M[0-9]+P[0-9]+Q[0-9]+R[0-9a-f]+\.[^/:]+$"#
        XCTAssertNotNil(name.range(of: pattern, options: .regularExpression), name)
        XCTAssertTrue(name.contains("P\(ProcessInfo.processInfo.processIdentifier)Q"), name)
        let seconds = try XCTUnwrap(Int(name.prefix { $0 != "." }))
        XCTAssertLessThan(abs(seconds - Int(Date().timeIntervalSince1970)), 60)
    }

    func testTwoDeliveriesGetDistinctNames() throws {
        let maildir = try Maildir(path: root + "/mail")
        let first = try maildir.deliver(Array("one\r\n".utf8))
        let second = try maildir.deliver(Array("two\r\n".utf8))
        XCTAssertNotEqual(first, second)
        XCTAssertEqual(try listing(root + "/mail/new").count, 2)
        XCTAssertEqual(try String(contentsOfFile: first, encoding: .utf8), "one\r\n")
        XCTAssertEqual(try String(contentsOfFile: second, encoding: .utf8), "two\r\n")
    }

    func testConcurrentDeliveriesAreAllDistinct() async throws {
        let maildir = try Maildir(path: root + "/mail")
        let paths = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<50 {
                group.addTask { try maildir.deliver(Array("message \(i)\r\n".utf8)) }
            }
            var result: [String] = []
            for try await path in group { result.append(path) }
            return result
        }
        XCTAssertEqual(Set(paths).count, 50)
        XCTAssertEqual(try listing(root + "/mail/new").count, 50)
    }

    func testLargeAndEmptyMessages() throws {
        let maildir = try Maildir(path: root + "/mail")
        var large = [UInt8](repeating: 0, count: 3_000_000)
        for i in large.indices { large[i] = UInt8(truncatingIfNeeded: i &* 31) }
        let largePath = try maildir.deliver(large)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: largePath)), Data(large))
        let emptyPath = try maildir.deliver([])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: emptyPath)).count, 0)
    }

    func testRenderedMessageCanBeDelivered() throws {
        let message = MailMessage(
            from: Mailbox(displayName: "Login", address: "login@example.com"),
            to: Mailbox(address: "user@example.org"),
            subject: "Ihr Anmeldelink für Café ☕", textBody: "Link: https://example.com/l\n",
            htmlBody: "<a href=\"https://example.com/l\">Link</a>\n", messageID: "x1@example.com", date: 1_795_706_349)
        let bytes = message.render()
        let path = try Maildir(path: root + "/mail").deliver(bytes)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(bytes))
    }

    func testInitUnderRegularFileThrows() throws {
        let file = root + "/plain-file"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))

        XCTAssertThrowsError(try Maildir(path: file + "/mail")) { error in
            guard let e = error as? MaildirError else { return XCTFail("wrong error type \(error)") }
            XCTAssertEqual(e.path, file + "/mail")
            XCTAssertTrue(e.reason.contains("mkdir"), e.reason)
            XCTAssertTrue(e.reason.lowercased().contains("not a directory"), e.reason)
            XCTAssertTrue(e.description.contains(e.path))
        }
        // The path itself being a regular file is refused too.
        XCTAssertThrowsError(try Maildir(path: file)) { error in
            XCTAssertEqual((error as? MaildirError)?.path, file)
        }
        // A missing parent directory is reported, not silently created.
        XCTAssertThrowsError(try Maildir(path: root + "/missing/mail")) { error in
            XCTAssertEqual((error as? MaildirError)?.path, root + "/missing/mail")
        }
    }

    func testDeliverFailureLeavesNoTmpFile() throws {
        let dir = root + "/mail"
        let maildir = try Maildir(path: dir)
        // Replace new/ by a regular file: the rename must fail and the tmp file must be removed.
        try FileManager.default.removeItem(atPath: dir + "/new")
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/new", contents: nil))
        XCTAssertThrowsError(try maildir.deliver(Array("x\r\n".utf8))) { error in
            guard let e = error as? MaildirError else { return XCTFail("wrong error type \(error)") }
            XCTAssertTrue(e.path.hasPrefix(dir + "/new/"), e.path)
            XCTAssertTrue(e.reason.hasPrefix("rename"), e.reason)
        }
        XCTAssertEqual(try listing(dir + "/tmp"), [])

        // And with tmp/ gone, the open fails with the tmp path in the error.
        try FileManager.default.removeItem(atPath: dir + "/tmp")
        XCTAssertThrowsError(try maildir.deliver([])) { error in
            XCTAssertTrue((error as? MaildirError)?.path.hasPrefix(dir + "/tmp/") ?? false, "\(error)")
        }
    }
}
