// Email address validation and canonicalization: Protocol/README.md section 6.1.
//
// Swift stdlib only (no Foundation). One known gap: IDNA (RFC 5891 / UTS #46) wants the domain
// NFC-normalized before it is punycoded, and the Swift standard library has no public
// normalization API (Foundation's `precomposedStringWithCanonicalMapping` is off limits here).
// So a domain typed in decomposed form ("e" + U+0301) encodes to a different, non-existent
// "xn--" label than the same domain typed precomposed ("é"), and the mail to it bounces. Input
// from browsers and keyboards is nearly always NFC already. The same holds for UTS #46's
// compatibility mappings (fullwidth letters and the like), which we refuse rather than map.

/// Why an email address was refused. `reason` is an English phrase for developers and logs; it
/// never repeats the address.
public struct EmailAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String

    public init(reason: String) {
        self.reason = reason
    }

    public var description: String { "invalid email address: \(reason)" }
}

/// One plain address, canonicalized: local part as typed, domain lower-cased and IDNA (punycode) encoded.
///
/// Equality and hashing compare `localPart` and `domain` as they are, so case matters in the local
/// part; to match users and rate limits, compare `matchKey` instead.
public struct EmailAddress: Sendable, Hashable, CustomStringConvertible {
    /// The local part exactly as typed (case included; may hold non-ASCII letters, RFC 6531).
    public let localPart: String
    /// The domain, lower-cased and punycoded: ASCII only.
    public let domain: String

    /// The canonical address: `localPart + "@" + domain`. This is what mail is sent to.
    public var address: String { localPart + "@" + domain }

    /// The lower-cased address, for matching users and rate limits case-insensitively.
    ///
    /// Only ASCII A–Z fold. Full Unicode case mapping would let a different mailbox share an
    /// account: U+212A KELVIN SIGN lower-cases to an ASCII "k", so "\u{212A}im@x" would sign in as
    /// "kim@x". Non-ASCII local parts therefore match exactly as typed.
    public var matchKey: String { Self.asciiLowercased(localPart) + "@" + domain }

