import Foundation
import MagicLinkMail
import XCTest

final class TemplateCatalogTests: XCTestCase {

    // MARK: - Fixtures

    private let now: Int64 = 1_795_706_349
    private let link = "https://shop.example.com/auth/callback?next=%2Fa&token=AbC_123-xyz"

    private func render(
        _ catalog: TemplateCatalog, locale: String?, appName: String = "Example Shop",
        email: String = "alice@example.com", ttl: Int64 = 600, link: String? = nil
    ) throws -> RenderedMail {
        try catalog.render(.login, locale: locale, link: link ?? self.link, appName: appName, email: email,
                           expiresAt: now + ttl, now: now)
    }

    /// A fresh temporary directory, removed after the test.
    private func makeTemplateDir(_ files: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("templates-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        for (relative, content) in files {
            let url = dir.appendingPathComponent(relative)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(content.utf8).write(to: url)
        }
        return dir.path
    }

    private func assertLoadFails(
        _ files: [String: String], fileEndsWith suffix: String, reasonContains fragment: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let dir = try makeTemplateDir(files)
        do {
            let catalog = try TemplateCatalog(directory: dir)
            XCTFail("loaded \(catalog.locales) instead of failing", file: file, line: line)
        } catch {
            XCTAssertNotNil(error.file, file: file, line: line)
            XCTAssertTrue(error.file?.hasSuffix(suffix) ?? false, "file \(error.file ?? "nil")", file: file, line: line)
            XCTAssertTrue(error.reason.contains(fragment), "reason \(error.reason)", file: file, line: line)
            XCTAssertTrue(error.description.contains(suffix), error.description, file: file, line: line)
        }
    }

    // MARK: - Default English

    func testDefaultEnglish() throws {
        let catalog = try TemplateCatalog()
        let mail = try render(catalog, locale: nil)
        XCTAssertEqual(mail.locale, "en")
        XCTAssertEqual(mail.subject, "Your sign-in link for Example Shop")
        XCTAssertFalse(mail.subject.contains("http"))
        XCTAssertFalse(mail.subject.contains(link))
        XCTAssertEqual(mail.text, """
            Hello,

            Use this link to sign in to Example Shop:

            \(link)

            It works once and expires in 10 minutes.
            If you did not ask to sign in, you can ignore this email: nobody can sign in without it.

            """)
        XCTAssertTrue(mail.text.contains(link), "link verbatim in the text body")
        XCTAssertFalse(mail.text.contains("&amp;"))
        XCTAssertTrue(mail.html.hasPrefix("<!DOCTYPE html>\n<html lang=\"en\">"))
        XCTAssertTrue(mail.html.contains("<title>Your sign-in link for Example Shop</title>"))
        let escapedLink = "https://shop.example.com/auth/callback?next=%2Fa&amp;token=AbC_123-xyz"
        XCTAssertTrue(mail.html.contains("href=\"\(escapedLink)\""), mail.html)
        XCTAssertTrue(mail.html.contains("<br>\(escapedLink)</p>"))
        XCTAssertFalse(mail.html.contains(link), "no raw & in the HTML")
        XCTAssertTrue(mail.html.contains(">Sign in to Example Shop</a>"))
        XCTAssertTrue(mail.html.contains("expires in 10 minutes."))
    }

    func testNilLocaleAndEnglishTagsGiveEnglish() throws {
        let catalog = try TemplateCatalog()
        for tag in [nil, "en", "EN", "en-US", "en-gb"] as [String?] {
            XCTAssertEqual(try render(catalog, locale: tag).locale, "en", "\(tag ?? "nil")")
        }
    }

    func testAppNameIsEscapedInHTMLButRawInText() throws {
        let catalog = try TemplateCatalog()
        let name = "<script>alert(\"x\")</script> & Co's"
        let mail = try render(catalog, locale: "en", appName: name)
        XCTAssertTrue(mail.text.contains("sign in to \(name):"))
        XCTAssertEqual(mail.subject, "Your sign-in link for \(name)")
        XCTAssertFalse(mail.html.contains("<script>"))
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co&#39;s"
        XCTAssertTrue(mail.html.contains("sign in to \(escaped):"), mail.html)
        XCTAssertTrue(mail.html.contains("<title>Your sign-in link for \(escaped)</title>"))
        XCTAssertEqual(escaped, htmlEscape(name), "same escaping as the module's htmlEscape")
    }

