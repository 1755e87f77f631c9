import NIOCore

/// Submits mail over one pooled SMTP session at a time.
///
/// Sends are serialized: one at a time, in arrival order. The session is kept after a send, reset with RSET before the
/// next one, and replaced when the server closed it, it idled out, or it misbehaved. A reused
/// session that turns out to be dead before the transaction starts is replaced once,
/// transparently; a failure after MAIL has been sent is never retried here, so a message is
/// never submitted twice by this client.
public actor SMTPClient {
    private let configuration: SMTPConfiguration
    private let group: any EventLoopGroup
    private var session: SMTPSession?
    private var lastUsed: ContinuousClock.Instant?
    private var tlsParameters: SMTPTLSParameters?
    /// FIFO turn-taking: an actor alone would let sends interleave at every `await`.
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(configuration: SMTPConfiguration, eventLoopGroup: any EventLoopGroup) {
        self.configuration = configuration
        self.group = eventLoopGroup
    }

    deinit {
        session?.connection.close()
    }

    /// Sends one message. `message` is the complete RFC 5322 message with CRLF line ends (not
    /// dot-stuffed: this does it). `from`/`to` are envelope addresses (exactly one recipient).
    /// Returns the server's final reply to the end of DATA (e.g. "250 2.0.0 Ok: queued as ABC").
    public func send(from: String, to: String, message: [UInt8]) async throws(SMTPError) -> String {
        try SMTPTransaction.validate(from: from, to: to)
        let transaction = SMTPTransaction(from: from, to: to, message: message)
        await acquireTurn()
        defer { releaseTurn() }

        while true {
            let (session, reused) = try await readySession()
            if reused, !(await reset(session)) {
                // The pooled connection died while idle (EOF, 421, no answer): a fresh one,
                // once. The fresh one is not "reused", so this cannot loop.
                drop(session)
                continue
            }
            do throws(SMTPError) {
                let reply = try await transaction.run(on: session, configuration: configuration)
                keep(session)
                return reply.summary
            } catch {
                await recover(session, after: error)
                throw error
            }
        }
    }

    /// Closes the pooled connection with QUIT. Idempotent; a later `send` connects again.
    public func shutdown() async {
        await acquireTurn()
        defer { releaseTurn() }
        if let session {
            self.session = nil
            await session.connection.quit(timeout: min(configuration.replyTimeout, .seconds(5)))
        }
    }

    // MARK: Pool

    private func readySession() async throws(SMTPError) -> (SMTPSession, reused: Bool) {
        if let session {
            let idledOut = lastUsed.map { ContinuousClock.now - $0 >= configuration.idleTimeout } ?? true
            if !idledOut, await session.connection.takeForUse() {
                return (session, true)
            }
            self.session = nil
            if idledOut {
                await session.connection.quit(timeout: min(configuration.replyTimeout, .seconds(5)))
            } else {
                session.connection.close()
            }
        }
        let tls = try tlsParametersIfNeeded()
        let fresh = try await SMTPSession.open(configuration: configuration, tls: tls, group: group)
        session = fresh
        return (fresh, false)
    }

    /// RSET, and whether the server answered 250.
    private func reset(_ session: SMTPSession) async -> Bool {
        let reply = try? await session.connection.command("RSET", timeout: configuration.replyTimeout)
        return reply?.code == 250
    }

    private func keep(_ session: SMTPSession) {
        lastUsed = .now
        session.connection.armIdleTimer(configuration.idleTimeout)
    }

    private func drop(_ session: SMTPSession) {
        if self.session?.connection === session.connection { self.session = nil }
        session.connection.close()
    }

    /// After a failed transaction: keep the session if the failure was the server's answer
    /// and RSET brings it back to a clean state; otherwise close it.
    private func recover(_ session: SMTPSession, after error: SMTPError) async {
        if error.kind == .smtputf8NotOffered {
            keep(session)  // nothing was sent
            return
        }
        if let code = error.replyCode, code != 421, await reset(session) {
            keep(session)
            return
        }
        drop(session)
    }

    private func acquireTurn() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func releaseTurn() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()  // the turn passes directly; `busy` stays true
        }
    }

    private func tlsParametersIfNeeded() throws(SMTPError) -> SMTPTLSParameters? {
        guard configuration.security != .none else { return nil }
        if let tlsParameters { return tlsParameters }
        // Built on first use and kept; a CA file that fails to load is tried again next time.
        let made = try SMTPTLSParameters.make(for: configuration)
        tlsParameters = made
        return made
    }
}
