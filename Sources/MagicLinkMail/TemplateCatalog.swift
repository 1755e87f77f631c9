// Localized mail templates: embedded defaults (DefaultTemplates.swift), optionally overridden or
// extended from a directory, resolved by locale fallback, rendered with swift-mustache.
//
// Directory layout (`templates_dir`):
//
//     <dir>/<locale>/<kind>.subject.mustache   one line after rendering (plain text)
//     <dir>/<locale>/<kind>.text.mustache      text/plain body
//     <dir>/<locale>/<kind>.html.mustache      text/html body; {{variables}} are HTML-escaped
//
// `<locale>` is a language tag such as `en`, `pt`, `pt-br` (case-insensitive); a folder for a locale
// that is not embedded adds it. Each file overrides the same file of that locale; a part missing
// for a locale is taken from the next locale of the fallback chain (`pt-br` → `pt` → `en`), the
// directory's file first, then the embedded one. Everything is parsed and checked when the catalog
// is created, so a mistake stops the daemon at start with the file's name.

import Mustache

/// A template that cannot be loaded or used: which file (nil when not about one) and why.
public struct TemplateError: Error, Sendable, CustomStringConvertible {
    public var file: String?
    public var reason: String

    public init(file: String?, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String {
        if let file { return "\(file): \(reason)" }
        return reason
    }
}

/// A message rendered in one locale.
public struct RenderedMail: Sendable, Equatable {
    public var subject: String
    public var text: String
    public var html: String
    /// The locale whose templates were used (the most specific one of the chain that has any).
    public var locale: String

    public init(subject: String, text: String, html: String, locale: String) {
        self.subject = subject
        self.text = text
        self.html = html
        self.locale = locale
    }
}

/// The kinds of message the daemon sends; each has a subject, a text and an HTML template.
public enum MailKind: String, Sendable, CaseIterable {
    case login
}

/// The three templates of a kind; the raw value is the part's name in file names.
enum TemplatePart: String, Sendable, CaseIterable {
    case subject, text, html

    var isPlainText: Bool { self != .html }
}

/// Templates by kind and locale: embedded defaults, optionally overridden from a directory.
public struct TemplateCatalog: Sendable {
    public static let defaultLocale = "en"

    /// A parsed template and where it came from (a file path, or "embedded en/login.text").
    struct Compiled: Sendable {
        var template: MustacheTemplate  // Sendable: swift-mustache's templates are immutable values
        var origin: String
    }

    /// kind → locale → part → template, directory files already laid over the embedded ones.
    private let table: [MailKind: [String: [TemplatePart: Compiled]]]

    /// Loads the embedded templates and, when `directory` is given, the overrides in it. Throws
    /// (naming the file) for a template that does not parse, uses an unknown variable, or — for
    /// a text or HTML body — does not show the link; and for a misnamed `.mustache` file.
    public init(directory: String? = nil) throws(TemplateError) {
        var table: [MailKind: [String: [TemplatePart: Compiled]]] = [:]
        for (locale, kinds) in DefaultTemplates.all {
            for (kind, sources) in kinds {
                for part in TemplatePart.allCases {
                    let source: String
                    switch part {
                    case .subject: source = sources.subject
                    case .text: source = sources.text
                    case .html: source = sources.html
                    }
                    let origin = "embedded \(locale)/\(kind.rawValue).\(part.rawValue).mustache"
                    table[kind, default: [:]][locale, default: [:]][part] =
                        try Self.compile(source, kind: kind, part: part, origin: origin)
                }
            }
        }
        if let directory {
            let contents = try TemplateFiles.load(directory: directory)
            for (locale, kinds) in contents.files {
                for (kind, parts) in kinds {
                    for (part, file) in parts {
                        table[kind, default: [:]][locale, default: [:]][part] =
                            try Self.compile(file.source, kind: kind, part: part, origin: file.path)
                    }
                }
            }
        }
        for kind in MailKind.allCases {
            for part in TemplatePart.allCases where table[kind]?[Self.defaultLocale]?[part] == nil {
                // Cannot happen with the embedded set; guards against an incomplete edit of it.
                throw TemplateError(file: nil, reason: "no \(Self.defaultLocale) template for \(kind.rawValue).\(part.rawValue)")
            }
        }
        self.table = table
    }

    /// The locales it has (embedded + directory), sorted.
    public var locales: [String] {
        var all = Set<String>()
        for byLocale in table.values { all.formUnion(byLocale.keys) }
        return all.sorted()
    }