    func testQuoteInLinkCannotLeaveTheAttribute() throws {
        let catalog = try TemplateCatalog()
        let mail = try render(catalog, locale: "en", link: "https://x.example/cb?token=a\"onmouseover=\"b")
        XCTAssertTrue(mail.html.contains("href=\"https://x.example/cb?token=a&quot;onmouseover=&quot;b\""))
        XCTAssertTrue(mail.text.contains("https://x.example/cb?token=a\"onmouseover=\"b"))
    }

    // MARK: - Locales and fallback

    func testBrazilianPortugueseFallsBackToPortuguese() throws {
        let catalog = try TemplateCatalog()
        let mail = try render(catalog, locale: "pt-BR")
        XCTAssertEqual(mail.locale, "pt")
        XCTAssertEqual(mail.subject, "O seu link para entrar em Example Shop")
        XCTAssertTrue(mail.text.hasPrefix("Olá,\n\nUse este link para entrar em Example Shop:\n\n\(link)\n"))
        XCTAssertTrue(mail.text.contains("expira em 10 minutos."))
        XCTAssertTrue(mail.html.contains("<html lang=\"pt\">"))
        XCTAssertTrue(mail.html.contains(">Entrar em Example Shop</a>"))
        XCTAssertEqual(try render(catalog, locale: "pt-PT"), mail)
        XCTAssertEqual(try render(catalog, locale: "PT"), mail)
    }

    func testUnknownLocaleFallsBackToEnglish() throws {
        let catalog = try TemplateCatalog()
        let english = try render(catalog, locale: "en")
        XCTAssertEqual(try render(catalog, locale: "xx-YY"), english)
        XCTAssertEqual(try render(catalog, locale: "fr"), english)
        XCTAssertEqual(try render(catalog, locale: "not a tag!"), english, "invalid tags get the default")
        XCTAssertEqual(try render(catalog, locale: ""), english)
    }

    func testGermanRendersGerman() throws {
        let catalog = try TemplateCatalog()
        let mail = try render(catalog, locale: "de-AT")
        XCTAssertEqual(mail.locale, "de")
        XCTAssertEqual(mail.subject, "Ihr Anmeldelink für Example Shop")
        XCTAssertTrue(mail.text.hasPrefix("Hallo,\n\nmit diesem Link melden Sie sich bei Example Shop an:\n\n\(link)\n"))
        XCTAssertTrue(mail.text.contains("läuft in 10 Minuten ab."))
        XCTAssertTrue(mail.text.contains("Ohne ihn kann sich niemand anmelden."))
        XCTAssertTrue(mail.html.contains(">Bei Example Shop anmelden</a>"))
        XCTAssertTrue(mail.html.contains("<html lang=\"de\">"))
    }

    func testMinutesSingularAndPlural() throws {
        let catalog = try TemplateCatalog()
        let cases: [(String, Int64, String)] = [
            ("en", 60, "expires in 1 minute."), ("en", 1, "expires in 1 minute."), ("en", 0, "expires in 1 minute."),
            ("en", 61, "expires in 2 minutes."), ("en", 120, "expires in 2 minutes."), ("en", 3600, "expires in 60 minutes."),
            ("pt", 60, "expira em 1 minuto."), ("pt", 900, "expira em 15 minutos."),
            ("de", 60, "läuft in einer Minute ab."), ("de", 300, "läuft in 5 Minuten ab."),
        ]
        for (locale, ttl, expected) in cases {
            let mail = try render(catalog, locale: locale, ttl: ttl)
            XCTAssertTrue(mail.text.contains(expected), "\(locale) \(ttl)s: \(mail.text)")
            XCTAssertTrue(mail.html.contains(expected), "\(locale) \(ttl)s")
        }
        XCTAssertFalse(try render(catalog, locale: "en", ttl: 60).text.contains("1 minutes"))
    }

    func testEveryEmbeddedLocaleRendersAllParts() throws {
        let catalog = try TemplateCatalog()
        XCTAssertEqual(catalog.locales, ["de", "en", "pt"])
        for locale in catalog.locales {
            for kind in MailKind.allCases {
                for ttl: Int64 in [60, 600] {
                    let mail = try catalog.render(kind, locale: locale, link: link, appName: "App", email: "a@example.com",
                                                  expiresAt: now + ttl, now: now)
                    XCTAssertEqual(mail.locale, locale)
                    XCTAssertFalse(mail.subject.isEmpty)
                    XCTAssertTrue(mail.subject.contains("App"), "\(locale) subject names the app")
                    XCTAssertFalse(mail.subject.contains("\n"))
                    XCTAssertTrue(mail.text.contains(link), "\(locale) text has the link")
                    XCTAssertTrue(mail.html.contains(htmlEscape(link)), "\(locale) html has the link")
                    XCTAssertTrue(mail.html.contains("<html lang=\"\(locale)\">"))
                    XCTAssertFalse(mail.text.contains("{{") || mail.html.contains("{{") || mail.subject.contains("{{"))
                    XCTAssertTrue(mail.text.hasSuffix("\n") && !mail.text.hasPrefix("\n"))
                }
            }
        }
    }

