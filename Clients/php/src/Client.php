<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Admin\CreateUserResult;
use MagicLink\Admin\DeadLetter;
use MagicLink\Admin\RetryResult;
use MagicLink\Admin\SessionRecord;
use MagicLink\Admin\Status;
use MagicLink\Exception\InvalidArgumentException;
use MagicLink\Exception\MagicLinkException;
use MagicLink\Exception\ProtocolException;
use MagicLink\Exception\RequestTooLargeException;
use MagicLink\Exception\ServerException;
use MagicLink\Internal\Fields;
use MagicLink\Internal\Transport;

/**
 * Client for magiclinkd, the passwordless-login daemon, over its Unix socket.
 *
 *     $client  = new MagicLink\Client();                     // MAGICLINKD_SOCKET or the systemd path
 *     $started = $client->start($email, redirect: '/account', ip: $_SERVER['REMOTE_ADDR']);
 *     // keep $started->flow in a cookie. GET of the link: only peek() (scanners open links too)
 *     // and answer a form that posts the token back; on that POST:
 *     $login = $client->callback($_POST['token'], $_COOKIE['flow']); // set $login->session as the cookie
 *     $info  = $client->session($_COOKIE['session'], ip: $_SERVER['REMOTE_ADDR']);
 *
 * Constructing a Client does not touch the socket; the first call connects, and later calls
 * reuse that connection. Every method throws a MagicLink\Exception\MagicLinkException:
 * a ServerException subclass for an error reply (InvalidTokenException, RateLimitedException,
 * ...), a TransportException subclass when the daemon cannot be reached or does not answer
 * (ConnectionException, TimeoutException, ProtocolException).
 *
 * One Client serves one process: after pcntl_fork() the child notices the new process id and
 * opens its own connection. PHP has no threads to share it with (ext-parallel aside: give each
 * thread its own Client).
 */
final class Client
{
    /** The socket's path under systemd (the package's magiclinkd.socket unit). */
    public const DEFAULT_SOCKET = '/run/magiclinkd/magiclinkd.sock';

    /** start(send:) values. */
    public const SEND_LINK = 'link';
    public const SEND_CODE = 'code';
    public const SEND_BOTH = 'both';

    /** Ops that may be sent again after a connection broke mid-request: they change nothing that matters. */
    private const SAFE_TO_REPEAT = ['hello', 'session', 'peek', 'admin_status', 'admin_sessions', 'admin_dead_letters'];

    private Transport $transport;

    private int $nextId;

    /** The app every op but hello names (params.app), or null to name none. */
    private ?string $app;

    /**
     * @param string|null $socketPath     the daemon's socket; null: the MAGICLINKD_SOCKET environment
     *                                    variable, else /run/magiclinkd/magiclinkd.sock
     * @param float       $connectTimeout seconds to wait for the daemon to accept the connection
     * @param float       $readTimeout    seconds to wait for a reply (sending included); when it runs
     *                                    out the connection is closed and TimeoutException thrown
     * @param bool        $persistent     keep the connection open across requests of a PHP-FPM
     *                                    worker (STREAM_CLIENT_PERSISTENT); see the README
     * @param int         $maxReplyBytes  a longer reply line is a ProtocolException
     * @param string|null $app            the app (of a daemon serving several) that every op but
     *                                    hello names in params.app; null: the MAGICLINKD_APP
     *                                    environment variable, else none (fine for a daemon with
     *                                    one app)
     */
    public function __construct(
        ?string $socketPath = null,
        float $connectTimeout = 1.0,
        float $readTimeout = 5.0,
        bool $persistent = false,
        int $maxReplyBytes = 1_048_576,
        ?string $app = null,
    ) {
        if ($socketPath === null) {
            $env = getenv('MAGICLINKD_SOCKET');
            $socketPath = \is_string($env) && $env !== '' ? $env : self::DEFAULT_SOCKET;
        }
        if ($socketPath === '' || str_contains($socketPath, "\0")) {
            throw new InvalidArgumentException('the socket path must be a non-empty path');
        }
        if (!($connectTimeout > 0) || !($readTimeout > 0) || is_infinite($connectTimeout) || is_infinite($readTimeout)) {
            throw new InvalidArgumentException('timeouts must be positive numbers of seconds');
        }
        if ($maxReplyBytes < 1) {
            throw new InvalidArgumentException('maxReplyBytes must be positive');
        }
        if ($app === null) {
            $env = getenv('MAGICLINKD_APP');
            $app = \is_string($env) && $env !== '' ? $env : null;
        } elseif ($app === '') {
            throw new InvalidArgumentException('the app must be a non-empty app id (or null for none)');
        }
        $this->app = $app;
        $this->transport = new Transport($socketPath, $connectTimeout, $readTimeout, $persistent, $maxReplyBytes);
        // Ids only have to differ between the requests one connection carries. A random start
        // keeps a persistent connection that an earlier request abandoned mid-call from
        // matching that request's late reply to ours.
        $this->nextId = random_int(1, 1 << 40);
    }

