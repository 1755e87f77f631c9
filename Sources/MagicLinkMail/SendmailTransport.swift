import Foundation

/// Hands each message to a sendmail-compatible program (Postfix, exim, msmtp, nullmailer) as
/// `sendmail -t -i -f <from>`, for hosts that run a local MTA. The program's exit status decides:
/// 0 sent; "no such user" and data errors are permanent; everything else (EX_TEMPFAIL, and also
/// EX_NOHOST, which msmtp uses for a failed DNS lookup of its relay) is retried. A program that
/// outlives its time is terminated, then killed.
public struct SendmailTransport: MailTransport {
    public let path: String
    let executor: any BlockingExecutor
    /// Longest we wait for the program.
    let timeout: Double

    public init(path: String, executor: any BlockingExecutor, timeout: Double = 30) {
        self.path = path
        self.executor = executor
        self.timeout = timeout
    }

    /// sysexits.h codes that will not get better by trying again.
    static let permanentStatuses: Set<Int32> = [65 /* DATAERR */, 67 /* NOUSER */]

    public func deliver(_ delivery: Delivery) async throws(MailTransportError) -> String {
        // sendmail reads the message with local (LF) line ends.
        let lf = Self.crlfToLF(delivery.message.render())
        let sender = delivery.message.from.address
        let path = self.path
        let timeout = self.timeout
        do {
            return try await executor.execute { try Self.run(path: path, sender: sender, message: lf, timeout: timeout) }
        } catch let error as MailTransportError {
            throw error
        } catch {
            throw MailTransportError(permanent: false, reason: "sendmail: \(error)")
        }
    }

    static func run(path: String, sender: String, message: [UInt8], timeout: Double) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-t", "-i", "-f", sender]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            throw MailTransportError(permanent: false, reason: "cannot run \(path): \(error.localizedDescription)")
        }
        let collected = CollectedOutput()
        let reader = Thread { collected.set(output.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        // Written from its own thread: a child that stops reading must not block us past the deadline.
        let writer = Thread {
            try? input.fileHandleForWriting.write(contentsOf: Data(message))
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            let grace = Date().addingTimeInterval(2)
            while process.isRunning && Date() < grace { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw MailTransportError(permanent: false, reason: "\(path) did not finish within \(Int(timeout)) s and was stopped")
        }
        process.waitUntilExit()
        let text = collected.text(waitingUpTo: 1)
        let status = process.terminationStatus
        if process.terminationReason == .exit && status == 0 {
            return "\(path) accepted the message"
        }
        let why = process.terminationReason == .uncaughtSignal ? "was killed by signal \(status)" : "exited with status \(status)"
        throw MailTransportError(
            permanent: process.terminationReason == .exit && permanentStatuses.contains(status),
            reason: "\(path) \(why)" + (text.isEmpty ? "" : ": \(text)"))
    }

    static func crlfToLF(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == 13, index + 1 < bytes.count, bytes[index + 1] == 10 {
                index += 1
                continue
            }
            out.append(bytes[index])
            index += 1
        }
        return out
    }
}

/// What the child wrote, handed from the reader thread.
private final class CollectedOutput: @unchecked Sendable {
    private let lock = NSCondition()
    private var data: Data?

    func set(_ value: Data) {
        lock.lock()
        data = value
        lock.broadcast()
        lock.unlock()
    }

    /// The first 512 bytes, one line, control characters replaced.
    func text(waitingUpTo seconds: Double) -> String {
        lock.lock()
        defer { lock.unlock() }
        if data == nil { _ = lock.wait(until: Date().addingTimeInterval(seconds)) }
        let raw = String(decoding: (data ?? Data()).prefix(512), as: UTF8.self)
        return String(raw.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
            .trimmingCharacters(in: .whitespaces)
    }
}