    static func asciiLowercased(_ text: String) -> String {
        String(decoding: text.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// For logs: the first character of the local part, "***@", and the domain, e.g. "a***@example.com".
    public var masked: String {
        // localPart is never empty (init refuses that), but stay total anyway.
        let first = localPart.first.map { String($0) } ?? ""
        return first + "***@" + domain
    }

    /// The masked form, so that an address never lands in a log in full by accident.
    public var description: String { masked }

    // Limits of section 6.1 (and RFC 5321 / RFC 1035).
    static let maxLocalPartBytes = 64
    static let maxAddressBytes = 254
    static let maxDomainBytes = 253
    static let maxLabelBytes = 63
    /// Longer inputs are refused before any real work; well above anything that could still fit in
    /// 254 bytes once encoded (a Unicode domain can be longer in UTF-8 than in punycode).
    static let maxInputBytes = 4096

    /// Parses one plain address (see Protocol/README.md section 6.1) and canonicalizes it.
    public init(parsing input: String) throws(EmailAddressError) {
        if input.isEmpty { throw EmailAddressError(reason: "the address is empty") }
        if input.utf8.count > Self.maxInputBytes {
            throw EmailAddressError(reason: "the address is longer than 254 bytes")
        }

        // 1. Characters that are wrong anywhere. Control characters first (header injection, NUL),
        //    then the RFC 5322 syntax we do not accept, then whitespace and invisible characters.
        for scalar in input.unicodeScalars where Self.isControl(scalar) {
            throw EmailAddressError(reason: "the address contains a control character")
        }
        for scalar in input.unicodeScalars {
            switch scalar {
            case "<", ">":
                throw EmailAddressError(
                    reason: "display names and angle brackets are not allowed, only a plain address")
            case "(", ")":
                throw EmailAddressError(reason: "comments are not allowed")
            case "\"":
                throw EmailAddressError(reason: "quoted local parts are not allowed")
            case ",", ";":
                throw EmailAddressError(reason: "lists of addresses are not allowed, only one address")
            case ":":
                throw EmailAddressError(reason: "a colon is not allowed (no groups, no URI schemes)")
            case "[", "]":
                throw EmailAddressError(reason: "IP address literals are not allowed as the domain")
            case "\\":
                throw EmailAddressError(reason: "a backslash is not allowed")
            default:
                break
            }
        }
        for scalar in input.unicodeScalars where Self.isWhitespace(scalar) {
            throw EmailAddressError(reason: "the address contains whitespace")
        }
        for scalar in input.unicodeScalars where Self.isInvisibleOrUnassigned(scalar) {
            throw EmailAddressError(
                reason: "the address contains a format, private-use or unassigned character")
        }

        // 2. Exactly one "@".
        //    Split on scalars, not Characters: "@" followed by a combining mark is one Character.
        let parts = input.unicodeScalars.split(separator: "@", omittingEmptySubsequences: false)
        if parts.count < 2 { throw EmailAddressError(reason: "the address has no @") }
        if parts.count > 2 { throw EmailAddressError(reason: "the address has more than one @") }
        let local = String(String.UnicodeScalarView(parts[0]))
        let rawDomain = String(String.UnicodeScalarView(parts[1]))

        // 3. Local part, kept as typed.
        try Self.validateLocalPart(local)

        // 4. Domain, lower-cased and punycoded.
        let domain = try Self.canonicalDomain(rawDomain)

        // 5. The whole address, after encoding.
        if local.utf8.count + 1 + domain.utf8.count > Self.maxAddressBytes {
            throw EmailAddressError(reason: "the address is longer than 254 bytes")
        }

        self.localPart = local
        self.domain = domain
    }

    // MARK: - Local part

    static func validateLocalPart(_ local: String) throws(EmailAddressError) {
        if local.isEmpty { throw EmailAddressError(reason: "the local part (before @) is empty") }
        if local.utf8.count > maxLocalPartBytes {
            throw EmailAddressError(reason: "the local part is longer than 64 bytes")
        }
        // On scalars, not Characters: "." followed by a combining mark is one Character.
        let scalars = Array(local.unicodeScalars)
        if scalars.first == "." || scalars.last == "." {
            throw EmailAddressError(reason: "the local part starts or ends with a dot")
        }
        for i in scalars.indices.dropFirst() where scalars[i] == "." && scalars[i - 1] == "." {
            throw EmailAddressError(reason: "the local part has two dots in a row")
        }
        for scalar in local.unicodeScalars {
            let ok = scalar.isASCII ? (isAtext(scalar) || scalar == ".") : isLetterMarkOrNumber(scalar)
            if !ok {
                throw EmailAddressError(reason: "the local part contains a character that is not allowed")
            }
        }
    }

    /// RFC 5322 atext: ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "/" /
    /// "=" / "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~".
    static func isAtext(_ s: Unicode.Scalar) -> Bool {
        switch s {
        case "a"..."z", "A"..."Z", "0"..."9": return true
        case "!", "#", "$", "%", "&", "'", "*", "+", "-", "/", "=", "?", "^", "_", "`", "{", "|", "}", "~":
            return true
        default: return false
        }
    }

    // MARK: - Domain

    /// Full stop and the three other dots IDNA (UTS #46) treats as label separators:
    /// U+3002 ideographic full stop, U+FF0E fullwidth full stop, U+FF61 halfwidth ideographic full stop.
    static func isDot(_ s: Unicode.Scalar) -> Bool {
        s == "." || s == "\u{3002}" || s == "\u{FF0E}" || s == "\u{FF61}"
    }

    /// Lower-cases the domain, splits it into labels and punycodes the non-ASCII ones.
    /// No NFC normalization: see the note at the top of this file.
    static func canonicalDomain(_ raw: String) throws(EmailAddressError) -> String {
        if raw.isEmpty { throw EmailAddressError(reason: "the domain (after @) is empty") }
        // A non-ASCII character that lower-cases into ASCII (U+212A KELVIN SIGN → "k") is a
        // compatibility form: refused, never mapped onto someone else's domain.
        for scalar in raw.unicodeScalars where !scalar.isASCII {
            if scalar.properties.lowercaseMapping.unicodeScalars.contains(where: \.isASCII) {
                throw EmailAddressError(reason: "the domain holds a compatibility character that looks like an ASCII letter")
            }
        }
        let lowered = raw.lowercased()

        var labels: [[Unicode.Scalar]] = [[]]
        for scalar in lowered.unicodeScalars {
            if isDot(scalar) {
                labels.append([])
            } else {
                labels[labels.count - 1].append(scalar)
            }
        }
        if labels.contains(where: \.isEmpty) {
            throw EmailAddressError(
                reason: "the domain has an empty label (a leading, trailing or doubled dot)")
        }
        if labels.count < 2 {
            throw EmailAddressError(reason: "the domain needs at least two labels")
        }

        var encoded: [String] = []
        encoded.reserveCapacity(labels.count)
        for label in labels {
            encoded.append(try asciiLabel(label))
        }

        if let tld = encoded.last, tld.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            throw EmailAddressError(reason: "the top-level label is all digits")
        }
        let domain = encoded.joined(separator: ".")
        if domain.utf8.count > maxDomainBytes {
            throw EmailAddressError(reason: "the domain is longer than 253 bytes")
        }
        return domain
    }

    /// One lower-cased label → its ASCII form: LDH labels as they are (an "xn--" one must be valid
    /// punycode of a valid Unicode label), others punycoded with the "xn--" prefix.
    static func asciiLabel(_ label: [Unicode.Scalar]) throws(EmailAddressError) -> String {
        if label.allSatisfy(\.isASCII) {
            var text = String.UnicodeScalarView()
            text.append(contentsOf: label)
            let ascii = String(text)
            try validateLDH(ascii)
            if ascii.hasPrefix("xn--") {
                // An A-label: it must decode, to something non-ASCII, that is itself a valid
                // label, and that encodes back to exactly this (so each domain has one spelling).
                let body = String(ascii.dropFirst(4))
                guard let decoded = Punycode.decode(body),
                      decoded.unicodeScalars.contains(where: { !$0.isASCII }),
                      decoded.lowercased() == decoded,
                      (try? validateULabel(Array(decoded.unicodeScalars))) != nil,
                      Punycode.encode(decoded) == body
                else {
                    throw EmailAddressError(reason: "a domain label starting with xn-- is not valid punycode")
                }
            }
            return ascii
        }

        // Each scalar costs at least one output byte, so longer labels cannot fit in 63 bytes;
        // refusing them here also keeps the (quadratic) encoder's work small.
        if label.count > maxLabelBytes - 4 {
            throw EmailAddressError(reason: "a domain label is longer than 63 bytes")
        }
        try validateULabel(label)
        var text = String.UnicodeScalarView()
        text.append(contentsOf: label)
        guard let puny = Punycode.encode(String(text)) else {
            throw EmailAddressError(reason: "a domain label cannot be punycoded")
        }
        let ascii = "xn--" + puny
        if ascii.utf8.count > maxLabelBytes {
            throw EmailAddressError(reason: "a domain label is longer than 63 bytes")
        }
        return ascii
    }

    /// Letters, digits and hyphens, 1–63 bytes, no hyphen first or last (RFC 1035 / RFC 5890 LDH).
    /// Called on lower-cased labels, so only a–z.
    static func validateLDH(_ label: String) throws(EmailAddressError) {
        if label.isEmpty || label.utf8.count > maxLabelBytes {
            throw EmailAddressError(reason: "a domain label is longer than 63 bytes")
        }
        for byte in label.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                continue
            default:
                throw EmailAddressError(
                    reason: "a domain label contains a character other than letters, digits and hyphens")
            }
        }
        if label.hasPrefix("-") || label.hasSuffix("-") {
            throw EmailAddressError(reason: "a domain label starts or ends with a hyphen")
        }
    }

    /// A (lower-cased) Unicode label, approximating IDNA2008 (RFC 5891 section 4.2) without its
    /// tables: ASCII part LDH, non-ASCII characters letters, combining marks or decimal digits,
    /// not starting with a combining mark, no hyphen first or last or in positions 3 and 4.
    static func validateULabel(_ label: [Unicode.Scalar]) throws(EmailAddressError) {
        for scalar in label {
            if scalar.isASCII {
                switch scalar {
                case "a"..."z", "0"..."9", "-": continue
                default:
                    throw EmailAddressError(
                        reason: "a domain label contains a character other than letters, digits and hyphens")
                }
            }
            // Halfwidth and fullwidth forms are compatibility variants that IDNA maps or
            // disallows ("ｅｘａｍｐｌｅ"); refuse them rather than create a lookalike domain.
            let isWidthVariant = (0xFF00...0xFFEF).contains(scalar.value)
            let ok: Bool
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .nonspacingMark, .spacingMark, .decimalNumber:
                ok = !isWidthVariant
            default:
                ok = false
            }
            if !ok {
                throw EmailAddressError(
                    reason: "a domain label contains a character other than letters, digits and hyphens")
            }
        }
        if let first = label.first, isMark(first) {
            throw EmailAddressError(reason: "a domain label starts with a combining mark")
        }
        if label.first == "-" || label.last == "-" {
            throw EmailAddressError(reason: "a domain label starts or ends with a hyphen")
        }
        if label.count >= 4, label[2] == "-", label[3] == "-" {
            throw EmailAddressError(reason: "a domain label has hyphens in positions 3 and 4")
        }
    }

    // MARK: - Character classes

    /// C0 (including NUL, CR, LF, TAB), DEL and C1 (U+0080–U+009F, including NEL).
    static func isControl(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (0x7F...0x9F).contains(s.value)
    }

    /// Spaces of every kind and line/paragraph separators (U+2028, U+2029).
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        // ASCII first: nearly every address is ASCII, and Unicode property lookups are slow.
        if s.isASCII { return s == " " || (0x09...0x0D).contains(s.value) }
        return isWhitespaceByProperties(s)
    }

    static func isWhitespaceByProperties(_ s: Unicode.Scalar) -> Bool {
        if s.properties.isWhitespace { return true }
        switch s.properties.generalCategory {
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    /// Format characters (bidi overrides like U+202E, zero-width joiners, soft hyphen, BOM),
    /// private use, surrogates and unassigned code points.
    static func isInvisibleOrUnassigned(_ s: Unicode.Scalar) -> Bool {
        // No ASCII code point is a format, private-use, surrogate or unassigned one.
        !s.isASCII && isInvisibleOrUnassignedByProperties(s)
    }

    static func isInvisibleOrUnassignedByProperties(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .format, .privateUse, .surrogate, .unassigned: return true
        default: return false
        }
    }

    /// Non-ASCII characters allowed in a local part (RFC 6531): letters, marks and numbers.
    static func isLetterMarkOrNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
             .nonspacingMark, .spacingMark, .enclosingMark,
             .decimalNumber, .letterNumber, .otherNumber:
            return true
        default:
            return false
        }
    }

    static func isMark(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
}
