import Foundation
import XCTest
@testable import MagicLinkProtocol

/// Runs nst/JSONTestSuite's test_parsing files: y_ must parse, n_ must fail, i_ must not crash.
final class JSONTestSuiteTests: XCTestCase {
    /// Valid JSON that the protocol refuses on purpose (duplicate member names).
    private static let expectedRefusals: Set<String> = [
        "y_object_duplicated_key.json",
        "y_object_duplicated_key_and_value.json",
    ]

    /// `JSONTESTSUITE_DIR` if set, else `<package root>/../shared/conformance/JSONTestSuite/test_parsing`.
    private static func suiteDirectory() -> URL {
        if let override = ProcessInfo.processInfo.environment["JSONTESTSUITE_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override, isDirectory: true)
        }
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Tests/MagicLinkProtocolTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
        return packageRoot
            .appendingPathComponent("../shared/conformance/JSONTestSuite/test_parsing", isDirectory: true)
            .standardizedFileURL
    }

    func testJSONTestSuite() throws {
        let directory = Self.suiteDirectory()
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
                .filter { $0.hasSuffix(".json") }
                .sorted()
        } catch {
            // CI always has the suite; a missing directory is a broken checkout, not a skip.
            XCTFail("JSONTestSuite not found at \(directory.path) (set JSONTESTSUITE_DIR to override): \(error)")
            return
        }

        var accepted = 0, refused = 0, refusedAsExpected = 0, indeterminateAccepted = 0, indeterminateRefused = 0
        var seenExpectedRefusals: Set<String> = []
        for name in names {
            let bytes = [UInt8](try Data(contentsOf: directory.appendingPathComponent(name)))
            let result: Result<JSONValue, JSONParseError>
            do {
                result = .success(try JSONParser.parse(bytes))
            } catch {
                result = .failure(error)
            }

            if Self.expectedRefusals.contains(name) {
                seenExpectedRefusals.insert(name)
                switch result {
                case .success(let value):
                    XCTFail("\(name) should be refused for its duplicate key, parsed as \(value)")
                case .failure(let error):
                    XCTAssertTrue(error.reason.hasPrefix("duplicate key"), "\(name): \(error)")
                    refusedAsExpected += 1
                }
            } else if name.hasPrefix("y_") {
                switch result {
                case .success: accepted += 1
                case .failure(let error): XCTFail("\(name) should parse: \(error)")
                }
            } else if name.hasPrefix("n_") {
                switch result {
                case .success(let value): XCTFail("\(name) should be refused, parsed as \(value)")
                case .failure: refused += 1
                }
            } else if name.hasPrefix("i_") {
                switch result {
                case .success: indeterminateAccepted += 1
                case .failure: indeterminateRefused += 1
                }
            }
        }

        print("JSONTestSuite: \(accepted) y_ parsed, \(refusedAsExpected) y_ refused as expected (duplicate keys), "
            + "\(refused) n_ refused, i_ \(indeterminateAccepted) accepted / \(indeterminateRefused) refused, "
            + "\(names.count) files in \(directory.path)")

        XCTAssertEqual(seenExpectedRefusals, Self.expectedRefusals, "expected-refusal files missing from the suite")
        // Guard against an empty or truncated directory passing vacuously.
        XCTAssertGreaterThanOrEqual(accepted, 90)
        XCTAssertGreaterThanOrEqual(refused, 180)
    }
}
