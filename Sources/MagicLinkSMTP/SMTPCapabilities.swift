/// What the server announced in its EHLO reply. Keywords are matched case-insensitively
/// (RFC 5321 §2.4); after STARTTLS the set is replaced, never merged, since anything said
/// before TLS may have come from an attacker.
struct SMTPCapabilities: Sendable, Equatable {
    var startTLS = false
    var pipelining = false
    var smtpUTF8 = false
    var eightBitMIME = false
    /// Upper-cased SASL mechanism names from `AUTH` (and the old `AUTH=` form).
    var authMechanisms: Set<String> = []
    /// The SIZE limit when one was given (0 means "no fixed limit").
    var size: Int?

    init() {}

    /// Reads an EHLO reply: the first line is the server's greeting, each further line is
    /// one keyword with optional space-separated parameters.
    init(ehloReply: SMTPReply) {
        for line in ehloReply.lines.dropFirst() {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = words.first else { continue }
            var keyword = first.uppercased()
            var parameters = words.dropFirst().map { $0.uppercased() }
            if keyword.hasPrefix("AUTH=") {
                parameters.insert(String(keyword.dropFirst(5)), at: 0)
                keyword = "AUTH"
            }
            switch keyword {
            case "STARTTLS": startTLS = true
            case "PIPELINING": pipelining = true
            case "SMTPUTF8": smtpUTF8 = true
            case "8BITMIME": eightBitMIME = true
            case "AUTH": authMechanisms.formUnion(parameters.filter { !$0.isEmpty })
            case "SIZE": size = parameters.first.flatMap { Int($0) } ?? 0
            default: break
            }
        }
    }
}
