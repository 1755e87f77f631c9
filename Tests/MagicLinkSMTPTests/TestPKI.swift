import Foundation
import NIOSSL

/// A throwaway CA and server certificates made with the openssl command line, once per test run.
final class TestPKI: Sendable {
    let directory: URL
    var caFile: String { directory.appendingPathComponent("ca.pem").path }

    static let shared: TestPKI = {
        do { return try TestPKI() } catch { fatalError("cannot create test certificates: \(error)") }
    }()

    private init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("smtp-test-pki-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try openssl(["req", "-x509"] + ec + [
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=magiclinkd test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        try issue(name: "server", commonName: "localhost", subjectAltName: "DNS:localhost,IP:127.0.0.1")
        try issue(name: "wrong", commonName: "wrong.example", subjectAltName: "DNS:wrong.example")
    }

    private func issue(name: String, commonName: String, subjectAltName: String) throws {
        try openssl(["req"] + ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"] + [
            "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(commonName)",
        ])
        let extensions = """
            subjectAltName=\(subjectAltName)
            basicConstraints=CA:FALSE
            keyUsage=critical,digitalSignature,keyEncipherment
            extendedKeyUsage=serverAuth

            """
        try extensions.write(to: directory.appendingPathComponent("\(name).ext"), atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
        ])
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "openssl", code: Int(process.terminationStatus), userInfo: [
                NSLocalizedDescriptionKey: "openssl \(arguments.joined(separator: " ")): " + String(decoding: output, as: UTF8.self),
            ])
        }
    }

    /// Server-side TLS with the certificate `name` ("server" for localhost/127.0.0.1, "wrong").
    func serverContext(_ name: String = "server") throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(directory.appendingPathComponent("\(name).pem").path)
        let key = try NIOSSLPrivateKey(file: directory.appendingPathComponent("\(name).key").path, format: .pem)
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        return try NIOSSLContext(configuration: configuration)
    }
}
