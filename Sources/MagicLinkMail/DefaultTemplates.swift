// The mail templates compiled into the binary: English (the default), Portuguese and German.
//
// A `templates_dir` can override any of these files, one by one, or add locales; the layout and
// the rules are in TemplateCatalog.swift. These are plain Mustache (https://mustache.github.io):
//
//   {{link}}        the sign-in link                     {{app_name}}   the app's name
//   {{code}}        the 6-digit sign-in code
//   {{#send_link}}…{{/send_link}}, {{#send_code}}…{{/send_code}}   what this mail carries: the link,
//                   the code or both (`start`'s `send`); a body must show each one it carries
//   {{email}}       the recipient's address              {{locale}}     the locale used, e.g. "pt"
//   {{minutes}}     whole minutes until the link expires {{expires_at}} expiry, Unix seconds
//   {{#one_minute}}…{{/one_minute}}{{^one_minute}}…{{/one_minute}}  singular / plural of minutes
//   {{subject}}     the rendered subject (text and HTML bodies only)
//
// The subject and the text body are plain text: nothing is escaped there (the catalog adds the
// `{{% CONTENT_TYPE: TEXT}}` pragma itself). In the HTML body every `{{variable}}` is
// HTML-escaped, attribute-safe included (`&` → `&amp;`, `"` → `&quot;`). The subject is folded
// onto one line after rendering.

/// The three parts of one kind of message, as Mustache source.
struct TemplateSources: Sendable {
    var subject: String
    var text: String
    var html: String
}

enum DefaultTemplates {
    /// Locale tag (lower-case) → kind → sources. Every kind has an entry for the default locale.
    static let all: [String: [MailKind: TemplateSources]] = [
        "en": [.login: loginEnglish],
        "pt": [.login: loginPortuguese],
        "de": [.login: loginGerman],
    ]

    // MARK: - English (default)

    static let loginEnglish = TemplateSources(
        subject: "{{#send_link}}Your sign-in link{{#send_code}} and code{{/send_code}}{{/send_link}}{{^send_link}}Your sign-in code{{/send_link}} for {{app_name}}",
        text: """
            Hello,
            {{#send_link}}

            Use this link to sign in to {{app_name}}:

            {{link}}
            {{/send_link}}
            {{#send_code}}

            {{#send_link}}Or enter this code on the sign-in page:{{/send_link}}{{^send_link}}Enter this code on the sign-in page of {{app_name}}:{{/send_link}}

                {{code}}
            {{/send_code}}

            It works once and expires in {{#one_minute}}1 minute{{/one_minute}}{{^one_minute}}{{minutes}} minutes{{/one_minute}}.
            If you did not ask to sign in, you can ignore this email: nobody can sign in without it.

            """,
        html: """
            <!DOCTYPE html>
            <html lang="{{locale}}"><head><meta charset="utf-8"><title>{{subject}}</title></head>
            <body style="font-family: sans-serif; line-height: 1.5">
            <p>Hello,</p>
            {{#send_link}}
            <p>Use this link to sign in to {{app_name}}:</p>
            <p><a href="{{link}}" style="display: inline-block; padding: 10px 18px; background: #2f5bd3; color: #ffffff; text-decoration: none; border-radius: 4px">Sign in to {{app_name}}</a></p>
            <p style="font-size: small">Or paste this address into your browser:<br>{{link}}</p>
            {{/send_link}}
            {{#send_code}}
            <p>{{#send_link}}Or enter this code on the sign-in page:{{/send_link}}{{^send_link}}Enter this code on the sign-in page of {{app_name}}:{{/send_link}}</p>
            <p style="font-size: 28px; letter-spacing: 6px; font-family: monospace; font-weight: bold">{{code}}</p>
            {{/send_code}}
            <p style="font-size: small">It works once and expires in {{#one_minute}}1 minute{{/one_minute}}{{^one_minute}}{{minutes}} minutes{{/one_minute}}. If you did not ask to sign in, you can ignore this email: nobody can sign in without it.</p>
            </body></html>

            """
    )

    // MARK: - Portuguese
    //
    // Written to read naturally in Brazil and in Portugal: no "você"/"tu", no "acessar"/"aceder",
    // "e-mail" and "navegador", which both use.

