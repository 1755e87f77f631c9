import Foundation
import MagicLinkMail
import XCTest

final class MailMessageTests: XCTestCase {

    // MARK: - Fixtures

    private func makeMessage(
        from: Mailbox = Mailbox(displayName: "Magic Link", address: "login@example.com"),
        to: Mailbox = Mailbox(address: "user@example.org"),
        subject: String = "Your sign-in link",
        text: String = "Hello,\n\nuse this link: https://example.com/login?t=abc=def\n",
        html: String = "<p>Hello,</p>\n<p><a href=\"https://example.com/login?t=abc=def\">Sign in</a></p>\n",
        messageID: String = "2kd9f0a1b2c3@example.com",
        date: Int64 = 1_795_706_349,
        extraHeaders: [(name: String, value: String)] = []
    ) -> MailMessage {
        MailMessage(
            from: from, to: to, subject: subject, textBody: text, htmlBody: html,
            messageID: messageID, date: date, extraHeaders: extraHeaders)
    }

    // MARK: - Structure

    func testStructureHeaderOrderAndCRLF() throws {
        let bytes = makeMessage().render(boundary: "b0undary")
        assertWellFormedLines(bytes)
        let parsed = try ParsedMessage(bytes)

        XCTAssertEqual(
            parsed.headers.map(\.name),
            ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Auto-Submitted", "Content-Type"])
        XCTAssertEqual(parsed.header("From"), "Magic Link <login@example.com>")
        XCTAssertEqual(parsed.header("To"), "user@example.org")
        XCTAssertEqual(parsed.header("Subject"), "Your sign-in link")
        XCTAssertEqual(parsed.header("Date"), "Thu, 26 Nov 2026 15:19:09 +0000")
        XCTAssertEqual(parsed.header("Message-ID"), "<2kd9f0a1b2c3@example.com>")
        XCTAssertEqual(parsed.header("MIME-Version"), "1.0")
        XCTAssertEqual(parsed.header("Auto-Submitted"), "auto-generated")
        XCTAssertEqual(parsed.header("Content-Type"), "multipart/alternative; boundary=\"b0undary\"")
        for line in parsed.rawHeaderLines { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }

        XCTAssertEqual(parsed.parts.count, 2)
        XCTAssertEqual(parsed.parts[0].header("Content-Type"), "text/plain; charset=utf-8")
        XCTAssertEqual(parsed.parts[0].header("Content-Transfer-Encoding"), "quoted-printable")
        XCTAssertEqual(parsed.parts[1].header("Content-Type"), "text/html; charset=utf-8")
        XCTAssertEqual(parsed.parts[1].header("Content-Transfer-Encoding"), "quoted-printable")
        XCTAssertEqual(parsed.parts[0].decodedText, crlf("Hello,\n\nuse this link: https://example.com/login?t=abc=def\n"))
        XCTAssertEqual(
            parsed.parts[1].decodedText,
            crlf("<p>Hello,</p>\n<p><a href=\"https://example.com/login?t=abc=def\">Sign in</a></p>\n"))

        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.hasSuffix("\r\n--b0undary--\r\n"))
        XCTAssertTrue(text.contains("\r\n\r\n"))
    }

    func testDateHeaderMatchesFoundation() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, d MMM yyyy HH:mm:ss Z"

        var samples: [Int64] = [
            0, -1, 1, 86_399, 86_400, 951_782_400 /* 2000-02-29 */, 4_107_542_400 /* 2100-03-01 */,
            1_795_706_349, 253_402_300_799 /* 9999-12-31T23:59:59 */, -86_400 * 365,
        ]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 { samples.append(Int64.random(in: 0...4_102_444_800, using: &rng)) }