    // MARK: - Directory overrides

    func testOverrideOnlyThePortugueseSubject() throws {
        let dir = try makeTemplateDir(["pt/login.subject.mustache": "Entrar em {{app_name}} ({{email}})\n"])
        let catalog = try TemplateCatalog(directory: dir)
        let embedded = try render(try TemplateCatalog(), locale: "pt-BR")
        let mail = try render(catalog, locale: "pt-BR")
        XCTAssertEqual(mail.subject, "Entrar em Example Shop (alice@example.com)")
        XCTAssertEqual(mail.text, embedded.text, "text still the embedded Portuguese")
        XCTAssertTrue(mail.html.contains("<title>Entrar em Example Shop (alice@example.com)</title>"))
        XCTAssertEqual(mail.html.replacingOccurrences(of: mail.subject, with: "S"),
                       embedded.html.replacingOccurrences(of: embedded.subject, with: "S"))
        XCTAssertEqual(mail.locale, "pt")
        // Other locales untouched.
        XCTAssertEqual(try render(catalog, locale: "en"), try render(try TemplateCatalog(), locale: "en"))
    }

    func testRegionalOverrideFallsBackPerFile() throws {
        let dir = try makeTemplateDir(["PT-BR/login.subject.mustache": "Seu link de acesso ao {{app_name}}"])
        let catalog = try TemplateCatalog(directory: dir)
        XCTAssertEqual(catalog.locales, ["de", "en", "pt", "pt-br"])
        let brazil = try render(catalog, locale: "pt-br")
        XCTAssertEqual(brazil.locale, "pt-br")
        XCTAssertEqual(brazil.subject, "Seu link de acesso ao Example Shop")
        XCTAssertTrue(brazil.text.hasPrefix("Olá,"), "text from embedded pt")
        XCTAssertTrue(brazil.html.contains("<html lang=\"pt-br\">"))
        let portugal = try render(catalog, locale: "pt-PT")
        XCTAssertEqual(portugal.subject, "O seu link para entrar em Example Shop")
        XCTAssertEqual(portugal.locale, "pt")
    }

    func testDirectoryAddsFrench() throws {
        let dir = try makeTemplateDir([
            "fr/login.subject.mustache": "Votre lien de connexion à {{app_name}}",
            "fr/login.text.mustache": """
                Bonjour,

                Utilisez ce lien pour vous connecter à {{app_name}} :

                {{link}}
                {{#send_code}}Code : {{code}}{{/send_code}}

                Le lien n’est valable qu’une fois et expire dans {{minutes}} minute{{^one_minute}}s{{/one_minute}}.

                """,
            "fr/login.html.mustache": "<p>Bonjour,</p>\n<p><a href=\"{{link}}\">Se connecter à {{app_name}}</a></p>\n{{#send_code}}<p>{{code}}</p>\n{{/send_code}}",
            "fr/README.txt": "notes for translators: ignored",
            "README.md": "ignored",
            ".git/HEAD": "ignored",
        ])
        let catalog = try TemplateCatalog(directory: dir)
        XCTAssertEqual(catalog.locales, ["de", "en", "fr", "pt"])
        let mail = try render(catalog, locale: "fr-CA", ttl: 60)
        XCTAssertEqual(mail.locale, "fr")
        XCTAssertEqual(mail.subject, "Votre lien de connexion à Example Shop")
        XCTAssertTrue(mail.text.contains("\n\(link)\n"))
        XCTAssertTrue(mail.text.contains("expire dans 1 minute."))
        XCTAssertTrue(try render(catalog, locale: "fr", ttl: 300).text.contains("expire dans 5 minutes."))
        XCTAssertEqual(mail.html, "<p>Bonjour,</p>\n<p><a href=\"https://shop.example.com/auth/callback?next=%2Fa&amp;token=AbC_123-xyz\">Se connecter à Example Shop</a></p>\n")
    }

