/// The words of a login message. Issue 3 replaces this with templates and locales; the
/// structure (subject, text, HTML, escaped variables) stays.
public struct LoginMailContent: Sendable, Equatable {
    public var subject: String
    public var text: String
    public var html: String

    public init(appName: String, link: String, minutesValid: Int64) {
        let minutes = minutesValid == 1 ? "1 minute" : "\(minutesValid) minutes"
        subject = "Your sign-in link for \(appName)"
        text = """
            Hello,

            Use this link to sign in to \(appName):

            \(link)

            The link works once and expires in \(minutes).
            If you did not ask to sign in, you can ignore this email: nobody can sign in without the link.

            """
        let name = htmlEscape(appName)
        let href = htmlEscape(link)
        html = """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>\(htmlEscape(subject))</title></head>
            <body style="font-family: sans-serif; line-height: 1.5">
            <p>Hello,</p>
            <p>Use this link to sign in to \(name):</p>
            <p><a href="\(href)" style="display: inline-block; padding: 10px 18px; background: #2f5bd3; color: #ffffff; text-decoration: none; border-radius: 4px">Sign in to \(name)</a></p>
            <p style="font-size: small">Or paste this address into your browser:<br>\(href)</p>
            <p style="font-size: small">The link works once and expires in \(minutes). If you did not ask to sign in, you can ignore this email: nobody can sign in without the link.</p>
            </body></html>

            """
    }
}

/// Escapes text for HTML element content and attribute values.
public func htmlEscape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}
