// Redirect validation: Protocol/README.md section 6.2. Swift stdlib only; URLs are parsed by hand.
//
// A redirect is either a local path ("/account?tab=2") or an absolute http(s) URL whose origin is
// one of the configured ones. The parser is deliberately narrower than a browser's (WHATWG URL):
// whatever a browser might read differently from us (backslashes, tabs and newlines it strips,
// percent-encoded or non-ASCII hosts, "@" user info, empty ports) is refused, not interpreted.

/// Why a redirect or an allowed origin was refused. `reason` is an English phrase for developers
/// and logs.
public struct RedirectPolicyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "redirect not allowed: \(reason)" }
}

/// Where a user may be sent after login: a local path, or a URL on one of the configured origins.
public struct RedirectPolicy: Sendable {
    /// At most this many bytes (UTF-8), as in the `start` operation.
    public static let maxRedirectBytes = 2048

    /// Normalized origins, in configuration order, without duplicates.
    public let allowedOrigins: [String]
    private let originSet: Set<String>

    /// Origins like "https://app.example.com" or "http://localhost:8080"; throws naming the bad entry when one is not a bare origin (scheme http/https, host, optional port, no path other than an empty one or "/", no query, fragment or userinfo).
    ///
    /// Hosts must be ASCII (write internationalized ones in their "xn--" form); a bracketed IPv6
    /// literal is accepted but compared as written (lower-cased), so write it the way redirects will.
    public init(allowedOrigins: [String]) throws(RedirectPolicyError) {
        var normalized: [String] = []
        var seen: Set<String> = []
        for entry in allowedOrigins {
            let url: ParsedURL
            do throws(RedirectPolicyError) {
                url = try ParsedURL(entry, subject: "it")
            } catch {
                throw RedirectPolicyError(
                    reason: "allowed origin \"\(Self.printable(entry))\" is not a bare origin: \(error.reason)")
            }
            if !(url.rest.isEmpty || url.rest == "/") {
                throw RedirectPolicyError(
                    reason: "allowed origin \"\(Self.printable(entry))\" is not a bare origin: "
                        + "it has a path, query or fragment")
            }
            if seen.insert(url.origin).inserted {
                normalized.append(url.origin)
            }
        }
        self.allowedOrigins = normalized
        self.originSet = seen
    }

    /// Returns the redirect unchanged when allowed; throws when not.
    public func check(_ redirect: String) throws(RedirectPolicyError) -> String {
        if redirect.isEmpty {
            throw RedirectPolicyError(reason: "the redirect is empty")
        }
        if redirect.utf8.count > Self.maxRedirectBytes {
            throw RedirectPolicyError(reason: "the redirect is longer than 2048 bytes")
        }
        try Self.checkCharacters(redirect)

        if redirect.utf8.first == UInt8(ascii: "/") {
            // A path on our own host. "//host" and "/\host" are network-path references in
            // browsers; the backslash is already refused above, anywhere in the string.
            if redirect.utf8.dropFirst().first == UInt8(ascii: "/") {
                throw RedirectPolicyError(reason: "the redirect starts with // (another host)")
            }
            return redirect
        }

        let url = try ParsedURL(redirect)
        if !originSet.contains(url.origin) {
            throw RedirectPolicyError(reason: "the redirect's origin is not an allowed origin")
        }
        return redirect
    }

