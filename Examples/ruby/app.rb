# frozen_string_literal: true

# A tiny passwordless login with magiclinkd, on WEBrick (Debian: ruby-webrick).
# Start it with ./run, which starts a daemon beside it; see README.md.
#
#   GET  /               login form (or 303 to /account when signed in)
#   POST /login          start: mail a link and a code, set the flow cookie -> "Check your email" + code form
#   GET  /auth/callback  peek: never signs in (mail scanners open links) -> a form that POSTs the token
#   POST /auth/callback  callback: token + flow cookie -> session cookie, 303 to the redirect
#   POST /auth/code      verify_code: code + flow cookie -> session cookie, 303 to the redirect
#   GET  /account        session: who is signed in
#   POST /logout         logout -> cookie cleared, 303 to /

$LOAD_PATH.unshift(File.expand_path("../../Clients/ruby/lib", __dir__)) # no install step
require "magiclinkd"
require "webrick"
require "erb"
require "time"
require "uri"

HOST = ENV.fetch("HOST", "127.0.0.1")
PORT = Integer(ENV.fetch("PORT", "8000"))
APP_URL = ENV.fetch("APP_URL", "http://#{HOST}:#{PORT}").chomp("/")
SESSION_COOKIE = "magiclink_session"
FLOW_COOKIE = "magiclink_flow"
SECURE_COOKIE = APP_URL.start_with?("https://")

# scheme://host[:port] of a URL, lower-cased, default port left out (nil if it has none).
def origin_of(url)
  uri = URI.parse(url)
  return nil unless uri.is_a?(URI::HTTP) && uri.host

  port = uri.port == uri.default_port ? "" : ":#{uri.port}"
  "#{uri.scheme.downcase}://#{uri.host.downcase}#{port}"
rescue URI::Error
  nil
end
APP_ORIGIN = origin_of(APP_URL) or abort("APP_URL is not an http(s) URL: #{APP_URL}")