    func testIncompleteNewLocaleTakesMissingPartsFromEnglish() throws {
        let dir = try makeTemplateDir(["fr/login.subject.mustache": "Connexion à {{app_name}}"])
        let mail = try render(try TemplateCatalog(directory: dir), locale: "fr")
        XCTAssertEqual(mail.subject, "Connexion à Example Shop")
        XCTAssertTrue(mail.text.hasPrefix("Hello,"))
        XCTAssertEqual(mail.locale, "fr")
    }

    func testOverrideOfDefaultLocaleServesUnknownLocales() throws {
        let dir = try makeTemplateDir(["en/login.subject.mustache": "Sign in to {{app_name}}"])
        let catalog = try TemplateCatalog(directory: dir)
        XCTAssertEqual(try render(catalog, locale: "xx").subject, "Sign in to Example Shop")
        XCTAssertEqual(try render(catalog, locale: "de").subject, "Ihr Anmeldelink für Example Shop")
    }

    func testTextOverridesNeedNoContentTypePragma() throws {
        // The catalog makes subject and text plain text itself; an explicit pragma is harmless.
        let dir = try makeTemplateDir([
            "en/login.text.mustache": "Go: {{link}} — {{app_name}}\n{{#send_code}}{{code}}\n{{/send_code}}",
            "de/login.text.mustache": "{{% CONTENT_TYPE: TEXT}}\nLos: {{link}}\n{{#send_code}}{{code}}\n{{/send_code}}",
        ])
        let catalog = try TemplateCatalog(directory: dir)
        XCTAssertEqual(try render(catalog, locale: "en", appName: "A & B").text, "Go: \(link) — A & B\n")
        XCTAssertEqual(try render(catalog, locale: "de").text, "Los: \(link)\n")
    }

    func testCRLFFilesAndBOMAreNormalized() throws {
        let dir = try makeTemplateDir(["en/login.text.mustache": "\u{FEFF}Hi,\r\n\r\n{{link}}\r\n{{#send_code}}{{code}}{{/send_code}}"])
        XCTAssertEqual(try render(try TemplateCatalog(directory: dir), locale: "en").text, "Hi,\n\n\(link)\n")
    }

    // MARK: - Directory errors

    func testBrokenTemplateNamesTheFile() throws {
        try assertLoadFails(
            ["pt/login.html.mustache": "<p>{{link}}</p>\n{{#unclosed}}\n<p>never closed</p>\n"],
            fileEndsWith: "/pt/login.html.mustache", reasonContains: "never closed")
        try assertLoadFails(
            ["en/login.text.mustache": "line one\n{{#a}}{{/b}} {{link}}\n"],
            fileEndsWith: "/en/login.text.mustache", reasonContains: "line 2, column 10: a section is closed with another name")
        try assertLoadFails(
            ["de/login.subject.mustache": "Hallo {{app_name"],
            fileEndsWith: "/de/login.subject.mustache", reasonContains: "ends inside a tag")
        try assertLoadFails(
            ["de/login.subject.mustache": "{{% CONTENT_TYPE: XML}}"],
            fileEndsWith: "/de/login.subject.mustache", reasonContains: "unknown pragma")
    }

    func testMisnamedFileNamesIt() throws {
        try assertLoadFails(["en/login.body.mustache": "{{link}}"],
                            fileEndsWith: "/en/login.body.mustache", reasonContains: "unknown template part \"body\"")
        try assertLoadFails(["en/logn.text.mustache": "{{link}}"],
                            fileEndsWith: "/en/logn.text.mustache", reasonContains: "unknown message kind \"logn\"")
        try assertLoadFails(["en/login.mustache": "{{link}}"],
                            fileEndsWith: "/en/login.mustache", reasonContains: "unknown template file name")
    }

    func testTemplateOutsideLocaleFolderOrInBadFolder() throws {
        try assertLoadFails(["login.subject.mustache": "Hi"],
                            fileEndsWith: "/login.subject.mustache", reasonContains: "outside a locale folder")
        try assertLoadFails(["pt_BR/login.subject.mustache": "Oi"],
                            fileEndsWith: "/pt_BR/login.subject.mustache", reasonContains: "not a language tag")
    }