    /// No backslash, whitespace, control, format (bidi overrides, zero-width) or line/paragraph
    /// separator characters anywhere. Other non-ASCII is allowed in paths, queries and fragments.
    static func checkCharacters(_ s: String, subject: String = "the redirect") throws(RedirectPolicyError) {
        for scalar in s.unicodeScalars {
            if scalar == "\\" {
                throw RedirectPolicyError(reason: "\(subject) contains a backslash")
            }
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                throw RedirectPolicyError(reason: "\(subject) contains a control character")
            }
            if scalar.properties.isWhitespace {
                throw RedirectPolicyError(reason: "\(subject) contains whitespace")
            }
            switch scalar.properties.generalCategory {
            case .spaceSeparator, .lineSeparator, .paragraphSeparator:
                throw RedirectPolicyError(reason: "\(subject) contains whitespace")
            case .control, .format, .privateUse, .surrogate, .unassigned:
                throw RedirectPolicyError(
                    reason: "\(subject) contains a control, format, private-use or unassigned character")
            default:
                continue
            }
        }
    }

    /// For error messages about configuration: the entry with anything unprintable escaped.
    static func printable(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars.prefix(200) {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar == "\"" || scalar == "\\" {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension RedirectPolicy {
    /// An absolute http(s) URL split as scheme "://" authority rest, where rest is "" or starts with
    /// "/", "?" or "#". Only what origin matching needs; refuses rather than guesses. Works on Unicode
    /// scalars, not Characters, so a combining mark cannot glue itself to a delimiter.
    struct ParsedURL {
        /// Lower-cased: "http" or "https".
        let scheme: String
        /// Lower-cased ASCII host name, or a bracketed IPv6 literal as written (lower-cased).
        let host: String
        /// nil when absent or equal to the scheme's default port.
        let port: Int?
        /// Path, query and fragment, as written: "" or starting with "/", "?" or "#".
        let rest: String

        /// scheme://host[:port], the form `allowedOrigins` holds.
        var origin: String {
            if let port { return "\(scheme)://\(host):\(port)" }
            return "\(scheme)://\(host)"
        }

        init(_ text: String, subject: String = "the redirect") throws(RedirectPolicyError) {
            try RedirectPolicy.checkCharacters(text, subject: subject)
            let chars = Array(text.unicodeScalars)

            // scheme: up to the first ":", which must be followed by "//".
            guard let colon = chars.firstIndex(of: ":"),
                  chars.count >= colon + 3, chars[colon + 1] == "/", chars[colon + 2] == "/"
            else {
                throw RedirectPolicyError(reason: "not a path starting with / nor an absolute http(s) URL")
            }
            let scheme = Self.string(chars[..<colon]).lowercased()
            guard scheme == "http" || scheme == "https" else {
                throw RedirectPolicyError(reason: "the URL scheme is not http or https")
            }

            // The authority runs to the first "/", "?" or "#" (so "#@host" or "?@host" cannot move it).
            let authorityStart = colon + 3
            let authorityEnd = chars[authorityStart...].firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" })
                ?? chars.endIndex
            let authority = chars[authorityStart..<authorityEnd]

            if authority.contains("@") {
                throw RedirectPolicyError(reason: "the URL has user info (@)")
            }
            if authority.isEmpty {
                throw RedirectPolicyError(reason: "the URL has no host")
            }

            let hostPart: ArraySlice<Unicode.Scalar>
            var portPart: ArraySlice<Unicode.Scalar>?
            if authority.first == "[" {
                // [IPv6 literal] with an optional :port after the bracket.
                guard let close = authority.firstIndex(of: "]") else {
                    throw RedirectPolicyError(reason: "the URL host has an unclosed [")
                }
                hostPart = authority[...close]
                let afterHost = authority[(close + 1)...]
                if let first = afterHost.first {
                    guard first == ":" else {
                        throw RedirectPolicyError(reason: "the URL has characters after the ] of its host")
                    }
                    portPart = afterHost.dropFirst()
                }
                let inner = hostPart.dropFirst().dropLast()
                let ipv6Chars = inner.allSatisfy { s in
                    switch s {
                    case "0"..."9", "a"..."f", "A"..."F", ":", ".": return true
                    default: return false
                    }
                }
                if inner.isEmpty || !ipv6Chars || !inner.contains(":") {
                    throw RedirectPolicyError(reason: "the URL host is not a valid IPv6 literal")
                }
            } else {
                if let colon = authority.firstIndex(of: ":") {
                    hostPart = authority[..<colon]
                    portPart = authority[(colon + 1)...]
                } else {
                    hostPart = authority
                }
                if hostPart.isEmpty {
                    throw RedirectPolicyError(reason: "the URL has no host")
                }
                // ASCII letters, digits, hyphens and dots only: no percent-encoding, no non-ASCII
                // lookalikes (write IDN hosts as xn--), nothing a browser would rewrite.
                for s in hostPart {
                    switch s {
                    case "a"..."z", "A"..."Z", "0"..."9", "-", ".": continue
                    default:
                        throw RedirectPolicyError(
                            reason: "the URL host has characters other than ASCII letters, digits, - and .")
                    }
                }
            }

            var port: Int?
            if let portPart {
                let digits = portPart.allSatisfy { $0 >= "0" && $0 <= "9" }
                guard !portPart.isEmpty, portPart.count <= 5, digits,
                      let value = Int(Self.string(portPart)), (1...65535).contains(value)
                else {
                    throw RedirectPolicyError(reason: "the URL port is not a number from 1 to 65535")
                }
                let defaultPort = scheme == "https" ? 443 : 80
                port = value == defaultPort ? nil : value
            }

            self.scheme = scheme
            self.host = Self.string(hostPart).lowercased()
            self.port = port
            self.rest = Self.string(chars[authorityEnd...])
        }

        private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars)
            return String(view)
        }
    }
}
