<?php

// Passwordless login with magiclinkd, in plain PHP: the whole app is this file.
//
//   GET  /               login form (or straight to /account when signed in)
//   POST /login          start(): mail a sign-in link and code, keep the flow in a cookie,
//                        "Check your email" with a form for the code
//   GET  /auth/callback  the link was opened: peek() only, never callback() (mail scanners open
//                        links too). A page that posts the token back: by itself in the browser
//                        that asked, after "Sign in as a***@example.com?" anywhere else
//   POST /auth/callback  that form: callback() signs in
//   POST /auth/code      the code form: verifyCode() signs in
//   GET  /account        session(): the protected page
//   POST /logout         logout(): end the session, clear the cookie
//
// Run it with ./run (PHP's built-in server, with public/index.php as the router).

declare(strict_types=1);

require __DIR__ . '/../../../Clients/php/autoload.php'; // with Composer: vendor/autoload.php

use MagicLink\Client;
use MagicLink\Exception\ConfirmationRequiredException;
use MagicLink\Exception\FlowMismatchException;
use MagicLink\Exception\InvalidCodeException;
use MagicLink\Exception\InvalidEmailException;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Exception\InvalidTokenException;
use MagicLink\Exception\MagicLinkException;
use MagicLink\Exception\RateLimitedException;
use MagicLink\Exception\TransportException;
use MagicLink\Exception\UnavailableException;
use MagicLink\Login;
use MagicLink\SessionInfo;

const SESSION_COOKIE = 'magiclink_session';
const FLOW_COOKIE = 'magiclink_flow';
// Submits the link's form in the browser that asked for the link (allowed by the CSP's hash).
const AUTO_SUBMIT = 'document.forms[0].submit()';
// Our routes and their methods (for 405 answers).
const ROUTES = ['/' => 'GET, HEAD', '/login' => 'POST', '/auth/callback' => 'GET, HEAD, POST', '/auth/code' => 'POST', '/account' => 'GET, HEAD', '/logout' => 'POST'];

// The socket comes from MAGICLINKD_SOCKET (../with-daemon exports it). Constructing the client
// does not connect; the first call does.
$magiclink = new Client(readTimeout: 5.0);

// The app's public URL (../with-daemon exports it) decides the cookies' Secure flag and which
// Origin a form post may come from; never trust request headers for either.
$appOrigin = origin((string) getenv('APP_URL'));
$https = str_starts_with((string) $appOrigin, 'https://');

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
$method = $_SERVER['REQUEST_METHOD'] === 'HEAD' ? 'GET' : $_SERVER['REQUEST_METHOD']; // PHP drops HEAD bodies
$clientIp = $_SERVER['REMOTE_ADDR'] ?? null;          // behind a proxy: the address it forwards
$userAgent = $_SERVER['HTTP_USER_AGENT'] ?? null;

header_remove('X-Powered-By');
header('Cache-Control: no-store');
// Referer headers carry at most the origin, never the link's token. Not no-referrer: with it,
// browsers send "Origin: null" on form posts, which the Origin check below would refuse.
header('Referrer-Policy: strict-origin');
header('X-Content-Type-Options: nosniff');
header(sprintf(
    "Content-Security-Policy: default-src 'none'; script-src 'sha256-%s'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    base64_encode(hash('sha256', AUTO_SUBMIT, true)),
));

