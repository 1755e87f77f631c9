import XCTest
@testable import MagicLinkCore

final class PunycodeTests: XCTestCase {
    /// RFC 3492 section 7.1 sample strings, plus common IDN labels.
    /// (Expected values cross-checked with Python's built-in "punycode" codec.)
    static let vectors: [(name: String, unicode: String, punycode: String)] = [
        ("(A) Arabic (Egyptian)",
         "\u{0644}\u{064A}\u{0647}\u{0645}\u{0627}\u{0628}\u{062A}\u{0643}\u{0644}\u{0645}\u{0648}\u{0634}\u{0639}\u{0631}\u{0628}\u{064A}\u{061F}",
         "egbpdaj6bu4bxfgehfvwxn"),
        ("(B) Chinese (simplified)",
         "\u{4ED6}\u{4EEC}\u{4E3A}\u{4EC0}\u{4E48}\u{4E0D}\u{8BF4}\u{4E2D}\u{6587}",
         "ihqwcrb4cv8a8dqg056pqjye"),
        ("(C) Chinese (traditional)",
         "\u{4ED6}\u{5011}\u{7232}\u{4EC0}\u{9EBD}\u{4E0D}\u{8AAA}\u{4E2D}\u{6587}",
         "ihqwctvzc91f659drss3x8bo0yb"),
        ("(D) Czech", "Pro\u{010D}prost\u{011B}nemluv\u{00ED}\u{010D}esky", "Proprostnemluvesky-uyb24dma41a"),
        ("(E) Hebrew",
         "\u{05DC}\u{05DE}\u{05D4}\u{05D4}\u{05DD}\u{05E4}\u{05E9}\u{05D5}\u{05D8}\u{05DC}\u{05D0}\u{05DE}\u{05D3}\u{05D1}\u{05E8}\u{05D9}\u{05DD}\u{05E2}\u{05D1}\u{05E8}\u{05D9}\u{05EA}",
         "4dbcagdahymbxekheh6e0a7fei0b"),
        ("(G) Japanese",
         "\u{306A}\u{305C}\u{307F}\u{3093}\u{306A}\u{65E5}\u{672C}\u{8A9E}\u{3092}\u{8A71}\u{3057}\u{3066}\u{304F}\u{308C}\u{306A}\u{3044}\u{306E}\u{304B}",
         "n8jok5ay5dzabd5bym9f0cm5685rrjetr6pdxa"),
        ("(J) Spanish", "Porqu\u{00E9}nopuedensimplementehablarenEspa\u{00F1}ol",
         "PorqunopuedensimplementehablarenEspaol-fmd56a"),
        ("(L)", "3年B組金八先生", "3B-ww4c5e180e575a65lsy2b"),
        ("(M)", "安室奈美恵-with-SUPER-MONKEYS", "-with-SUPER-MONKEYS-pc58ag80a8qai00g7n9n"),
        ("(N)", "Hello-Another-Way-それぞれの場所", "Hello-Another-Way--fc4qua05auwb3674vfr0b"),
        ("(O)", "ひとつ屋根の下2", "2-u9tlzr9756bt3uc0v"),
        ("(P)", "MajiでKoiする5秒前", "MajiKoi5-783gue6qz075azm5e"),
        ("(Q)", "パフィーdeルンバ", "de-jg4avhby1noc0d"),
        ("(R)", "そのスピードで", "d9juau41awczczp"),
        ("(S)", "-> $1.00 <-", "-> $1.00 <--"),
        ("bücher", "bücher", "bcher-kva"),
        ("münchen", "münchen", "mnchen-3ya"),
        ("例え", "例え", "r8jz45g"),
        ("例子", "例子", "fsqu00a"),
        ("广告", "广告", "4rr70v"),
        ("用户", "用户", "zouo53b"),
        ("пример", "пример", "e1afmkfd"),
        ("испытание", "испытание", "80akhbyknj4f"),
        ("faß", "faß", "fa-hia"),
        ("ü", "ü", "tda"),
        ("emoji", "😀", "e28h"),
        ("all basic", "abc", "abc-"),
        ("empty", "", ""),
    ]

    func testEncodeVectors() {
        for v in Self.vectors {
            XCTAssertEqual(Punycode.encode(v.unicode), v.punycode, v.name)
        }
    }

    func testDecodeVectors() {
        for v in Self.vectors {
            XCTAssertEqual(Punycode.decode(v.punycode), v.unicode, v.name)
        }
    }

    func testDecodeIgnoresDigitCaseButKeepsBasicCase() {
        // RFC 3492 7.1 (I) Russian, with its mixed-case annotation ("D"): digits are case-insensitive.
        XCTAssertEqual(Punycode.decode("b1abfaaepdrnnbgefbaDotcwatmq2g4l"), "почемужеонинеговорятпорусски")
        XCTAssertEqual(Punycode.decode("BCHER-KVA"), "BüCHER")
        XCTAssertEqual(Punycode.decode("bcher-KVA"), "bücher")
    }

    func testRoundTrip() {
        let samples = ["a", "ü", "Ünïcödé", "日本語", "mixed-日本-ascii", "\u{10FFFF}", "\u{80}", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
                       String(repeating: "ü", count: 500), String(repeating: "語a", count: 300)]
        for s in samples {
            guard let encoded = Punycode.encode(s) else {
                XCTFail("cannot encode \(s.debugDescription)")
                continue
            }
            XCTAssertTrue(encoded.utf8.allSatisfy { $0 < 0x80 }, s.debugDescription)
            XCTAssertEqual(Punycode.decode(encoded), s, s.debugDescription)
        }
    }

    func testDecodeRefusesInvalidInput() {
        let invalid: [(String, String)] = [
            ("b", "truncated integer"),
            ("bcher-kv", "truncated integer after the delimiter"),
            ("99", "truncated integer (digits >= threshold to the end)"),
            ("ab-c!", "a non-digit after the delimiter"),
            ("-abc", "a leading delimiter is not consumed (RFC 3492 6.2) and is not a digit"),
            ("ü-kva", "non-ASCII in the basic part"),
            ("bcher-kvä", "non-ASCII in the digits"),
            ("999999999999", "overflow of the 32-bit integer"),
            ("0000h", "decodes beyond U+10FFFF"),
            ("ib9b", "decodes to a surrogate (U+D800)"),
        ]
        for (input, why) in invalid {
            XCTAssertNil(Punycode.decode(input), "\(input): \(why)")
        }
    }

    func testDecodeEdgeCasesThatAreValid() {
        // Only basic code points before the last delimiter, no digits after it.
        XCTAssertEqual(Punycode.decode("bcher-kva-"), "bcher-kva")
        XCTAssertEqual(Punycode.decode("abc-"), "abc")
        // A lone digit: delta 0 from n = 128.
        XCTAssertEqual(Punycode.decode("a"), "\u{80}")
    }

    func testEncodeReportsOverflow() {
        // (0x10FFFF - 0x80) * (4000 + 1) does not fit in 32 bits.
        XCTAssertNil(Punycode.encode(String(repeating: "a", count: 4000) + "\u{10FFFF}"))
    }

    func testEncodeHandlesLongInputWithoutOverflowForRealisticSizes() {
        let long = String(repeating: "\u{10FFFF}a", count: 1000)
        XCTAssertNotNil(Punycode.encode(long).flatMap(Punycode.decode), "round-trips")
        XCTAssertEqual(Punycode.encode(long).flatMap(Punycode.decode), long)
    }
}