    func testUnknownVariableIsReported() throws {
        try assertLoadFails(["de/login.text.mustache": "Hallo {{lnk}}\n{{link}}\n"],
                            fileEndsWith: "/de/login.text.mustache", reasonContains: "unknown variable \"lnk\"")
        try assertLoadFails(["de/login.subject.mustache": "{{subject}}"],
                            fileEndsWith: "/de/login.subject.mustache", reasonContains: "unknown variable \"subject\"")
    }

    func testBodyWithoutLinkIsRefused() throws {
        try assertLoadFails(["en/login.html.mustache": "<p>Hello</p>"],
                            fileEndsWith: "/en/login.html.mustache", reasonContains: "must show the link")
        try assertLoadFails(["en/login.text.mustache": "{{#one_minute}}{{link}}{{/one_minute}}"],
                            fileEndsWith: "/en/login.text.mustache", reasonContains: "must show the link")
    }

    func testBodyWithoutCodeIsRefused() throws {
        // A v1-style template (link only) cannot serve `start` with send "code" or "both".
        try assertLoadFails(["en/login.text.mustache": "Sign in: {{link}}\n"],
                            fileEndsWith: "/en/login.text.mustache", reasonContains: "must show the code ({{code}})")
        try assertLoadFails(["de/login.html.mustache": "<a href=\"{{link}}\">x</a>{{#send_link}}{{code}}{{/send_link}}"],
                            fileEndsWith: "/de/login.html.mustache", reasonContains: "must show the code")
    }

    func testBuiltInTemplatesShowExactlyWhatTheMailCarries() throws {
        let catalog = try TemplateCatalog()
        let code = "042917"
        for locale in ["en", "pt", "de"] {
            let linkOnly = try catalog.render(.login, locale: locale, link: link, code: nil, appName: "Shop", email: "a@example.com",
                                              expiresAt: now + 600, now: now)
            let codeOnly = try catalog.render(.login, locale: locale, link: nil, code: code, appName: "Shop", email: "a@example.com",
                                              expiresAt: now + 600, now: now)
            let both = try catalog.render(.login, locale: locale, link: link, code: code, appName: "Shop", email: "a@example.com",
                                          expiresAt: now + 600, now: now)
            XCTAssertTrue(linkOnly.text.contains(link) && !linkOnly.text.contains(code), locale)
            XCTAssertTrue(codeOnly.text.contains(code) && !codeOnly.text.contains("http"), "\(locale): \(codeOnly.text)")
            XCTAssertFalse(codeOnly.html.contains("href="), locale)
            XCTAssertTrue(codeOnly.html.contains(">\(code)</p>"), locale)
            XCTAssertTrue(both.text.contains(link) && both.text.contains(code), locale)
            XCTAssertTrue(both.html.contains(code) && both.html.contains("href="), locale)
            XCTAssertFalse(codeOnly.subject.contains(code), "no code in the subject (lock screens show subjects)")
            XCTAssertNotEqual(codeOnly.subject, linkOnly.subject, locale)
            for mail in [linkOnly, codeOnly, both] {
                XCTAssertFalse(mail.text.contains("\n\n\n"), "no stray blank lines from sections: \(mail.text)")
            }
        }
        let en = try catalog.render(.login, locale: "en", link: nil, code: code, appName: "Shop", email: "a@example.com",
                                    expiresAt: now + 600, now: now)
        XCTAssertEqual(en.subject, "Your sign-in code for Shop")
        XCTAssertEqual(en.text, """
            Hello,

            Enter this code on the sign-in page of Shop:

                042917

            It works once and expires in 10 minutes.
            If you did not ask to sign in, you can ignore this email: nobody can sign in without it.

            """)
    }

    func testDuplicateLocaleFolders() throws {
        let dir = try makeTemplateDir(["pt-BR/login.subject.mustache": "a", "pt-br/login.subject.mustache": "b"])
        XCTAssertThrowsError(try TemplateCatalog(directory: dir)) { error in
            XCTAssertTrue((error as? TemplateError)?.reason.contains("same locale pt-br") ?? false, "\(error)")
        }
    }

    func testMissingDirectoryAndInvalidUTF8() throws {
        XCTAssertThrowsError(try TemplateCatalog(directory: "/nonexistent/templates")) { error in
            XCTAssertEqual((error as? TemplateError)?.file, "/nonexistent/templates")
        }
        let dir = try makeTemplateDir([:])
        try Data([0x48, 0xFF, 0x7B, 0x7B]).write(to: URL(fileURLWithPath: dir + "/en-latin1.txt"))
        try FileManager.default.createDirectory(atPath: dir + "/en", withIntermediateDirectories: true)
        try Data([0x48, 0x69, 0xE9, 0x20]).write(to: URL(fileURLWithPath: dir + "/en/login.subject.mustache"))
        XCTAssertThrowsError(try TemplateCatalog(directory: dir)) { error in
            XCTAssertEqual((error as? TemplateError)?.reason, "not valid UTF-8 text")
            XCTAssertEqual((error as? TemplateError)?.file, dir + "/en/login.subject.mustache")
        }
    }