try {
    if ($appOrigin === null) {
        throw new LogicException('APP_URL must be set to the app\'s public URL, e.g. http://127.0.0.1:8000');
    }
    match (true) {
        // A form on another site must not post here (login CSRF, forced logout). Browsers send
        // Origin with every POST; a request without it is not a browser's cross-site form.
        $method === 'POST' && isset($_SERVER['HTTP_ORIGIN']) && origin($_SERVER['HTTP_ORIGIN']) !== $appOrigin
            => page(403, 'Forbidden', '<p>This form was not sent from this site. <a href="/">Start over</a></p>'),
        $path === '/' && $method === 'GET' => home($magiclink, $clientIp, $https),
        $path === '/login' && $method === 'POST' => login($magiclink, $clientIp, $userAgent, $https),
        $path === '/auth/callback' && $method === 'GET' => openLink($magiclink),
        $path === '/auth/callback' && $method === 'POST' => signInWithLink($magiclink, $clientIp, $userAgent, $https),
        $path === '/auth/code' && $method === 'POST' => signInWithCode($magiclink, $clientIp, $userAgent, $https),
        $path === '/account' && $method === 'GET' => account($magiclink, $clientIp, $https),
        $path === '/logout' && $method === 'POST' => logout($magiclink, $https),
        isset(ROUTES[$path]) => methodNotAllowed(ROUTES[$path]),
        default => page(404, 'Not found', '<p>There is nothing here. <a href="/">Sign in</a></p>'),
    };
} catch (RateLimitedException $e) {
    // Too many failed links, codes or sessions from this address (the daemon's failure throttle).
    tooManyRequests($e, '<p><a href="/">Back</a></p>');
} catch (TransportException | UnavailableException $e) {
    // The daemon is down, busy or did not answer in time. Its messages never hold secrets.
    error_log('magiclink: ' . $e->getMessage());
    page(503, 'Try again in a moment', '<p>Sign-in is unavailable right now. Please try again in a moment.</p>');
} catch (MagicLinkException | LogicException $e) {
    error_log('magiclink: ' . $e->getMessage());
    page(500, 'Something went wrong', '<p>Something went wrong on our side. <a href="/">Start over</a></p>');
}

function home(Client $magiclink, ?string $ip, bool $https): void
{
    if (currentSession($magiclink, $ip, $https) !== null) {
        redirect('/account');
        return;
    }
    page(200, 'Sign in', loginForm());
}

function login(Client $magiclink, ?string $ip, ?string $userAgent, bool $https): void
{
    $email = is_string($_POST['email'] ?? null) ? trim($_POST['email']) : '';
    try {
        $started = $magiclink->start($email, redirect: '/account', ip: $ip, userAgent: $userAgent, send: Client::SEND_BOTH);
    } catch (InvalidEmailException) {
        page(400, 'Sign in', loginForm($email, 'Please enter a valid email address, like name@example.com.'));
        return;
    } catch (RateLimitedException $e) {
        tooManyRequests($e, loginForm($email));
        return;
    }
    // The flow ties the link and the code to this browser: the link opened here signs in
    // without a question, and only this browser can use the code.
    sendCookie(FLOW_COOKIE, $started->flow, $started->expiresAt, $https);
    $minutes = max(1, (int) round(($started->expiresAt - time()) / 60));
    page(200, 'Check your email', sprintf(
        '<h1>Check your email</h1><p>We sent a sign-in link and a 6-digit code to <strong>%s</strong>. '
        . 'They work once, for %d minutes.</p>%s<p><a href="/">Use another address</a></p>',
        h($email),
        $minutes,
        codeForm(),
    ));
}

/** GET of the link: look, never sign in (a mail scanner or a link preview may be the one asking). */
function openLink(Client $magiclink): void
{
    $token = formValue($_GET, 'token');
    if ($token === null) {
        invalidLink();
        return;
    }
    $link = $magiclink->peek($token, cookie(FLOW_COOKIE));
    if (!$link->valid) {
        invalidLink(); // unknown, expired, replaced by a newer link, or used
    } elseif ($link->flowMatches) {
        // The browser that asked: post the token back at once (the button is there without JS).
        page(200, 'Signing in', '<h1>Signing you in…</h1>' . linkForm($token, false, 'Continue')
            . '<script>' . AUTO_SUBMIT . '</script>');
    } else {
        confirmPage($token, (string) $link->emailMasked);
    }
}

/** POST of the link's form: the only place the link is used. */
function signInWithLink(Client $magiclink, ?string $ip, ?string $userAgent, bool $https): void
{
    $token = formValue($_POST, 'token');
    if ($token === null) {
        invalidLink();
        return;
    }
    try {
        $login = $magiclink->callback(
            $token,
            cookie(FLOW_COOKIE),
            confirm: formValue($_POST, 'confirm') === '1',
            ip: $ip,
            userAgent: $userAgent,
        );
    } catch (InvalidTokenException) {
        invalidLink();
        return;
    } catch (ConfirmationRequiredException $e) {
        // Opened outside the browser that asked and not confirmed yet (or an auto-submitted form
        // from someone else's link): ask first.
        confirmPage($token, (string) $e->getEmailMasked());
        return;
    } catch (FlowMismatchException) {
        // flow_binding: strict: only the browser that asked may use the link.
        page(400, 'Wrong browser', '<h1>Wrong browser</h1><p>Please open the link in the browser where '
            . 'you asked for it, or <a href="/">ask for a new link</a> here.</p>');
        return;
    }
    signedIn($login, $https);
}

