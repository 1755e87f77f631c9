import NIOCore
import NIOSSL

/// What the reply handler needs to start TLS on its own, on the event loop, at the exact
/// moment the 220 to STARTTLS has been read (see `SMTPReplyHandler`).
struct SMTPTLSParameters: Sendable {
    var context: NIOSSLContext
    /// nil when `host` is an IP address: SNI must not carry one, and NIOSSL then checks the
    /// certificate against the peer's IP address instead.
    var serverHostname: String?

    func makeHandler() throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
    }

    /// Chain and host name verified, system roots or the configured CA file.
    static func make(for configuration: SMTPConfiguration) throws(SMTPError) -> SMTPTLSParameters {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        tls.minimumTLSVersion = .tlsv12
        tls.shutdownTimeout = .seconds(2)
        if let caFile = configuration.caFile {
            tls.trustRoots = .file(caFile)
        } else {
            tls.trustRoots = .default
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw SMTPError(.tls, "cannot set up TLS (CA file \(configuration.caFile ?? "system default")): \(error)")
        }
        let isIPAddress = (try? SocketAddress(ipAddress: configuration.host, port: 0)) != nil
        return SMTPTLSParameters(context: context, serverHostname: isIPAddress ? nil : configuration.host)
    }
}