        for seconds in samples {
            let parsed = try ParsedMessage(makeMessage(date: seconds).render())
            let expected = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
            XCTAssertEqual(parsed.header("Date"), expected, "unix time \(seconds)")
        }
        XCTAssertEqual(try ParsedMessage(makeMessage(date: 0).render()).header("Date"), "Thu, 1 Jan 1970 00:00:00 +0000")
        XCTAssertEqual(try ParsedMessage(makeMessage(date: -1).render()).header("Date"), "Wed, 31 Dec 1969 23:59:59 +0000")
    }

    // MARK: - Quoted-printable

    func testQuotedPrintableRoundTrip() throws {
        let bodies = [
            "",
            "no newline at end",
            "a=b==c\n=\n",
            "trailing space \ntrailing tab\t\nboth \t \n   \n",
            "mixed\r\nline\rends\nhere\r\n\r\n",
            "From the start\nFrom: not a header\n.leading dot\n..two\n.\n",
            "Grüße aus Köln – “quoted” ☕ 🧑‍💻\n",
            "control \u{01}\u{7F} bytes and NUL \u{00} inside\n",
            String(repeating: "0123456789 ", count: 40) + "\n",
            String(repeating: "x", count: 75) + "\n" + String(repeating: "y", count: 76) + "\n"
                + String(repeating: "z", count: 77) + "\n" + String(repeating: "é", count: 80) + " \n",
            String(repeating: "ab ", count: 100),
        ]
        for body in bodies {
            let bytes = makeMessage(text: body, html: "<pre>" + body + "</pre>").render()
            assertWellFormedLines(bytes)
            let parsed = try ParsedMessage(bytes)
            XCTAssertEqual(parsed.parts.count, 2)
            XCTAssertEqual(parsed.parts[0].decodedText, crlf(body), "text body \(body.debugDescription)")
            XCTAssertEqual(parsed.parts[1].decodedText, crlf("<pre>" + body + "</pre>"))
            for part in parsed.parts { assertValidQuotedPrintable(part.rawBody) }
        }
    }

    func testLongSingleWordLineStaysWithin76() throws {
        for word in [
            String(repeating: "a", count: 2000), String(repeating: "=", count: 2000),
            String(repeating: "ü", count: 2000), "https://example.com/login?token=" + String(repeating: "Zq9", count: 660),
        ] {
            let bytes = makeMessage(text: word, html: word + "\n").render()
            assertWellFormedLines(bytes)
            let parsed = try ParsedMessage(bytes)
            for part in parsed.parts {
                assertValidQuotedPrintable(part.rawBody)
                XCTAssertGreaterThan(part.rawBody.components(separatedBy: "\r\n").count, 20)
            }
            XCTAssertEqual(parsed.parts[0].decodedText, word)
            XCTAssertEqual(parsed.parts[1].decodedText, word + "\r\n")
        }
    }

    // MARK: - RFC 2047

    func testNonASCIISubjectAndBody() throws {
        let subject = "Ihr Anmeldelink für Café ☕"
        let body = "Hallo Jürgen,\n\nhier ist Ihr Link für Café ☕: https://example.com/l?t=x\n"
        let bytes = makeMessage(subject: subject, text: body, html: "<p>\(body)</p>").render()
        assertWellFormedLines(bytes)
        let parsed = try ParsedMessage(bytes)
        let raw = try XCTUnwrap(parsed.header("Subject"))
        XCTAssertTrue(raw.hasPrefix("=?utf-8?B?"), raw)
        XCTAssertTrue(raw.allSatisfy(\.isASCII), "encoded subject must be ASCII")
        XCTAssertEqual(try decodeEncodedWords(raw), subject)
        XCTAssertEqual(parsed.parts[0].decodedText, crlf(body))
        XCTAssertEqual(parsed.parts[1].decodedText, crlf("<p>\(body)</p>"))
        // Nothing outside the message bodies is raw non-ASCII.
        XCTAssertTrue(parsed.rawHeaderLines.joined().allSatisfy(\.isASCII))
    }

    func testLongNonASCIISubjectIsSplitIntoValidEncodedWords() throws {
        let subject = String(repeating: "Grüße ☕ 🧑‍💻 Ärger über ß — ", count: 12) + "Ende"
        let parsed = try ParsedMessage(makeMessage(subject: subject).render())
        for line in parsed.rawHeaderLines { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }
        let raw = try XCTUnwrap(parsed.header("Subject"))
        let words = raw.split(separator: " ").map(String.init)
        XCTAssertGreaterThan(words.count, 10)
        for word in words {
            XCTAssertLessThanOrEqual(word.count, 75, word)
            // Every word must decode on its own: splits happen on character boundaries.
            XCTAssertNoThrow(try decodeEncodedWords(word), word)
        }
        XCTAssertEqual(try decodeEncodedWords(raw), subject)
        // Words are cut just after a space where one is available (kinder to sloppy decoders).
        let decodedWords = try words.dropLast().map { try decodeEncodedWords($0) }
        XCTAssertGreaterThan(decodedWords.filter { $0.hasSuffix(" ") }.count, decodedWords.count / 2, "\(decodedWords)")
    }

    func testLongASCIISubjectIsFoldedAtSpaces() throws {
        let subject = (1...40).map { "word\($0)" }.joined(separator: " ") + "  double  spaces kept"
        let parsed = try ParsedMessage(makeMessage(subject: subject).render())
        let subjectLines = parsed.rawHeaderLines.drop { !$0.hasPrefix("Subject:") }.prefix { !$0.hasPrefix("Date:") }
        XCTAssertGreaterThan(subjectLines.count, 1)
        for line in subjectLines { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }
        XCTAssertEqual(parsed.header("Subject"), subject)
    }

    func testSubjectThatLooksLikeEncodedWordIsEncoded() throws {
        let subject = "=?utf-8?B?ZXZpbA==?= literal"
        let raw = try XCTUnwrap(try ParsedMessage(makeMessage(subject: subject).render()).header("Subject"))
        XCTAssertEqual(try decodeEncodedWords(raw), subject)
    }

    // MARK: - Mailboxes in headers

    func testDisplayNameRendering() throws {
        func fromHeader(_ mailbox: Mailbox) throws -> String {
            try XCTUnwrap(try ParsedMessage(makeMessage(from: mailbox).render()).header("From"))
        }
        XCTAssertEqual(try fromHeader(Mailbox(address: "a@example.com")), "a@example.com")
        XCTAssertEqual(try fromHeader(Mailbox(displayName: "", address: "a@example.com")), "a@example.com")
        XCTAssertEqual(try fromHeader(Mailbox(displayName: "Magic Link", address: "a@example.com")), "Magic Link <a@example.com>")
        XCTAssertEqual(
            try fromHeader(Mailbox(displayName: "Doe, \"J\" \\ Co.", address: "a@example.com")),
            "\"Doe, \\\"J\\\" \\\\ Co.\" <a@example.com>")
        let encoded = try fromHeader(Mailbox(displayName: "Café Zürich ☕", address: "a@example.com"))
        XCTAssertTrue(encoded.hasPrefix("=?utf-8?B?"), encoded)
        XCTAssertTrue(encoded.hasSuffix(" <a@example.com>"), encoded)
        XCTAssertEqual(try decodeEncodedWords(String(encoded.dropLast(" <a@example.com>".count))), "Café Zürich ☕")
    }

    func testUTF8LocalPartIsWrittenRaw() throws {
        let bytes = makeMessage(to: Mailbox(displayName: "Jörg", address: "jörg.müller@example.de")).render()
        assertWellFormedLines(bytes)
        let parsed = try ParsedMessage(bytes)
        let to = try XCTUnwrap(parsed.header("To"))
        XCTAssertTrue(to.hasSuffix(" <jörg.müller@example.de>"), to)
        XCTAssertEqual(try decodeEncodedWords(String(to.dropLast(" <jörg.müller@example.de>".count))), "Jörg")
    }

    // MARK: - Header injection

    func testSubjectHeaderInjectionIsNeutralised() throws {
        let bytes = makeMessage(subject: "Hi\r\nBcc: evil@x.com").render()
        assertWellFormedLines(bytes)
        let parsed = try ParsedMessage(bytes)
        XCTAssertFalse(parsed.headers.contains { $0.name.lowercased() == "bcc" })
        XCTAssertFalse(parsed.rawHeaderLines.contains { $0.lowercased().hasPrefix("bcc") })
        XCTAssertEqual(parsed.header("Subject"), "Hi  Bcc: evil@x.com")
    }

    func testInjectionThroughEveryHeaderInputIsNeutralised() throws {
        let attacks = ["x\r\nBcc: evil@x.com", "x\nBcc: evil@x.com", "x\rBcc: evil@x.com", "x\u{0}Bcc: evil@x.com",
                       "x\r\n\r\nbody", "ü\r\nBcc: evil@x.com", "x\u{85}Bcc: evil@x.com"]
        for attack in attacks {
            let message = makeMessage(
                from: Mailbox(displayName: attack, address: "login@example.com\r\nBcc: evil@x.com"),
                to: Mailbox(displayName: attack, address: "user@example.org"),
                subject: attack,
                messageID: "id@example.com>\r\nBcc: <evil@x.com",
                extraHeaders: [
                    (name: "X-Campaign", value: attack),
                    (name: "X-Evil\r\nBcc", value: "evil@x.com"),
                    (name: "Bcc", value: "evil@x.com"),
                    (name: "content-type", value: "text/plain"),
                ])
            let bytes = message.render()
            assertWellFormedLines(bytes)
            let parsed = try ParsedMessage(bytes)
            XCTAssertEqual(parsed.headers.filter { $0.name.lowercased() == "bcc" }.count, 0, attack.debugDescription)
            XCTAssertEqual(parsed.headers.filter { $0.name.lowercased() == "content-type" }.count, 1)
            XCTAssertFalse(parsed.rawHeaderLines.contains { $0.lowercased().hasPrefix("bcc") }, attack.debugDescription)
            XCTAssertFalse(bytes.contains(0), "NUL in output")
            XCTAssertEqual(parsed.parts.count, 2, "body structure intact for \(attack.debugDescription)")
            XCTAssertEqual(
                parsed.headers.map(\.name),
                ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Auto-Submitted", "X-Campaign",
                 "Content-Type"])
            XCTAssertEqual(parsed.header("Message-ID"), "<id@example.comBcc:evil@x.com>")
        }
    }

    func testExtraHeaders() throws {
        let longValue = (1...60).map { "tok\($0)" }.joined(separator: " ")
        let message = makeMessage(extraHeaders: [
            (name: "List-Unsubscribe", value: "<https://example.com/unsub?u=1>"),
            (name: "X-Long", value: longValue),
            (name: "X-Unfoldable", value: String(repeating: "q", count: 1200)),
            (name: "Bad Name", value: "v"),
            (name: "", value: "v"),
            (name: "From", value: "evil@x.com"),
        ])
        let bytes = message.render()
        assertWellFormedLines(bytes)
        let parsed = try ParsedMessage(bytes)
        XCTAssertEqual(parsed.header("List-Unsubscribe"), "<https://example.com/unsub?u=1>")
        XCTAssertEqual(parsed.header("X-Long"), longValue)
        XCTAssertNil(parsed.header("X-Unfoldable"))
        XCTAssertNil(parsed.header("Bad Name"))
        XCTAssertEqual(parsed.headers.filter { $0.name == "From" }.count, 1)
        XCTAssertEqual(parsed.header("From"), "Magic Link <login@example.com>")
        for line in parsed.rawHeaderLines { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }
    }

    // MARK: - Boundary

    func testBoundaryChoice() throws {
        let message = makeMessage()
        let a = try ParsedMessage(message.render())
        let b = try ParsedMessage(message.render())
        XCTAssertNotEqual(a.boundary, b.boundary, "random boundaries should differ")
        XCTAssertEqual(a.parts.count, 2)
        XCTAssertLessThanOrEqual(a.boundary.count, 70)

        // A supplied boundary that occurs in a body is not used.
        let clash = makeMessage(text: "line\n--clash\nmore\n").render(boundary: "clash")
        let parsedClash = try ParsedMessage(clash)
        XCTAssertNotEqual(parsedClash.boundary, "clash")
        XCTAssertEqual(parsedClash.parts[0].decodedText, "line\r\n--clash\r\nmore\r\n")

        // An invalid boundary (bad characters / too long) is not used either.
        for bad in ["has\"quote", String(repeating: "x", count: 71), "", "trailing "] {
            let parsed = try ParsedMessage(makeMessage().render(boundary: bad))
            XCTAssertNotEqual(parsed.boundary, bad)
            XCTAssertEqual(parsed.parts.count, 2)
        }
    }

    func testMessageIDWithoutBracketsAndEmpty() throws {
        XCTAssertEqual(try ParsedMessage(makeMessage(messageID: "<abc@example.com>").render()).header("Message-ID"), "<abc@example.com>")
        let generated = try XCTUnwrap(try ParsedMessage(makeMessage(messageID: "").render()).header("Message-ID"))
        XCTAssertTrue(generated.hasPrefix("<") && generated.hasSuffix("@example.com>"), generated)
        XCTAssertGreaterThan(generated.count, "<@example.com>".count)
    }

    // MARK: - Python's email parser as an independent reader

    func testPythonEmailParserReadsMessage() throws {
        let subject = "Ihr Anmeldelink für Café ☕ — bitte innerhalb von 15 Minuten verwenden, danach verfällt er"
        let text = "Hallo,\n\nklicken Sie: https://example.com/login?token=" + String(repeating: "Ab9_", count: 40)
            + "\n\nGrüße ☕\nFrom here on = signs and trailing spaces   \n"
        let html = "<!doctype html>\n<p>Hallo,</p><p><a href=\"https://example.com/login?token=x=y\">Anmelden</a> ☕</p>\n"
        let from = Mailbox(displayName: "Café Login-Dienst", address: "login@example.com")
        let to = Mailbox(displayName: "Doe, John \"JD\"", address: "john.doe@example.org")
        let date: Int64 = 1_795_706_349
        let message = MailMessage(
            from: from, to: to, subject: subject, textBody: text, htmlBody: html,
            messageID: "2kd9xq7@example.com", date: date,
            extraHeaders: [(name: "X-Mailer", value: "magiclinkd")])

        let json = try runPython(script: Self.pythonScript, input: message.render())
        XCTAssertEqual(json["subject"] as? String, subject)
        XCTAssertEqual(json["from_name"] as? String, "Café Login-Dienst")
        XCTAssertEqual(json["from_addr"] as? String, "login@example.com")
        XCTAssertEqual(json["to_name"] as? String, "Doe, John \"JD\"")
        XCTAssertEqual(json["to_addr"] as? String, "john.doe@example.org")
        XCTAssertEqual(json["to_count"] as? Int, 1)
        XCTAssertEqual(json["date"] as? Double, Double(date))
        XCTAssertEqual(json["date_utcoffset"] as? Double, 0)
        XCTAssertEqual(json["message_id"] as? String, "<2kd9xq7@example.com>")
        XCTAssertEqual(json["mailer"] as? String, "magiclinkd")
        XCTAssertEqual(json["auto_submitted"] as? String, "auto-generated")
        XCTAssertEqual(json["content_type"] as? String, "multipart/alternative")
        XCTAssertEqual(json["is_multipart"] as? Bool, true)
        XCTAssertEqual((json["defects"] as? [Any])?.count, 0, "\(json["defects"] ?? "")")
        XCTAssertEqual((json["header_defects"] as? [Any])?.count, 0, "\(json["header_defects"] ?? "")")

        let parts = try XCTUnwrap(json["parts"] as? [[String: Any]])
        XCTAssertEqual(parts.count, 2)
        XCTAssertEqual(parts[0]["type"] as? String, "text/plain")
        XCTAssertEqual(parts[1]["type"] as? String, "text/html")
        for part in parts {
            XCTAssertEqual(part["charset"] as? String, "utf-8")
            XCTAssertEqual(part["cte"] as? String, "quoted-printable")
            XCTAssertEqual((part["defects"] as? [Any])?.count, 0)
        }
        XCTAssertEqual(normalizedNewlines(parts[0]["content"] as? String), text)
        XCTAssertEqual(normalizedNewlines(parts[1]["content"] as? String), html)
    }

    static let pythonScript = #"""
    import sys, json, email, email.policy
    from email.parser import BytesParser
    msg = BytesParser(policy=email.policy.default).parsebytes(sys.stdin.buffer.read())
    parts = []
    for part in msg.iter_parts():
        parts.append({"type": part.get_content_type(), "charset": part.get_content_charset(),
                      "cte": part["Content-Transfer-Encoding"], "content": part.get_content(),
                      "defects": [str(d) for d in part.defects]})
    out = {
        "subject": str(msg["Subject"]),
        "from_name": msg["From"].addresses[0].display_name,
        "from_addr": msg["From"].addresses[0].addr_spec,
        "to_name": msg["To"].addresses[0].display_name,
        "to_addr": msg["To"].addresses[0].addr_spec,
        "to_count": len(msg["To"].addresses),
        "date": msg["Date"].datetime.timestamp(),
        "date_utcoffset": msg["Date"].datetime.utcoffset().total_seconds(),
        "message_id": str(msg["Message-ID"]),
        "mailer": str(msg["X-Mailer"]),
        "auto_submitted": str(msg["Auto-Submitted"]),
        "content_type": msg.get_content_type(),
        "is_multipart": msg.is_multipart(),
        "defects": [str(d) for d in msg.defects],
        "header_defects": [str(d) for k in msg.keys() for d in msg[k].defects],
        "parts": parts,
    }
    print(json.dumps(out))
    """#

    func testPythonEmailParserReadsLongAndQuotedNames() throws {
        // Long non-ASCII display name (several encoded-words) and a long ASCII one that needs a
        // quoted-string folded inside the quotes.
        let toName = "Doe, John \"JD\" — Großherzogliche Verwaltung für Anmeldungen und Zugänge aller Art"
        let fromName = "Login Service (Example, Inc.) \\ the \"quick\" brown fox jumps over the lazy dog twice"
        let message = MailMessage(
            from: Mailbox(displayName: fromName, address: "login@example.com"),
            to: Mailbox(displayName: toName, address: "john@example.org"),
            subject: "ASCII subject", textBody: "x", htmlBody: "<b>x</b>",
            messageID: "q@example.com", date: 0)
        let bytes = message.render()
        let parsed = try ParsedMessage(bytes)
        XCTAssertGreaterThan(parsed.rawHeaderLines.filter { $0.hasPrefix(" ") }.count, 2, "expected folded headers")
        for line in parsed.rawHeaderLines { XCTAssertLessThanOrEqual(line.utf8.count, 78, line) }

        let json = try runPython(script: Self.pythonScript, input: bytes)
        XCTAssertEqual(json["from_name"] as? String, fromName)
        XCTAssertEqual(json["from_addr"] as? String, "login@example.com")
        // CPython before gh-128110 was fixed keeps the whitespace between adjacent encoded-words in
        // address headers; encoded-words are split after a space, so at worst a space is doubled.
        let toSeenByPython = try XCTUnwrap(json["to_name"] as? String)
        XCTAssertEqual(collapseSpaces(toSeenByPython), toName)
        XCTAssertEqual(json["to_addr"] as? String, "john@example.org")
        XCTAssertEqual(json["date"] as? Double, 0)
        XCTAssertEqual((json["header_defects"] as? [Any])?.count, 0, "\(json["header_defects"] ?? "")")
        let parts = try XCTUnwrap(json["parts"] as? [[String: Any]])
        XCTAssertEqual(parts.map { $0["content"] as? String }, ["x", "<b>x</b>"])
    }

    // MARK: - Mailbox parsing

    func testMailboxParsingAccepts() throws {
        XCTAssertEqual(try Mailbox(parsing: "login@example.com"), Mailbox(address: "login@example.com"))
        XCTAssertEqual(try Mailbox(parsing: "  <login@example.com> "), Mailbox(address: "login@example.com"))
        XCTAssertEqual(
            try Mailbox(parsing: "Magic Link <login@example.com>"),
            Mailbox(displayName: "Magic Link", address: "login@example.com"))
        XCTAssertEqual(
            try Mailbox(parsing: "Magic Link<login@example.com>"),
            Mailbox(displayName: "Magic Link", address: "login@example.com"))
        XCTAssertEqual(
            try Mailbox(parsing: "\"Doe, John \\\"JD\\\"\" <john@example.org>"),
            Mailbox(displayName: "Doe, John \"JD\"", address: "john@example.org"))
        XCTAssertEqual(
            try Mailbox(parsing: "Café Zürich <jörg@example.de>"),
            Mailbox(displayName: "Café Zürich", address: "jörg@example.de"))
        XCTAssertEqual(try Mailbox(parsing: "Magic Link <login@mail.example.com>").domain, "mail.example.com")
        XCTAssertEqual(Mailbox(address: "no-at-sign").domain, "")
    }

    func testMailboxParsingRejects() {
        let bad = [
            "", "   ", "login@example.com\r\n", "Name\n <login@example.com>", "login@exa\u{0}mple.com",
            "Name <login@example.com", "Name login@example.com>", "a@example.com, b@example.com",
            "Name <a@example.com> <b@example.com>", "Name <a@example.com>, Other <b@example.com>",
            "no-at-sign", "@example.com", "user@", "a@b@example.com", "Name <>", "user@exa mple.com",
            "Doe, John <john@example.org>", "\"unterminated <john@example.org>", "\"Name\" x <john@example.org>",
            "user@bücher.de", "user@-example.com", "user@example..com", ".user@example.com",
        ]
        for text in bad {
            XCTAssertThrowsError(try Mailbox(parsing: text), text.debugDescription) { error in
                guard let e = error as? MailFormatError else { return XCTFail("wrong error type \(error)") }
                XCTAssertFalse(e.reason.isEmpty)
                XCTAssertTrue(e.description.contains(e.reason))
            }
        }
    }

    // MARK: - Helpers

    private func crlf(_ text: String) -> String {
        text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .replacingOccurrences(of: "\n", with: "\r\n")
    }

    private func collapseSpaces(_ text: String) -> String {
        text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    private func normalizedNewlines(_ text: String?) -> String? {
        text.map { $0.replacingOccurrences(of: "\r\n", with: "\n") }
    }

    /// Every CR is followed by LF, every LF preceded by CR, no line over 998 octets, no NUL.
    private func assertWellFormedLines(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        var lineLength = 0
        for (i, b) in bytes.enumerated() {
            if b == 13 {
                XCTAssertTrue(i + 1 < bytes.count && bytes[i + 1] == 10, "bare CR at \(i)", file: file, line: line)
            } else if b == 10 {
                XCTAssertTrue(i > 0 && bytes[i - 1] == 13, "bare LF at \(i)", file: file, line: line)
                lineLength = 0
                continue
            } else {
                XCTAssertNotEqual(b, 0, "NUL at \(i)", file: file, line: line)
                lineLength += 1
                XCTAssertLessThanOrEqual(lineLength, 998, "line too long at \(i)", file: file, line: line)
            }
        }
        XCTAssertEqual(Array(bytes.suffix(2)), [13, 10], "output must end in CRLF", file: file, line: line)
    }

    /// Encoded lines are ≤ 76 chars, printable ASCII only, no trailing whitespace, '=' only as escape.
    private func assertValidQuotedPrintable(_ body: String, file: StaticString = #filePath, line: UInt = #line) {
        for encodedLine in body.components(separatedBy: "\r\n") {
            XCTAssertLessThanOrEqual(encodedLine.utf8.count, 76, encodedLine, file: file, line: line)
            XCTAssertFalse(encodedLine.hasSuffix(" ") || encodedLine.hasSuffix("\t"), "trailing whitespace", file: file, line: line)
            let bytes = Array(encodedLine.utf8)
            var i = 0
            while i < bytes.count {
                XCTAssertTrue((33...126).contains(bytes[i]) || bytes[i] == 32 || bytes[i] == 9, file: file, line: line)
                if bytes[i] == UInt8(ascii: "=") {
                    if i == bytes.count - 1 { break }  // soft line break
                    XCTAssertLessThan(i + 2, bytes.count, "truncated escape", file: file, line: line)
                    let hex = "0123456789ABCDEF".utf8
                    XCTAssertTrue(hex.contains(bytes[i + 1]) && hex.contains(bytes[min(i + 2, bytes.count - 1)]),
                                  "bad escape in \(encodedLine)", file: file, line: line)
                    i += 3
                } else {
                    i += 1
                }
            }
            XCTAssertFalse(encodedLine.hasPrefix("From "), file: file, line: line)
            XCTAssertFalse(encodedLine.hasPrefix("."), file: file, line: line)
        }
    }

    private func runPython(script: String, input: [UInt8]) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input))
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: err, as: UTF8.self))
        let object = try JSONSerialization.jsonObject(with: out)
        return try XCTUnwrap(object as? [String: Any], String(decoding: out, as: UTF8.self))
    }
}

// MARK: - A small, strict reader for the messages under test

private struct TestParseError: Error, CustomStringConvertible {
    var description: String
}

/// Decodes a header value made of RFC 2047 "B" encoded-words (utf-8) separated by whitespace.
private func decodeEncodedWords(_ value: String) throws -> String {
    var bytes: [UInt8] = []
    for word in value.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
        guard word.hasPrefix("=?utf-8?B?"), word.hasSuffix("?="), word.count <= 75 else {
            throw TestParseError(description: "not a utf-8 B encoded-word (or too long): \(word)")
        }
        let payload = String(word.dropFirst(10).dropLast(2))
        guard let data = Data(base64Encoded: payload) else {
            throw TestParseError(description: "bad base64 in \(word)")
        }
        // Each word must be valid UTF-8 on its own.
        guard String(data: data, encoding: .utf8) != nil else {
            throw TestParseError(description: "encoded-word splits a character: \(word)")
        }
        bytes += data
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Decodes quoted-printable text with CRLF line ends.
private func decodeQuotedPrintable(_ text: String) throws -> [UInt8] {
    var out: [UInt8] = []
    let lines = text.components(separatedBy: "\r\n")
    for (index, line) in lines.enumerated() {
        let bytes = Array(line.utf8)
        var i = 0
        var soft = false
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "=") {
                if i == bytes.count - 1 {
                    soft = true
                    break
                }
                guard i + 2 < bytes.count, let v = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)
                else { throw TestParseError(description: "bad QP escape in \(line)") }
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        if !soft && index < lines.count - 1 { out += [13, 10] }
    }
    return out
}

private struct ParsedPart {
    var headers: [(name: String, value: String)]
    var rawBody: String
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
    var decodedText: String? {
        guard let bytes = try? decodeQuotedPrintable(rawBody) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private struct ParsedMessage {
    var rawHeaderLines: [String]
    var headers: [(name: String, value: String)]
    var boundary: String
    var parts: [ParsedPart]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    init(_ bytes: [UInt8]) throws {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestParseError(description: "no header/body separator") }
        rawHeaderLines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        headers = try ParsedMessage.parseHeaders(rawHeaderLines)
        let body = String(text[split.upperBound...])

        let contentType = headers.first { $0.name.lowercased() == "content-type" }?.value ?? ""
        guard let b = contentType.range(of: "boundary=\"") else { throw TestParseError(description: "no boundary") }
        boundary = String(contentType[b.upperBound...].prefix { $0 != "\"" })

        let delimiter = "--" + boundary
        let close = "\r\n" + delimiter + "--\r\n"
        guard body.hasSuffix(close) else { throw TestParseError(description: "missing close delimiter") }
        // Everything before the first delimiter line is the preamble.
        let inner = "\r\n" + body.dropLast(close.count)
        let sections = inner.components(separatedBy: "\r\n" + delimiter + "\r\n")
        guard sections.count >= 2 else { throw TestParseError(description: "missing first delimiter") }
        parts = try sections.dropFirst().map { section in
            guard let sep = section.range(of: "\r\n\r\n") else { throw TestParseError(description: "part without headers") }
            let headerLines = section[..<sep.lowerBound].components(separatedBy: "\r\n")
            return ParsedPart(headers: try ParsedMessage.parseHeaders(headerLines), rawBody: String(section[sep.upperBound...]))
        }
    }

    /// Unfolds (removes CRLF before WSP) and splits "Name: value".
    static func parseHeaders(_ lines: [String]) throws -> [(name: String, value: String)] {
        var result: [(name: String, value: String)] = []
        for line in lines {
            if line.hasPrefix(" ") || line.hasPrefix("\t") {
                guard !result.isEmpty else { throw TestParseError(description: "continuation before first header") }
                result[result.count - 1].value += line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw TestParseError(description: "header without colon: \(line)") }
            let name = String(line[..<colon])
            guard !name.isEmpty, !name.contains(" ") else { throw TestParseError(description: "bad header name: \(line)") }
            result.append((name: name, value: String(line[line.index(after: colon)...])))
        }
        return result.map { (name: $0.name, value: String($0.value.drop { $0 == " " })) }
    }
}