/** POST of the code form: the 6 digits from the mail, for this browser's flow. */
function signInWithCode(Client $magiclink, ?string $ip, ?string $userAgent, bool $https): void
{
    $flow = cookie(FLOW_COOKIE);
    if ($flow === null) {
        page(400, 'Sign in', '<h1>No sign-in in progress</h1><p>A code works only in the browser where you '
            . 'asked for it, for 10 minutes. <a href="/">Ask for a new code</a></p>');
        return;
    }
    $code = formValue($_POST, 'code') ?? '';
    if (preg_match('/^[0-9]{6}$/', str_replace([' ', '-'], '', $code)) !== 1) {
        page(400, 'Enter the code', '<h1>Enter the code</h1>' . codeForm('Please enter the 6 digits from the email.'));
        return;
    }
    try {
        $login = $magiclink->verifyCode($flow, $code, ip: $ip, userAgent: $userAgent);
    } catch (InvalidCodeException $e) {
        $left = $e->getAttemptsLeft();
        page(400, 'Wrong code', '<h1>Wrong code</h1>' . codeForm($left > 0
            ? sprintf('That code is not right: %d %s left.', $left, $left === 1 ? 'attempt' : 'attempts')
            : 'That code no longer works: ask for a new code.')
            . '<p><a href="/">Ask for a new code</a></p>');
        return;
    } catch (InvalidTokenException) {
        page(400, 'Code expired', '<h1>Code invalid or expired</h1><p>This sign-in has expired or was '
            . 'already used. <a href="/">Ask for a new code</a></p>');
        return;
    }
    signedIn($login, $https);
}

function signedIn(Login $login, bool $https): void
{
    sendCookie(SESSION_COOKIE, $login->session, $login->expiresAt, $https);
    clearCookie(FLOW_COOKIE, $https);
    // Already checked by the daemon: a local path, or a URL on an allowed origin.
    redirect($login->redirect);
}

function account(Client $magiclink, ?string $ip, bool $https): void
{
    $info = currentSession($magiclink, $ip, $https);
    if ($info === null) {
        redirect('/');
        return;
    }
    page(200, 'Your account', sprintf(
        '<h1>Signed in as %s</h1><p>Your session ends on %s UTC, or after a week without visits.</p>'
        . '<form method="post" action="/logout"><button type="submit">Sign out</button></form>',
        h($info->user->email),
        gmdate('j M Y, H:i', $info->expiresAt),
    ));
}

function logout(Client $magiclink, bool $https): void
{
    $session = cookie(SESSION_COOKIE);
    clearCookie(SESSION_COOKIE, $https);
    if ($session !== null) {
        $magiclink->logout($session); // idempotent
    }
    redirect('/');
}

/** The signed-in user's session, or null (no cookie, or a dead one, which is then cleared). */
function currentSession(Client $magiclink, ?string $ip, bool $https): ?SessionInfo
{
    $session = cookie(SESSION_COOKIE);
    if ($session === null) {
        return null;
    }
    try {
        // With the ip, the daemon throttles an address that tries many made-up sessions.
        return $magiclink->session($session, ip: $ip);
    } catch (InvalidSessionException) {
        clearCookie(SESSION_COOKIE, $https); // logged out or expired
        return null;
    }
}

function invalidLink(): void
{
    page(400, 'Invalid link', '<h1>This link is invalid or expired</h1><p>A link works once, for 10 '
        . 'minutes, and only the newest one sent to an address.</p><p><a href="/">Request a new link</a></p>');
}