    func testEmptyDirectoryIsJustTheEmbeddedSet() throws {
        let dir = try makeTemplateDir([:])
        let catalog = try TemplateCatalog(directory: dir + "/")
        XCTAssertEqual(catalog.locales, ["de", "en", "pt"])
        XCTAssertEqual(try render(catalog, locale: "de"), try render(try TemplateCatalog(), locale: "de"))
    }

    // MARK: - Subject is one line

    func testSubjectNeverContainsLineBreaks() throws {
        let dir = try makeTemplateDir([
            "en/login.subject.mustache": "\n  Sign in\r\n\tto {{app_name}}\u{2028}now \n\n",
        ])
        let catalog = try TemplateCatalog(directory: dir)
        let mail = try render(catalog, locale: "en", appName: "Evil\r\nBcc: x@example.com\u{85}Shop")
        XCTAssertEqual(mail.subject, "Sign in to Evil Bcc: x@example.com Shop now")
        for forbidden: Character in ["\r", "\n", "\t", "\u{85}", "\u{2028}"] {
            XCTAssertFalse(mail.subject.contains(forbidden))
        }
        XCTAssertTrue(try render(try TemplateCatalog(), locale: "de", appName: "A\nB").subject == "Ihr Anmeldelink für A B")
    }

    // MARK: - Locale tags

    func testNormalizedLocale() {
        XCTAssertEqual(TemplateCatalog.normalizedLocale("en"), "en")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("pt-BR"), "pt-br")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("zh-Hant-TW"), "zh-hant-tw")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("es-419"), "es-419")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("DE"), "de")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("sl-rozaj-biske"), "sl-rozaj-biske")
        XCTAssertEqual(TemplateCatalog.normalizedLocale("ast"), "ast")
        let longest = "en-" + String(repeating: "a1b2c3d4-", count: 3) + "abcde"  // 35 bytes
        XCTAssertEqual(longest.utf8.count, 35)
        XCTAssertEqual(TemplateCatalog.normalizedLocale(longest), longest)

        let forty = "en-abcdefgh-abcdefgh-abcdefgh-abcdefgh-a"
        XCTAssertEqual(forty.utf8.count, 40)
        for bad in ["", "e", "english", "english_US", "pt_BR", "../etc", "en/../..", "en-", "-en", "en--us", "en US",
                    " en", "en\n", "12", "en-abcdefghi", "pt-BR.UTF-8", "ç", "en-ü",
                    forty,
                    String(repeating: "a", count: 2) + String(repeating: "-abc", count: 10)] {  // 42 bytes
            XCTAssertNil(TemplateCatalog.normalizedLocale(bad), "\(bad) should be rejected")
        }
        XCTAssertNil(TemplateCatalog.normalizedLocale("en-" + String(repeating: "a-", count: 16) + "a"), "35+ bytes")
    }

    func testFallbackChain() {
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "pt-BR"), ["pt-br", "pt", "en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: nil), ["en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "en-US"), ["en-us", "en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "zh-Hant-TW"), ["zh-hant-tw", "zh-hant", "zh", "en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "de-CH-x-phonebk"), ["de-ch-x-phonebk", "de-ch", "de", "en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "pt_BR"), ["en"])
        XCTAssertEqual(TemplateCatalog.fallbackChain(for: "../etc"), ["en"])
        XCTAssertEqual(TemplateCatalog.defaultLocale, "en")
    }

    // MARK: - Concurrency

    func testCatalogIsSendableAndRendersConcurrently() async throws {
        let catalog = try TemplateCatalog()
        let link = self.link
        let now = self.now
        let subjects = try await withThrowingTaskGroup(of: String.self) { group in
            for (i, locale) in ["en", "pt", "de", "pt-BR"].enumerated() {
                group.addTask {
                    try catalog.render(.login, locale: locale, link: link, appName: "App \(i)", email: "a@example.com",
                                       expiresAt: now + 600, now: now).subject
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(subjects.count, 4)
    }
}