    /// Renders `kind` for the best match of `locale` (nil → default).
    ///
    /// `minutes` is the time from `now` to `expiresAt` in whole minutes, rounded up, at least 1.
    /// The subject comes out as one line: line breaks, tabs and other control characters become
    /// spaces, runs of spaces one space, and it is trimmed.
    public func render(
        _ kind: MailKind, locale: String?, link: String?, code: String? = nil, appName: String, email: String,
        expiresAt: Int64, now: Int64
    ) throws(TemplateError) -> RenderedMail {
        let chain = Self.fallbackChain(for: locale)
        guard let byLocale = table[kind],
            let resolved = chain.first(where: { byLocale[$0] != nil })
        else {
            throw TemplateError(file: nil, reason: "no template for \(kind.rawValue)")
        }
        func template(_ part: TemplatePart) throws(TemplateError) -> Compiled {
            for candidate in chain {
                if let compiled = byLocale[candidate]?[part] { return compiled }
            }
            throw TemplateError(file: nil, reason: "no \(part.rawValue) template for \(kind.rawValue)")
        }

        let minutes = Self.wholeMinutes(from: now, to: expiresAt)
        var values: [String: Any] = [
            "link": link ?? "",
            "code": code ?? "",
            "send_link": link != nil,
            "send_code": code != nil,
            "app_name": appName,
            "email": email,
            "minutes": minutes,
            "one_minute": minutes == 1,
            "expires_at": expiresAt,
            "locale": resolved,
        ]
        let subject = Self.oneLine(try template(.subject).template.render(values))
        values["subject"] = subject
        let textTemplate = try template(.text)
        let text = textTemplate.template.render(values)
        let html = try template(.html).template.render(values)
        // Checked at load for every mode and plural form; kept as a last guard against a mail
        // without what it is for.
        if kind == .login, let link, !text.contains(link) {
            throw TemplateError(file: textTemplate.origin, reason: "the rendered text body does not contain the link")
        }
        if kind == .login, let code, !text.contains(code) {
            throw TemplateError(file: textTemplate.origin, reason: "the rendered text body does not contain the code")
        }
        return RenderedMail(subject: subject, text: text, html: html, locale: resolved)
    }

    /// "pt-BR" → ["pt-br", "pt", "en"]; nil → ["en"]
    ///
    /// RFC 4647 lookup order: drop the last subtag (and a single-letter subtag left at the end)
    /// until only the language is left, then the default locale. An invalid tag gives ["en"].
    public static func fallbackChain(for locale: String?) -> [String] {
        guard let locale, let tag = normalizedLocale(locale) else { return [defaultLocale] }
        var chain: [String] = []
        var subtags = tag.split(separator: "-")
        while !subtags.isEmpty {
            chain.append(subtags.joined(separator: "-"))
            subtags.removeLast()
            while let last = subtags.last, last.count == 1 { subtags.removeLast() }
        }
        if !chain.contains(defaultLocale) { chain.append(defaultLocale) }
        return chain
    }