function confirmPage(string $token, string $emailMasked): void
{
    page(200, 'Confirm sign-in', sprintf(
        '<h1>Sign in as %s?</h1><p>This link was requested in another browser or on another device. '
        . 'Continue only if you asked for it.</p>%s<p><a href="/">Cancel</a></p>',
        h($emailMasked),
        linkForm($token, true, 'Continue'),
    ));
}

function tooManyRequests(RateLimitedException $e, string $body): void
{
    header('Retry-After: ' . $e->getRetryAfter());
    page(429, 'Too many requests', sprintf(
        '<p class="error" role="alert">Too many attempts. Please try again in %d seconds.</p>',
        $e->getRetryAfter(),
    ) . $body);
}

function methodNotAllowed(string $allow): void
{
    header('Allow: ' . $allow);
    page(405, 'Method not allowed', '<p>Method not allowed. <a href="/">Home</a></p>');
}

function formValue(array $from, string $name): ?string
{
    $value = $from[$name] ?? null;
    return is_string($value) && $value !== '' ? $value : null;
}

function cookie(string $name): ?string
{
    return formValue($_COOKIE, $name);
}

/** Our cookies: HttpOnly, SameSite=Lax, Secure over HTTPS; written by hand for exact attributes. */
function sendCookie(string $name, string $value, int $expiresAt, bool $https): void
{
    // Sessions and flows are 43 base64url characters: no encoding needed.
    header(sprintf(
        'Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax%s; Expires=%s; Max-Age=%d',
        $name,
        $value,
        $https ? '; Secure' : '',
        gmdate('D, d M Y H:i:s \\G\\M\\T', $expiresAt),
        max(0, $expiresAt - time()),
    ), false);
}

function clearCookie(string $name, bool $https): void
{
    header(sprintf('Set-Cookie: %s=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax%s', $name, $https ? '; Secure' : ''), false);
}

/** "scheme://host[:port]" of a URL, lower case, default port left out; null if it is not one. */
function origin(string $url): ?string
{
    $parts = parse_url($url);
    $scheme = strtolower($parts['scheme'] ?? '');
    if (!in_array($scheme, ['http', 'https'], true) || !isset($parts['host']) || $parts['host'] === '') {
        return null;
    }
    $port = $parts['port'] ?? null;
    $default = $scheme === 'https' ? 443 : 80;
    return $scheme . '://' . strtolower($parts['host']) . ($port !== null && $port !== $default ? ':' . $port : '');
}

function loginForm(string $email = '', ?string $error = null): string
{
    return '<h1>Sign in</h1>'
        . ($error !== null ? '<p class="error" role="alert">' . h($error) . '</p>' : '')
        . '<form method="post" action="/login">'
        . '<label for="email">Email address</label> '
        . '<input type="email" id="email" name="email" required autocomplete="email" autofocus value="' . h($email) . '"> '
        . '<button type="submit">Email me a sign-in link</button>'
        . '</form>'
        . '<p>No password: we email you a link (and a code) that signs you in.</p>';
}

function codeForm(?string $error = null): string
{
    return ($error !== null ? '<p class="error" role="alert">' . h($error) . '</p>' : '')
        . '<form method="post" action="/auth/code">'
        . '<label for="code">Or enter the code from the email</label> '
        . '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required size="8"> '
        . '<button type="submit">Sign in</button>'
        . '</form>';
}

/** The form that uses the link: the only way to sign in with it is a POST. */
function linkForm(string $token, bool $confirm, string $button): string
{
    return '<form method="post" action="/auth/callback">'
        . '<input type="hidden" name="token" value="' . h($token) . '">'
        . ($confirm ? '<input type="hidden" name="confirm" value="1">' : '')
        . '<button type="submit">' . h($button) . '</button>'
        . '</form>';
}

function redirect(string $location): void
{
    header('Location: ' . $location, true, 303);
}

function page(int $status, string $title, string $body): void
{
    http_response_code($status);
    header('Content-Type: text/html; charset=utf-8');
    echo '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<title>', h($title), ' · magiclinkd PHP example</title>',
        '<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}',
        '.error{color:#a00}input,button{font-size:1rem;padding:.3rem .5rem}</style></head><body>',
        $body,
        '</body></html>';
}

function h(string $text): string
{
    return htmlspecialchars($text, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}
