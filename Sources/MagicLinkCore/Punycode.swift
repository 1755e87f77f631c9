// Punycode (RFC 3492): the Bootstring encoding IDNA uses for non-ASCII domain labels.
//
// This is the bare algorithm of RFC 3492 section 6, with the overflow checks of section 6.4; it
// knows nothing about the "xn--" prefix or about which characters a domain label may hold (see
// EmailAddress.swift for that). Swift stdlib only, no Foundation.

/// Punycode encoder and decoder (RFC 3492).
public enum Punycode {
    // Bootstring parameters for Punycode (RFC 3492 section 5).
    private static let base: UInt32 = 36
    private static let tMin: UInt32 = 1
    private static let tMax: UInt32 = 26
    private static let skew: UInt32 = 38
    private static let damp: UInt32 = 700
    private static let initialBias: UInt32 = 72
    private static let initialN: UInt32 = 0x80
    private static let delimiter: UInt8 = 0x2D  // "-"

    /// Encodes `s` (any Unicode string) as Punycode, without the "xn--" prefix.
    ///
    /// Basic (ASCII) code points are copied as they are, followed by "-" when there was at least
    /// one, then the deltas for the others; e.g. "bücher" → "bcher-kva", "abc" → "abc-".
    /// Returns nil only when the input is too long for the arithmetic to fit in 32 bits.
    public static func encode(_ s: String) -> String? {
        let input = s.unicodeScalars.map(\.value)
        var output: [UInt8] = []
        output.reserveCapacity(input.count + 8)

        for c in input where c < 0x80 {
            output.append(UInt8(c))
        }
        let b = UInt32(output.count)
        var h = b
        if b > 0 { output.append(delimiter) }

        guard let total = UInt32(exactly: input.count) else { return nil }
        var n = initialN
        var delta: UInt32 = 0
        var bias = initialBias

        while h < total {
            // The smallest code point >= n in the input (there is one, since h < total).
            var m = UInt32.max
            for c in input where c >= n && c < m { m = c }

            // delta += (m - n) * (h + 1), failing on overflow.
            guard let hPlus1 = checkedAdd(h, 1),
                  let step = checkedMul(m - n, hPlus1),
                  let d = checkedAdd(delta, step)
            else { return nil }
            delta = d
            n = m

            for c in input {
                if c < n {
                    guard let d = checkedAdd(delta, 1) else { return nil }
                    delta = d
                }
                if c == n {
                    // Emit delta as a generalized variable-length integer.
                    var q = delta
                    var k = base
                    while true {
                        let t = threshold(k, bias)
                        if q < t { break }
                        output.append(digit(t + (q - t) % (base - t)))
                        q = (q - t) / (base - t)
                        k += base
                    }
                    output.append(digit(q))
                    bias = adapt(delta, numPoints: h + 1, firstTime: h == b)
                    delta = 0
                    h += 1
                }
            }
            guard let d = checkedAdd(delta, 1), let nn = checkedAdd(n, 1) else { return nil }
            delta = d
            n = nn
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes Punycode `s` (without the "xn--" prefix) back to Unicode.
    ///
    /// Returns nil when `s` is not valid Punycode: a non-ASCII character, a character that is not
    /// a digit in the last section, a truncated integer, arithmetic overflow, a decoded basic
    /// code point, or a decoded value that is not a Unicode scalar (surrogate or > U+10FFFF).
    /// Digits are case-insensitive; basic code points are copied with their case.
    public static func decode(_ s: String) -> String? {
        let input = Array(s.utf8)
        // Anything non-ASCII is invalid (in UTF-8, every byte of a non-ASCII scalar is >= 0x80).
        if input.contains(where: { $0 >= 0x80 }) { return nil }

        var output: [UInt32] = []
        // Basic code points: everything before the last delimiter, if there is one.
        var position = 0
        if let last = input.lastIndex(of: delimiter) {
            for byte in input[..<last] { output.append(UInt32(byte)) }
            // RFC 3492 section 6.2: consume the delimiter only if some code points came before it;
            // a leading delimiter is then read as a digit (and is invalid as one).
            if last > 0 { position = last + 1 }
        }

        var n = initialN
        var i: UInt32 = 0
        var bias = initialBias

        while position < input.count {
            let oldI = i
            var w: UInt32 = 1
            var k = base
            while true {
                guard position < input.count else { return nil }
                guard let digit = digitValue(input[position]) else { return nil }
                position += 1
                guard let product = checkedMul(digit, w), let sum = checkedAdd(i, product) else {
                    return nil
                }
                i = sum
                let t = threshold(k, bias)
                if digit < t { break }
                guard let nextW = checkedMul(w, base - t) else { return nil }
                w = nextW
                guard let nextK = checkedAdd(k, base) else { return nil }
                k = nextK
            }
            guard let count = UInt32(exactly: output.count), let countPlus1 = checkedAdd(count, 1)
            else { return nil }
            bias = adapt(i - oldI, numPoints: countPlus1, firstTime: oldI == 0)
            guard let newN = checkedAdd(n, i / countPlus1) else { return nil }
            n = newN
            i %= countPlus1
            // A decoded basic code point means the encoder would have copied it instead.
            if n < 0x80 { return nil }
            // Not a Unicode scalar (surrogate, or beyond U+10FFFF).
            guard Unicode.Scalar(n) != nil else { return nil }
            output.insert(n, at: Int(i))
            i += 1
        }

        var result = String.UnicodeScalarView()
        for value in output {
            guard let scalar = Unicode.Scalar(value) else { return nil }
            result.append(scalar)
        }
        return String(result)
    }

    // MARK: - Helpers (RFC 3492 sections 5 and 6.1)

    private static func threshold(_ k: UInt32, _ bias: UInt32) -> UInt32 {
        if k <= bias { return tMin }
        if k >= bias + tMax { return tMax }
        return k - bias
    }

    private static func adapt(_ delta: UInt32, numPoints: UInt32, firstTime: Bool) -> UInt32 {
        var delta = firstTime ? delta / damp : delta / 2
        delta += delta / numPoints
        var k: UInt32 = 0
        while delta > ((base - tMin) * tMax) / 2 {
            delta /= base - tMin
            k += base
        }
        return k + (base - tMin + 1) * delta / (delta + skew)
    }

    /// The basic code point for digit value d (0–35): "a"–"z" for 0–25, "0"–"9" for 26–35.
    private static func digit(_ d: UInt32) -> UInt8 {
        d < 26 ? UInt8(0x61 + d) : UInt8(0x30 + d - 26)
    }

    /// The digit value of a basic code point, case-insensitively; nil when it is not a digit.
    private static func digitValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: return UInt32(c - 0x30) + 26  // 0-9
        case 0x41...0x5A: return UInt32(c - 0x41)  // A-Z
        case 0x61...0x7A: return UInt32(c - 0x61)  // a-z
        default: return nil
        }
    }

    private static func checkedAdd(_ a: UInt32, _ b: UInt32) -> UInt32? {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : r
    }

    private static func checkedMul(_ a: UInt32, _ b: UInt32) -> UInt32? {
        let (r, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : r
    }
}