    static let loginPortuguese = TemplateSources(
        subject: "{{#send_link}}O seu link{{#send_code}} e código{{/send_code}} para entrar em {{app_name}}{{/send_link}}{{^send_link}}O seu código para entrar em {{app_name}}{{/send_link}}",
        text: """
            Olá,
            {{#send_link}}

            Use este link para entrar em {{app_name}}:

            {{link}}
            {{/send_link}}
            {{#send_code}}

            {{#send_link}}Ou use este código na página de entrada:{{/send_link}}{{^send_link}}Use este código na página de entrada de {{app_name}}:{{/send_link}}

                {{code}}
            {{/send_code}}

            Só pode ser usado uma vez e expira em {{#one_minute}}1 minuto{{/one_minute}}{{^one_minute}}{{minutes}} minutos{{/one_minute}}.
            Se não pediu para entrar, pode ignorar este e-mail: ninguém consegue entrar sem ele.

            """,
        html: """
            <!DOCTYPE html>
            <html lang="{{locale}}"><head><meta charset="utf-8"><title>{{subject}}</title></head>
            <body style="font-family: sans-serif; line-height: 1.5">
            <p>Olá,</p>
            {{#send_link}}
            <p>Use este link para entrar em {{app_name}}:</p>
            <p><a href="{{link}}" style="display: inline-block; padding: 10px 18px; background: #2f5bd3; color: #ffffff; text-decoration: none; border-radius: 4px">Entrar em {{app_name}}</a></p>
            <p style="font-size: small">Ou copie e cole este endereço no navegador:<br>{{link}}</p>
            {{/send_link}}
            {{#send_code}}
            <p>{{#send_link}}Ou use este código na página de entrada:{{/send_link}}{{^send_link}}Use este código na página de entrada de {{app_name}}:{{/send_link}}</p>
            <p style="font-size: 28px; letter-spacing: 6px; font-family: monospace; font-weight: bold">{{code}}</p>
            {{/send_code}}
            <p style="font-size: small">Só pode ser usado uma vez e expira em {{#one_minute}}1 minuto{{/one_minute}}{{^one_minute}}{{minutes}} minutos{{/one_minute}}. Se não pediu para entrar, pode ignorar este e-mail: ninguém consegue entrar sem ele.</p>
            </body></html>

            """
    )

    // MARK: - German
    //
    // Formal "Sie"; after the salutation "Hallo," the letter goes on in lower case, as German
    // letters do.

    static let loginGerman = TemplateSources(
        subject: "{{#send_link}}Ihr Anmeldelink{{#send_code}} und -code{{/send_code}}{{/send_link}}{{^send_link}}Ihr Anmeldecode{{/send_link}} für {{app_name}}",
        text: """
            Hallo,
            {{#send_link}}

            mit diesem Link melden Sie sich bei {{app_name}} an:

            {{link}}
            {{/send_link}}
            {{#send_code}}

            {{#send_link}}Oder geben Sie diesen Code auf der Anmeldeseite ein:{{/send_link}}{{^send_link}}geben Sie diesen Code auf der Anmeldeseite von {{app_name}} ein:{{/send_link}}

                {{code}}
            {{/send_code}}

            Er kann nur einmal verwendet werden und läuft in {{#one_minute}}einer Minute{{/one_minute}}{{^one_minute}}{{minutes}} Minuten{{/one_minute}} ab.
            Falls Sie keine Anmeldung angefordert haben, können Sie diese E-Mail ignorieren: Ohne ihn kann sich niemand anmelden.

            """,
        html: """
            <!DOCTYPE html>
            <html lang="{{locale}}"><head><meta charset="utf-8"><title>{{subject}}</title></head>
            <body style="font-family: sans-serif; line-height: 1.5">
            <p>Hallo,</p>
            {{#send_link}}
            <p>mit diesem Link melden Sie sich bei {{app_name}} an:</p>
            <p><a href="{{link}}" style="display: inline-block; padding: 10px 18px; background: #2f5bd3; color: #ffffff; text-decoration: none; border-radius: 4px">Bei {{app_name}} anmelden</a></p>
            <p style="font-size: small">Oder kopieren Sie diese Adresse in die Adresszeile Ihres Browsers:<br>{{link}}</p>
            {{/send_link}}
            {{#send_code}}
            <p>{{#send_link}}Oder geben Sie diesen Code auf der Anmeldeseite ein:{{/send_link}}{{^send_link}}geben Sie diesen Code auf der Anmeldeseite von {{app_name}} ein:{{/send_link}}</p>
            <p style="font-size: 28px; letter-spacing: 6px; font-family: monospace; font-weight: bold">{{code}}</p>
            {{/send_code}}
            <p style="font-size: small">Er kann nur einmal verwendet werden und läuft in {{#one_minute}}einer Minute{{/one_minute}}{{^one_minute}}{{minutes}} Minuten{{/one_minute}} ab. Falls Sie keine Anmeldung angefordert haben, können Sie diese E-Mail ignorieren: Ohne ihn kann sich niemand anmelden.</p>
            </body></html>

            """
    )
}