    public function socketPath(): string
    {
        return $this->transport->path;
    }

    /** The app this client names in every op but hello, or null when it names none. */
    public function app(): ?string
    {
        return $this->app;
    }

    /** The daemon's name, version, protocol version, ops, line limit and apps. Names no app. */
    public function hello(): ServerInfo
    {
        return ServerInfo::fromFields($this->request('hello', []));
    }

    /**
     * Sends a sign-in link (and/or code) to $email.
     *
     * Keep the returned flow in an HttpOnly, SameSite=Lax cookie of the browser that asked, and
     * pass it to callback(), peek() and verifyCode().
     *
     * @param string      $email     the address as the user typed it
     * @param string|null $redirect  where the user goes after signing in: a path ("/account") or a
     *                               URL on an allowed origin; default "/"
     * @param string|null $ip        the end user's IP address (used for rate limits: pass it)
     * @param string|null $userAgent the end user's User-Agent header
     * @param string|null $locale    a BCP 47 tag choosing the mail's language ("de", "pt-BR")
     * @param string|null $send      self::SEND_LINK (default), self::SEND_CODE or self::SEND_BOTH
     *
     * @throws Exception\InvalidEmailException       not one plain address
     * @throws Exception\RedirectNotAllowedException
     * @throws Exception\RateLimitedException        getRetryAfter() seconds
     * @throws Exception\UnavailableException        e.g. the mail queue is full
     */
    public function start(
        string $email,
        ?string $redirect = null,
        ?string $ip = null,
        ?string $userAgent = null,
        ?string $locale = null,
        ?string $send = null,
    ): StartResult {
        return StartResult::fromFields($this->request('start', [
            'email' => $email,
            'redirect' => $redirect,
            'ip' => $ip,
            'user_agent' => $userAgent,
            'locale' => $locale,
            'send' => $send,
        ]));
    }

    /**
     * Signs the user in with the token from the link ($_GET['token'], as received).
     *
     * @param string|null $flow    the flow from start(), from the browser's cookie
     * @param bool|null   $confirm true once the user confirmed a sign-in that
     *                             ConfirmationRequiredException described
     *
     * @throws Exception\InvalidTokenException         getReason(): "unknown", "expired" or "used"
     * @throws Exception\ConfirmationRequiredException opened without its flow: ask, then confirm
     * @throws Exception\FlowMismatchException         the same, with flow_binding: strict
     */
    public function callback(
        #[\SensitiveParameter] string $token,
        #[\SensitiveParameter] ?string $flow = null,
        ?bool $confirm = null,
        ?string $ip = null,
        ?string $userAgent = null,
    ): Login {
        return Login::fromFields($this->request('callback', [
            'token' => $token,
            'flow' => $flow,
            'confirm' => $confirm,
            'ip' => $ip,
            'user_agent' => $userAgent,
        ]));
    }

    /**
     * Signs the user in with the code from the mail (start() with send: code or both), as typed.
     *
     * @throws Exception\InvalidCodeException  wrong code: getAttemptsLeft()
     * @throws Exception\InvalidTokenException the flow is unknown, or its login expired or was used
     */
    public function verifyCode(
        #[\SensitiveParameter] string $flow,
        #[\SensitiveParameter] string $code,
        ?string $ip = null,
        ?string $userAgent = null,
    ): Login {
        return Login::fromFields($this->request('verify_code', [
            'flow' => $flow,
            'code' => $code,
            'ip' => $ip,
            'user_agent' => $userAgent,
        ]));
    }

