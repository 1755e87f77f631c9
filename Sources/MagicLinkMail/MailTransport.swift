/// A message on its way out, with the link and code it carries (only the `log` transport prints them).
public struct Delivery: Sendable {
    public var message: MailMessage
    public var link: String?
    public var code: String?
    public init(message: MailMessage, link: String?, code: String? = nil) {
        self.message = message
        self.link = link
        self.code = code
    }
}

/// Why a delivery failed, and whether trying again could help.
public struct MailTransportError: Error, Sendable, CustomStringConvertible {
    public var permanent: Bool
    public var reason: String
    public init(permanent: Bool, reason: String) {
        self.permanent = permanent
        self.reason = reason
    }
    public var description: String { reason }
}

/// Hands a message to its next hop.
public protocol MailTransport: Sendable {
    /// Returns a short note on where the message went (a file, the server's reply), for the log.
    func deliver(_ delivery: Delivery) async throws(MailTransportError) -> String
    /// Releases connections; called once at shutdown.
    func shutdown() async
}

extension MailTransport {
    public func shutdown() async {}
}

/// Runs blocking work (file writes, child processes) off the event loops and off Swift's
/// cooperative threads. The server passes its thread pool.
public protocol BlockingExecutor: Sendable {
    func execute<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T
}

/// Development transport: each message becomes a file in a Maildir (`mutt -f DIR` reads it).
public struct OutboxTransport: MailTransport {
    public let maildir: Maildir
    let executor: any BlockingExecutor

    public init(directory: String, executor: any BlockingExecutor) throws(MaildirError) {
        maildir = try Maildir(path: directory)
        self.executor = executor
    }

    public func deliver(_ delivery: Delivery) async throws(MailTransportError) -> String {
        let maildir = self.maildir
        let bytes = delivery.message.render()
        do {
            return try await executor.execute { try maildir.deliver(bytes) }
        } catch let error as MaildirError {
            throw MailTransportError(permanent: false, reason: error.description)
        } catch {
            throw MailTransportError(permanent: false, reason: "\(error)")
        }
    }
}

/// Development transport, chosen explicitly: prints the link to stderr instead of mailing it.
public struct LogTransport: MailTransport {
    public init() {}

    public func deliver(_ delivery: Delivery) async throws(MailTransportError) -> String {
        var stream = StandardError()
        if let link = delivery.link {
            print("magiclinkd: [log transport] sign-in link for \(delivery.message.to.address): \(link)", to: &stream)
        }
        if let code = delivery.code {
            print("magiclinkd: [log transport] sign-in code for \(delivery.message.to.address): \(code)", to: &stream)
        }
        return "stderr"
    }
}

/// `print(..., to:)` target for stderr without Foundation.
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var bytes = Array(string.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                systemWrite(2, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written <= 0 { return }
            offset += written
        }
    }
}