    /// A syntactically valid BCP 47 language tag (language 2–3 letters, optional script/region/variants, each subtag 1–8 alphanumerics, total ≤ 35 bytes), lower-cased; nil when not valid.
    public static func normalizedLocale(_ tag: String) -> String? {
        let bytes = Array(tag.utf8)
        guard !bytes.isEmpty, bytes.count <= 35 else { return nil }
        func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z") }
        func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
        let subtags = bytes.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
        guard let language = subtags.first, (2...3).contains(language.count), language.allSatisfy(isLetter) else {
            return nil
        }
        for subtag in subtags.dropFirst() {
            guard (1...8).contains(subtag.count), subtag.allSatisfy({ isLetter($0) || isDigit($0) }) else { return nil }
        }
        return String(decoding: bytes.map { isLetter($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    // MARK: - Internals

    /// The variables every template may use; `subject` only in the bodies.
    static let variableNames: Set<String> = ["link", "code", "send_link", "send_code", "app_name", "email", "minutes", "one_minute",
                                             "expires_at", "locale", "subject"]

    /// Whole minutes from `now` until `expiresAt`, rounded up, at least 1 (no overflow).
    static func wholeMinutes(from now: Int64, to expiresAt: Int64) -> Int64 {
        let (remaining, overflow) = expiresAt.subtractingReportingOverflow(now)
        if overflow { return now < expiresAt ? Int64.max / 60 : 1 }
        if remaining <= 0 { return 1 }
        return remaining / 60 + (remaining % 60 == 0 ? 0 : 1)
    }

    /// One header-safe line: runs of spaces and control characters (CR, LF, tab, NEL…) and the
    /// Unicode line/paragraph separators become one space; leading and trailing ones go.
    static func oneLine(_ text: String) -> String {
        var out = ""
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            let breaking = scalar == " " || scalar.properties.generalCategory == .control
                || scalar == "\u{2028}" || scalar == "\u{2029}"
            if breaking {
                pendingSpace = !out.isEmpty
                continue
            }
            if pendingSpace {
                out += " "
                pendingSpace = false
            }
            out.unicodeScalars.append(scalar)
        }
        return out
    }

    /// Parses one template and checks it: known variables only and, for login bodies, the link
    /// shown whichever plural form is taken. Plain-text parts get the TEXT content type put in
    /// front, so that authors need not remember it (nothing is escaped in them).
    static func compile(_ source: String, kind: MailKind, part: TemplatePart, origin: String) throws(TemplateError) -> Compiled {
        let prefix = part.isPlainText ? "{{% CONTENT_TYPE: TEXT}}\n" : ""  // a standalone tag: leaves no blank line
        let template: MustacheTemplate
        do {
            template = try MustacheTemplate(string: prefix + source)
        } catch let error as MustacheTemplate.ParserError {
            let line = error.context.lineNumber - (prefix.isEmpty ? 0 : 1)
            var reason = "line \(line), column \(error.context.columnNumber): \(describe(error.error))"
            let text = error.context.line.trimmingSuffix(while: { $0 == " " || $0 == "\t" })
            if !text.isEmpty { reason += " (in: \(text.count > 80 ? String(text.prefix(77)) + "..." : text))" }
            throw TemplateError(file: origin, reason: reason)
        } catch {
            throw TemplateError(file: origin, reason: "cannot parse: \(error)")
        }

        let sampleLink = "https://example.invalid/auth/callback?token=SAMPLE-TOKEN"
        let sampleCode = "246813"
        for (sendLink, sendCode) in [(true, false), (false, true), (true, true)] {
          for oneMinute in [true, false] {
            let probe = VariableProbe(values: [
                "link": sendLink ? sampleLink : "", "code": sendCode ? sampleCode : "",
                "send_link": sendLink, "send_code": sendCode, "app_name": "Example", "email": "someone@example.invalid",
                "minutes": Int64(oneMinute ? 1 : 10), "one_minute": oneMinute, "expires_at": Int64(1_800_000_000),
                "locale": "en", "subject": "Subject",
            ].filter { part != .subject || $0.key != "subject" })
            let output = template.render(probe)
            if let unknown = probe.unknown.first {
                let known = variableNames.subtracting(part == .subject ? ["subject"] : []).sorted().joined(separator: ", ")
                throw TemplateError(file: origin, reason: "unknown variable \"\(unknown)\" (known: \(known))")
            }
            if kind == .login && part != .subject && sendLink && !output.contains(sampleLink) {
                throw TemplateError(
                    file: origin,
                    reason: "the \(part.rawValue) body must show the link ({{link}}) whenever send_link is set,"
                        + " whether or not one_minute is set")
            }
            if kind == .login && part != .subject && sendCode && !output.contains(sampleCode) {
                throw TemplateError(
                    file: origin,
                    reason: "the \(part.rawValue) body must show the code ({{code}}) whenever send_code is set"
                        + " (mails for `start` with send \"code\" or \"both\"), whether or not one_minute is set")
            }
          }
        }
        return Compiled(template: template, origin: origin)
    }

    private static func describe(_ error: Error) -> String {
        guard let error = error as? MustacheTemplate.Error else {
            // The parser's own "overflow": the text ended in the middle of a tag.
            return "\(error)" == "overflow" ? "the template ends inside a tag (a }} is missing)" : "\(error)"
        }
        switch error {
        case .sectionCloseNameIncorrect: return "a section is closed with another name than it was opened with"
        case .unfinishedName: return "a tag is not closed with }} or its name has characters other than letters, digits, . - _"
        case .expectedSectionEnd: return "a section is never closed: {{#name}} or {{^name}} needs a {{/name}}"
        case .invalidSetDelimiter: return "malformed set-delimiter tag {{=<% %>=}}"
        case .transformAppliedToInheritanceSection, .illegalTokenInsideInheritSection, .textInsideInheritSection:
            return "malformed template inheritance ({{<parent}} / {{$block}})"
        case .invalidConfigVariableSyntax: return "malformed pragma: write {{% CONTENT_TYPE: TEXT}} or {{% CONTENT_TYPE: HTML}}"
        case .unrecognisedConfigVariable: return "unknown pragma or content type: only {{% CONTENT_TYPE: TEXT}} and {{% CONTENT_TYPE: HTML}}"
        }
    }
}

extension String {
    fileprivate func trimmingSuffix(while drop: (Character) -> Bool) -> String {
        var copy = self
        while let last = copy.last, drop(last) { copy.removeLast() }
        return copy
    }
}

/// Render-time stand-in for the variables that records the names a template asks for and
/// does not exist, so that `{{lnk}}` is reported at load instead of rendering as nothing.
/// Used by one render on one thread, then dropped.
private final class VariableProbe: MustacheParent {
    let values: [String: Any]
    var unknown: [String] = []

    init(values: [String: Any]) { self.values = values }

    func child(named name: String) -> Any? {
        if let value = values[name] { return value }
        if !unknown.contains(name) { unknown.append(name) }
        return nil
    }
}