    /**
     * Looks at a link without using it (for the link's GET handler: mail scanners open links too).
     */
    public function peek(#[\SensitiveParameter] string $token, #[\SensitiveParameter] ?string $flow = null): PeekResult
    {
        return PeekResult::fromFields($this->request('peek', ['token' => $token, 'flow' => $flow]));
    }

    /**
     * Checks a session (the cookie value) and extends its idle expiry.
     *
     * @param string|null $ip the end user's IP address: the daemon throttles an IP that presents
     *                        many dead sessions (pass it)
     *
     * @throws Exception\InvalidSessionException unknown, logged out or expired
     * @throws Exception\RateLimitedException    too many failed calls from $ip lately
     */
    public function session(#[\SensitiveParameter] string $session, ?string $ip = null): SessionInfo
    {
        return SessionInfo::fromFields($this->request('session', ['session' => $session, 'ip' => $ip]));
    }

    /** Ends a session. Idempotent: an unknown or ended session is fine too. */
    public function logout(#[\SensitiveParameter] string $session): void
    {
        $this->request('logout', ['session' => $session]);
    }

    /** Ends every session of a user; returns how many were live. */
    public function logoutAll(string $userId): int
    {
        return $this->request('logout_all', ['user_id' => $userId])->int('revoked');
    }

    /** Admin (root or admin_uids/admin_gids only): version, uptime, counts. */
    public function adminStatus(): Status
    {
        return Status::fromFields($this->request('admin_status', []));
    }

    /**
     * Admin: a user's live sessions, newest first. Give exactly one of $userId and $email.
     *
     * @return list<SessionRecord>
     */
    public function adminSessions(?string $userId = null, ?string $email = null): array
    {
        $result = $this->request('admin_sessions', ['user_id' => $userId, 'email' => $email]);
        return array_map(SessionRecord::fromFields(...), $result->objects('sessions'));
    }

    /**
     * Admin: ends the session with this handle (or handle prefix, 8-64 hex digits), or else
     * every session of $userId; returns how many were ended.
     *
     * @throws Exception\InvalidRequestException a prefix matching several sessions
     *                                           (getDetails()['matches'])
     */
    public function adminRevoke(?string $handle = null, ?string $userId = null): int
    {
        return $this->request('admin_revoke', ['handle' => $handle, 'user_id' => $userId])->int('revoked');
    }

    /**
     * Admin: mail that was never delivered, newest first ($limit 1-10000, default 100).
     *
     * @return list<DeadLetter>
     */
    public function adminDeadLetters(?int $limit = null): array
    {
        $result = $this->request('admin_dead_letters', ['limit' => $limit]);
        return array_map(DeadLetter::fromFields(...), $result->objects('messages'));
    }

    /** Admin: queues a dead letter again. */
    public function adminRetry(string $messageId): RetryResult
    {
        return RetryResult::fromFields($this->request('admin_retry', ['message_id' => $messageId]));
    }

    /** Admin: deletes expired sessions, old tokens and old mail now; returns the rows removed. */
    public function adminPurge(): int
    {
        return $this->request('admin_purge', [])->int('removed');
    }

    /**
     * Admin: creates the user with this address in this client's app before its first login
     * (the daemon's `signup: existing` mails only such users). An address that already has a
     * user (matched as logins match it) returns that user unchanged, with created false.
     *
     * @throws Exception\InvalidEmailException not one plain address
     */
    public function adminCreateUser(string $email): CreateUserResult
    {
        return CreateUserResult::fromFields($this->request('admin_create_user', ['email' => $email]));
    }

    /**
     * Calls any op: the path every method above takes, for ops this version has no method for.
     * $params are sent as given (a null member counts as absent for the daemon), plus this
     * client's app (for every op but hello) when $params is an array or a \stdClass without an
     * `app` member.
     *
     * @param array<string, mixed>|object $params
     *
     * @return array<array-key, mixed> the result object, decoded to an associative array
     */
    public function call(string $op, #[\SensitiveParameter] array|object $params = []): array
    {
        return $this->send($op, $params);
    }

    /** Closes the connection (a persistent one too). The next call reconnects. */
    public function close(): void
    {
        $this->transport->close();
    }

    /**
     * The connection machinery. Not part of the public API.
     *
     * @internal
     */
    public function transport(): Transport
    {
        return $this->transport;
    }

    /** @return array<string, mixed> */
    public function __debugInfo(): array
    {
        return [
            'socketPath' => $this->transport->path,
            'connectTimeout' => $this->transport->connectTimeout,
            'readTimeout' => $this->transport->readTimeout,
            'persistent' => $this->transport->persistent,
            'app' => $this->app,
            'connected' => $this->transport->isConnected(),
        ];
    }

    /** @param array<string, mixed> $params null members are left out */
    private function request(string $op, #[\SensitiveParameter] array $params): Fields
    {
        $params = array_filter($params, static fn (mixed $value): bool => $value !== null);
        return new Fields($this->send($op, $params), $op . ' result');
    }

    /**
     * Encode → send → decode → result or exception.
     *
     * @param array<array-key, mixed>|object $params
     *
     * @return array<array-key, mixed>
     */
    private function send(string $op, #[\SensitiveParameter] array|object $params): array
    {
        if (\is_array($params) && $params !== [] && array_is_list($params)) {
            throw new InvalidArgumentException('params must be an associative array or an object, not a list');
        }
        if ($this->app !== null && $op !== 'hello') {
            // Every op but hello names its app; an `app` the caller gave (call()) wins.
            if (\is_array($params) && !\array_key_exists('app', $params)) {
                $params = ['app' => $this->app] + $params;
            } elseif ($params instanceof \stdClass && !property_exists($params, 'app')) {
                $params = (object) (['app' => $this->app] + get_object_vars($params));
            }
        }
        $id = $this->nextId++;
        $request = ['id' => $id, 'op' => $op];
        $empty = \is_array($params) ? $params === [] : ($params instanceof \stdClass && get_object_vars($params) === []);
        if (!$empty) {
            $request['params'] = \is_array($params) ? (object) $params : $params;
        }
        try {
            // Invalid UTF-8 (from a form or a cookie) becomes U+FFFD: the daemon then refuses the
            // value as it would any other wrong one (invalid_email, invalid_token, ...).
            $line = json_encode(
                $request,
                JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION
                | JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR,
            );
        } catch (\JsonException $e) {
            throw new InvalidArgumentException(sprintf('%s: params cannot be encoded as JSON: %s', $op, $e->getMessage()));
        }

        $reply = $this->transport->exchange($line, \in_array($op, self::SAFE_TO_REPEAT, true));

        try {
            return $this->decode($op, $id, $reply);
        } catch (ProtocolException | RequestTooLargeException $e) {
            // The daemon closes the connection after request_too_large; after a protocol error
            // we cannot trust what is left on it.
            $this->transport->close();
            throw $e;
        }
    }

    /**
     * @return array<array-key, mixed>
     *
     * @throws MagicLinkException
     */
    private function decode(string $op, int $id, #[\SensitiveParameter] string $line): array
    {
        try {
            $reply = json_decode($line, false, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            // Never quote the line: it may hold a session.
            throw new ProtocolException(sprintf('%s: reply from magiclinkd is not valid JSON; the connection was closed', $op), true);
        }
        if (!$reply instanceof \stdClass || !property_exists($reply, 'ok') || !\is_bool($reply->ok)) {
            throw new ProtocolException(sprintf('%s: reply from magiclinkd is not a protocol reply (no boolean "ok"); the connection was closed', $op), true);
        }
        $replyId = $reply->id ?? null;
        // An error the daemon could not tie to a request (request_too_large) carries id null;
        // with one request in flight it is the answer to ours.
        if ($replyId !== $id && !($replyId === null && $reply->ok === false)) {
            throw new ProtocolException(sprintf('%s: reply from magiclinkd carries the wrong id; the connection was closed', $op), true);
        }

        if ($reply->ok) {
            $result = $reply->result ?? null;
            if (!$result instanceof \stdClass) {
                throw new ProtocolException(sprintf('%s: reply from magiclinkd has no result object; the connection was closed', $op), true);
            }
            return self::toArray($result);
        }

        $error = $reply->error ?? null;
        if (!$error instanceof \stdClass || !\is_string($error->code ?? null)) {
            throw new ProtocolException(sprintf('%s: error reply from magiclinkd has no error code; the connection was closed', $op), true);
        }
        $message = \is_string($error->message ?? null) ? $error->message : '';
        $retryable = ($error->retryable ?? false) === true;
        $details = ($error->details ?? null) instanceof \stdClass ? self::toArray($error->details) : [];
        throw ServerException::fromWire($error->code, $message, $retryable, $details, $op);
    }

    /** @return array<array-key, mixed> */
    private static function toArray(\stdClass $object): array
    {
        $out = [];
        foreach (get_object_vars($object) as $key => $value) {
            $out[$key] = self::convert($value);
        }
        return $out;
    }

    private static function convert(mixed $value): mixed
    {
        if ($value instanceof \stdClass) {
            return self::toArray($value);
        }
        if (\is_array($value)) {
            return array_map(self::convert(...), $value);
        }
        return $value;
    }
}