# The routes. One instance serves every request (WEBrick runs each in its own thread).
class App
  ROUTES = {
    "/" => { "GET" => :home },
    "/login" => { "POST" => :login },
    "/auth/callback" => { "GET" => :link_opened, "POST" => :callback },
    "/auth/code" => { "POST" => :code },
    "/account" => { "GET" => :account },
    "/logout" => { "POST" => :logout }
  }.freeze

  def initialize(magiclink)
    @magiclink = magiclink
  end

  def call(req, res)
    # The link page's URL holds the token: send no Referer to other sites. Not "no-referrer": under
    # it browsers send "Origin: null" with the page's own POSTs, which the Origin check refuses.
    res["Referrer-Policy"] = "same-origin"
    res["X-Content-Type-Options"] = "nosniff"
    methods = ROUTES[req.path]
    if methods.nil?
      page(res, 404, "Not found", '<p><a href="/">Home</a></p>')
    elsif !(handler = methods[req.request_method])
      res["Allow"] = methods.keys.join(", ")
      page(res, 405, "Method not allowed", '<p><a href="/">Home</a></p>')
    elsif req.request_method == "POST" && !same_origin?(req)
      # Login CSRF and forced logout from other sites: browsers send Origin with every POST.
      page(res, 403, "Forbidden", "<p>This form was sent from another site.</p>")
    else
      send(handler, req, res)
    end
  rescue Magiclinkd::RateLimited => e
    too_many(res, e)
  rescue Magiclinkd::TransportError, Magiclinkd::Unavailable => e
    warn "magiclinkd unavailable: #{e.class}: #{e.message}" # messages carry no secrets
    page(res, 503, "Try again soon", "<p>Sign-in is unavailable right now. Please try again in a moment.</p>")
  rescue StandardError => e
    warn "error in #{req.request_method} #{req.path}: #{e.class}"
    page(res, 500, "Something went wrong", "<p>Something went wrong. Please try again.</p>")
  ensure
    # The path only (the query holds the token), printable ASCII only.
    warn "#{req.request_method} #{req.path.b.gsub(/[^\x20-\x7e]/n, '?')} #{res.status}"
  end

  private

  # -- request helpers ----------------------------------------------------------------------

  # No Origin header (old browsers, curl) is let through; any other origin is refused.
  def same_origin?(req)
    origin = req["Origin"]
    origin.nil? || origin_of(origin) == APP_ORIGIN
  end

  # Form and query values arrive as raw bytes: read them as UTF-8, dropping invalid bytes.
  def param(req, name)
    value = req.query[name]
    value && value.to_s.dup.force_encoding(Encoding::UTF_8).scrub("").strip
  end

  def client_ip(req)
    req.peeraddr[3] # the TCP peer; behind a reverse proxy, use the address it forwards instead
  end

  def user_agent(req)
    req["User-Agent"]&.dup&.force_encoding(Encoding::UTF_8)&.scrub
  end

  def cookie(req, name)
    value = req.cookies.find { |c| c.name == name }&.value
    value.nil? || value.empty? ? nil : value
  end

  # -- responses ----------------------------------------------------------------------------

  def h(text)
    ERB::Util.html_escape(text.to_s)
  end

  # HttpOnly (no script reads it), SameSite=Lax (not sent with other sites' POSTs), Secure on https.
  def set_cookie(res, name, value, expires_at)
    cookie = +"#{name}=#{value}; Path=/; Expires=#{Time.at(expires_at).httpdate}; " \
              "Max-Age=#{[expires_at - Time.now.to_i, 0].max}; HttpOnly; SameSite=Lax"
    cookie << "; Secure" if SECURE_COOKIE
    res.cookies << cookie
  end

  def clear_cookie(res, name)
    res.cookies << "#{name}=; Max-Age=0; Path=/"
  end

  # The login is done: the session cookie replaces the flow cookie.
  def signed_in(res, login)
    set_cookie(res, SESSION_COOKIE, login.session, login.expires_at)
    clear_cookie(res, FLOW_COOKIE)
    redirect(res, login.redirect) # validated by the daemon: a local path or an allowed origin
  end

  def redirect(res, location)
    res.status = 303
    res["Location"] = location
    res.request_uri = nil # else WEBrick makes it absolute with the request's Host header
    res.body = ""
  end

  def page(res, status, title, body)
    res.status = status
    res["Content-Type"] = "text/html; charset=utf-8"
    res["Cache-Control"] = "no-store"
    res.body = <<~HTML
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8"><title>#{h title}</title>
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <style>body{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em;line-height:1.5}
      .error{color:#b00020}</style></head>
      <body><h1>#{h title}</h1>
      #{body}
      </body></html>
    HTML
  end

  def error_line(message)
    message ? %(<p class="error">#{h message}</p>) : ""
  end

  def login_page(res, status, email: "", error: nil)
    page(res, status, "Sign in", <<~HTML)
      #{error_line(error)}
      <form method="post" action="/login">
        <label>Email address <input type="email" name="email" value="#{h email}" required autofocus></label>
        <button type="submit">Email me a sign-in link</button>
      </form>
    HTML
  end

  def code_form(error: nil)
    <<~HTML
      #{error_line(error)}
      <form method="post" action="/auth/code">
        <label>Code <input name="code" inputmode="numeric" autocomplete="one-time-code" size="8" required autofocus></label>
        <button type="submit">Sign in</button>
      </form>
    HTML
  end

  def code_page(res, status, error)
    page(res, status, "Enter your code", "#{code_form(error: error)}<p><a href=\"/\">Get a new code</a></p>")
  end

  # The page of GET /auth/callback: a form that POSTs the token back. Scanners fetch the GET
  # and stop there; a browser submits the form (by itself when it is the one that asked).
  def continue_page(res, token, email_masked: nil, auto: false)
    confirm = auto ? "" : %(<input type="hidden" name="confirm" value="1">)
    form = %(<form method="post" action="/auth/callback"><input type="hidden" name="token" value="#{h token}">) +
           %(#{confirm}<button type="submit">Continue</button></form>)
    if auto
      page(res, 200, "Signing you in", "#{form}\n<script>document.forms[0].submit()</script>")
    else
      page(res, 200, "Sign in as #{email_masked}?", <<~HTML.chomp)
        <p>This sign-in link was asked for in another browser or on another device. Continue only if
        you asked for it: sign in as <strong>#{h email_masked}</strong>?</p>
        #{form}
      HTML
    end
  end

  def invalid_link(res)
    page(res, 400, "Link invalid or expired",
         '<p>This link is invalid or expired (each link works once, for a few minutes).</p>' \
         '<p><a href="/">Get a new link</a></p>')
  end

  def too_many(res, error)
    res["Retry-After"] = error.retry_after.to_s
    page(res, 429, "Too many attempts", "<p>Too many attempts. Please try again in #{error.retry_after} seconds.</p>")
  end

  # -- routes -------------------------------------------------------------------------------

  # GET /
  def home(req, res)
    if (sid = cookie(req, SESSION_COOKIE))
      begin
        @magiclink.session(sid, ip: client_ip(req))
        return redirect(res, "/account")
      rescue Magiclinkd::InvalidSession
        clear_cookie(res, SESSION_COOKIE)
      end
    end
    login_page(res, 200)
  end

  # POST /login
  def login(req, res)
    email = param(req, "email").to_s
    return login_page(res, 400, error: "Please enter your email address.") if email.empty?

    started = @magiclink.start(email, send: "both", redirect: "/account", ip: client_ip(req),
                                      user_agent: user_agent(req))
    set_cookie(res, FLOW_COOKIE, started.flow, started.expires_at)
    minutes = [(started.expires_at - Time.now.to_i + 59) / 60, 1].max
    page(res, 200, "Check your email", <<~HTML)
      <p>Check your email: we sent a sign-in link and a code to <strong>#{h email}</strong>.
      Open the link, or type the code here. Both work once, within #{minutes} minutes.</p>
      #{code_form}
      <p><a href="/">Use another address</a></p>
    HTML
  rescue Magiclinkd::InvalidEmail
    login_page(res, 400, email: email, error: "That does not look like an email address.")
  rescue Magiclinkd::RateLimited => e
    res["Retry-After"] = e.retry_after.to_s
    login_page(res, 429, email: email,
                         error: "Too many sign-in requests. Please try again in #{e.retry_after} seconds.")
  end

  # GET /auth/callback?token=… — looks at the link without using it.
  def link_opened(req, res)
    token = param(req, "token")
    return invalid_link(res) if token.nil? || token.empty?

    peeked = @magiclink.peek(token, flow: cookie(req, FLOW_COOKIE))
    return invalid_link(res) unless peeked.valid?

    continue_page(res, token, email_masked: peeked.email_masked, auto: peeked.flow_matches?)
  end

  # POST /auth/callback (token, confirm=1 after "Sign in as …?")
  def callback(req, res)
    token = param(req, "token")
    return invalid_link(res) if token.nil? || token.empty?

    login = @magiclink.callback(token, flow: cookie(req, FLOW_COOKIE), confirm: param(req, "confirm") == "1",
                                       ip: client_ip(req), user_agent: user_agent(req))
    signed_in(res, login)
  rescue Magiclinkd::ConfirmationRequired => e
    continue_page(res, token, email_masked: e.email_masked)
  rescue Magiclinkd::FlowMismatch
    page(res, 400, "Open the link in the same browser",
         "<p>Please open the link in the browser where you asked for it.</p><p><a href=\"/\">Get a new link</a></p>")
  rescue Magiclinkd::InvalidToken
    invalid_link(res)
  end

  # POST /auth/code (code)
  def code(req, res)
    flow = cookie(req, FLOW_COOKIE)
    unless flow
      return page(res, 400, "Start again",
                  '<p>This browser has no sign-in in progress.</p><p><a href="/">Get a new code</a></p>')
    end
    typed = param(req, "code").to_s
    return code_page(res, 400, "Please enter the 6 digits from the email.") if typed.empty?

    signed_in(res, @magiclink.verify_code(flow, typed, ip: client_ip(req), user_agent: user_agent(req)))
  rescue Magiclinkd::InvalidCode => e
    left = e.attempts_left.to_i
    message = if left.zero?
                "That code is not right, and no attempts are left: please ask for a new code."
              else
                "That code is not right: #{left} #{left == 1 ? 'attempt' : 'attempts'} left."
              end
    code_page(res, 400, message)
  rescue Magiclinkd::InvalidRequest
    code_page(res, 400, "The code is the 6 digits from the email.")
  rescue Magiclinkd::InvalidToken
    page(res, 400, "Code expired",
         '<p>This code is expired or was already used.</p><p><a href="/">Get a new code</a></p>')
  end

  # GET /account
  def account(req, res)
    sid = cookie(req, SESSION_COOKIE) or return redirect(res, "/")
    info = @magiclink.session(sid, ip: client_ip(req))
    page(res, 200, "Your account", <<~HTML)
      <p>Signed in as #{h info.user.email}</p>
      <form method="post" action="/logout"><button type="submit">Sign out</button></form>
    HTML
  rescue Magiclinkd::InvalidSession
    clear_cookie(res, SESSION_COOKIE)
    redirect(res, "/")
  end

  # POST /logout
  def logout(req, res)
    sid = cookie(req, SESSION_COOKIE)
    @magiclink.logout(sid) if sid
    clear_cookie(res, SESSION_COOKIE)
    redirect(res, "/")
  end
end

# No access log: it would print the query string of /auth/callback, which holds the token.
server = WEBrick::HTTPServer.new(BindAddress: HOST, Port: PORT, AccessLog: [],
                                 Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN))

# One client for the whole app: it is thread-safe (calls share one connection). The socket
# comes from MAGICLINKD_SOCKET, which ../with-daemon sets.
magiclink = Magiclinkd::Client.new
app = App.new(magiclink)
server.mount_proc("/") { |req, res| app.call(req, res) }
%w[INT TERM].each { |signal| trap(signal) { server.shutdown } }
warn "example app listening on #{APP_URL}/"
server.start
magiclink.close
