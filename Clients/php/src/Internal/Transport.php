<?php

declare(strict_types=1);

namespace MagicLink\Internal;

use MagicLink\Exception\ConnectionException;
use MagicLink\Exception\ProtocolException;
use MagicLink\Exception\TimeoutException;

/**
 * One connection to the daemon's Unix socket: connect, send a line, read a line.
 *
 * Not part of the public API (the Client is); the protocol test vectors use exchange() directly
 * for request lines the Client would never produce.
 *
 * @internal
 */
final class Transport
{
    /** @var resource|null */
    private $stream = null;

    /** Bytes read after the last reply line (always empty unless the daemon misbehaves). */
    private string $buffer = '';

    /** The process that opened $stream (a forked child must not use its parent's socket). */
    private int $pid = 0;

    /** A request is on the wire and its reply not read yet. */
    private bool $inFlight = false;

    /** How many connections this transport opened (tests use it to see reconnects). */
    private int $connects = 0;

    /**
     * Which process opened the persistent stream for a socket path. PHP keys persistent streams
     * by address only, and a child created with pcntl_fork() inherits its parent's list: this
     * tells the child that the stream it would get back is its parent's.
     *
     * @var array<string, int>
     */
    private static array $persistentOwners = [];

    public function __construct(
        public readonly string $path,
        public readonly float $connectTimeout,
        public readonly float $readTimeout,
        public readonly bool $persistent,
        public readonly int $maxReplyBytes,
    ) {
        if ($persistent) {
            // A request that dies mid-call (fatal error, max_execution_time) runs no `finally`,
            // but shutdown functions still run: never leave a half-read reply in a persistent
            // socket for the next request of this PHP-FPM worker.
            $self = \WeakReference::create($this);
            register_shutdown_function(static function () use ($self): void {
                $transport = $self->get();
                if ($transport !== null && $transport->inFlight) {
                    $transport->close();
                }
            });
        }
    }

    /**
     * Sends one request line (without its line feed) and returns the reply line (without its
     * line feed or a carriage return before it).
     *
     * A connection found closed or unusable before sending is replaced silently. If it breaks
     * after the request was written, the request is sent once more on a fresh connection when
     * $safeToRepeat, otherwise a ConnectionException says the outcome is unknown.
     */
    public function exchange(#[\SensitiveParameter] string $line, bool $safeToRepeat): string
    {
        for ($attempt = 1; ; $attempt++) {
            $this->ensureConnected();
            try {
                return $this->roundTrip($line);
            } catch (BrokenConnection $broken) {
                // roundTrip() closed the connection already.
                if ($attempt === 1 && (!$broken->sent || $safeToRepeat)) {
                    continue;
                }
                $message = $broken->getMessage();
                if ($broken->sent) {
                    $message .= $safeToRepeat
                        ? ' (also after reconnecting once)'
                        : '; the request had been sent, so whether the daemon carried it out is unknown';
                }
                throw new ConnectionException($message, $broken->sent, $broken);
            }
        }
    }

    /** Closes the connection (a persistent one too). The next exchange() reconnects. */
    public function close(): void
    {
        if (\is_resource($this->stream)) {
            @fclose($this->stream);
        }
        $this->stream = null;
        $this->buffer = '';
        $this->inFlight = false;
    }

    public function isConnected(): bool
    {
        return \is_resource($this->stream);
    }

    /** How many connections were opened so far. */
    public function connectCount(): int
    {
        return $this->connects;
    }

    /** @return resource|null the stream (tests only) */
    public function stream()
    {
        return $this->stream;
    }

    private function ensureConnected(): void
    {
        if ($this->stream !== null) {
            if ($this->pid !== getmypid()) {
                $this->abandonInherited();
            } elseif (!$this->isIdleAndOpen()) {
                // Closed by the daemon (restart, idle close), by another Client sharing the same
                // persistent stream, or holding bytes nobody asked for: nothing was sent yet, so
                // replacing it is safe for any op.
                $this->close();
            }
        }
        if ($this->stream === null) {
            $this->connect();
        }
    }

    /**
     * True when the connection can carry a request: still open, nothing buffered and nothing to
     * read. A daemon never speaks first, so anything readable is either end-of-file (it closed
     * the connection) or a reply to a request whose caller is gone.
     */
    private function isIdleAndOpen(): bool
    {
        if (!\is_resource($this->stream) || $this->buffer !== '') {
            return false;
        }
        $read = [$this->stream];
        $write = null;
        $except = null;
        $ready = @stream_select($read, $write, $except, 0, 0);
        return $ready === 0;
    }

    /**
     * After pcntl_fork() the child holds a copy of its parent's socket. Using it would mix both
     * processes' requests and replies on one connection. close() on the child's copy of the file
     * descriptor leaves the parent's connection alone (PHP does not shutdown() Unix sockets).
     */
    private function abandonInherited(): void
    {
        if (\is_resource($this->stream)) {
            @fclose($this->stream);
        }
        if ($this->persistent && (self::$persistentOwners[$this->path] ?? null) !== getmypid()) {
            unset(self::$persistentOwners[$this->path]);
        }
        $this->stream = null;
        $this->buffer = '';
        $this->inFlight = false;
    }

    private function connect(): void
    {
        $pid = getmypid();
        $address = 'unix://' . $this->path;
        $flags = STREAM_CLIENT_CONNECT;
        if ($this->persistent) {
            $flags |= STREAM_CLIENT_PERSISTENT;
            $owner = self::$persistentOwners[$this->path] ?? null;
            if ($owner !== null && $owner !== $pid) {
                // A forked child: the persistent stream PHP would hand back is the parent's.
                $inherited = @stream_socket_client($address, $errno, $errstr, 0.001, $flags);
                if (\is_resource($inherited)) {
                    @fclose($inherited);
                }
                unset(self::$persistentOwners[$this->path]);
            }
        }

        $deadline = hrtime(true) + self::nanoseconds($this->connectTimeout);
        $pause = 1_000;
        for ($reuseChecked = false; ;) {
            $errno = 0;
            $errstr = '';
            $remaining = max(0.001, ($deadline - hrtime(true)) / 1e9);
            $stream = @stream_socket_client($address, $errno, $errstr, $remaining, $flags);
            if (\is_resource($stream)) {
                if ($this->persistent && !$reuseChecked) {
                    // PHP may hand back this worker's persistent stream from an earlier request:
                    // it checks that the peer did not close it, but not that no stale reply
                    // is waiting in it.
                    $reuseChecked = true;
                    $read = [$stream];
                    $write = null;
                    $except = null;
                    if (@stream_select($read, $write, $except, 0, 0) !== 0) {
                        @fclose($stream);
                        continue;
                    }
                }
                break;
            }
            // Unix sockets do not wait in connect(): a full listen queue (a busy or stopped
            // daemon) fails at once with EAGAIN. Wait and try again until the connect timeout.
            if (self::isWouldBlock($errno, $errstr)) {
                $left = $deadline - hrtime(true);
                if ($left <= 0) {
                    throw new TimeoutException(sprintf(
                        'magiclinkd at %s did not accept the connection within %s s (its listen queue is full)',
                        $this->path,
                        self::seconds($this->connectTimeout),
                    ));
                }
                usleep((int) min($pause, intdiv($left, 1000) + 1));
                $pause = min($pause * 2, 50_000);
                continue;
            }
            throw new ConnectionException(self::describeConnectError($this->path, $errno, $errstr));
        }

        stream_set_blocking($stream, false);
        @stream_set_read_buffer($stream, 0);
        $this->stream = $stream;
        $this->buffer = '';
        $this->pid = $pid;
        $this->connects++;
        if ($this->persistent) {
            self::$persistentOwners[$this->path] = $pid;
        }
    }

    private function roundTrip(#[\SensitiveParameter] string $line): string
    {
        $deadline = hrtime(true) + self::nanoseconds($this->readTimeout);
        $done = false;
        $this->inFlight = true;
        try {
            $this->write($line . "\n", $deadline);
            $reply = $this->readLine($deadline);
            $this->inFlight = false;
            $done = true;
            return $reply;
        } finally {
            if (!$done) {
                // Whatever interrupted us (timeout, broken pipe, a signal handler's exception),
                // this connection's state is unknown: never reuse it.
                $this->close();
            }
        }
    }

    private function write(#[\SensitiveParameter] string $data, int $deadline): void
    {
        $sent = 0;
        $length = \strlen($data);
        while ($sent < $length) {
            error_clear_last();
            $written = @fwrite($this->stream, $sent === 0 ? $data : substr($data, $sent));
            if ($written === false) {
                throw new BrokenConnection(
                    'the connection to magiclinkd broke while sending' . self::lastError(),
                    $sent > 0,
                );
            }
            if ($written > 0) {
                $sent += $written;
                continue;
            }
            $this->waitFor('write', $deadline, $sent > 0);
        }
    }

    private function readLine(int $deadline): string
    {
        while (true) {
            $end = strpos($this->buffer, "\n");
            if ($end !== false) {
                if ($end > $this->maxReplyBytes) {
                    throw new ProtocolException($this->tooLong(), true);
                }
                $line = substr($this->buffer, 0, $end);
                $this->buffer = (string) substr($this->buffer, $end + 1);
                return str_ends_with($line, "\r") ? substr($line, 0, -1) : $line;
            }
            if (\strlen($this->buffer) > $this->maxReplyBytes) {
                throw new ProtocolException($this->tooLong(), true);
            }
            error_clear_last();
            $chunk = @fread($this->stream, 65536);
            if ($chunk === false) {
                throw new BrokenConnection('reading from magiclinkd failed' . self::lastError(), true);
            }
            if ($chunk !== '') {
                $this->buffer .= $chunk;
                continue;
            }
            if (feof($this->stream)) {
                throw new BrokenConnection(
                    $this->buffer === ''
                        ? 'magiclinkd closed the connection before replying'
                        : 'magiclinkd closed the connection in the middle of a reply',
                    true,
                );
            }
            $this->waitFor('read', $deadline, true);
        }
    }

    /** Waits until the stream is readable or writable, or throws TimeoutException at $deadline. */
    private function waitFor(string $what, int $deadline, bool $sent): void
    {
        $left = $deadline - hrtime(true);
        if ($left > 0) {
            $streams = [$this->stream];
            $none = null;
            $except = null;
            $micro = intdiv($left, 1000) + 1;
            error_clear_last();
            $ready = $what === 'read'
                ? @stream_select($streams, $none, $except, intdiv($micro, 1_000_000), $micro % 1_000_000)
                : @stream_select($none, $streams, $except, intdiv($micro, 1_000_000), $micro % 1_000_000);
            if ($ready === false) {
                // A signal (SIGCHLD, a pcntl handler) interrupted the wait: wait again.
                if (str_contains(self::lastError(), 'Interrupted system call')) {
                    return;
                }
                throw new BrokenConnection('waiting for magiclinkd failed' . self::lastError(), $sent);
            }
            if ($ready > 0 || hrtime(true) < $deadline) {
                return;
            }
        }
        throw new TimeoutException(
            sprintf('no reply from magiclinkd within the read timeout of %s s', self::seconds($this->readTimeout))
            . ($sent ? '; the connection was closed' : ''),
            $sent,
        );
    }

    private function tooLong(): string
    {
        return sprintf('reply from magiclinkd is longer than %d bytes; the connection was closed', $this->maxReplyBytes);
    }

    private static function isWouldBlock(int $errno, string $errstr): bool
    {
        // EAGAIN is 11 on Linux, 35 on the BSDs and macOS.
        return $errno === 11 || $errno === 35 || stripos($errstr, 'temporarily unavailable') !== false;
    }

    private static function describeConnectError(string $path, int $errno, string $errstr): string
    {
        $reason = $errstr !== '' ? $errstr : ($errno !== 0 ? 'error ' . $errno : 'unknown error');
        $hint = match (true) {
            $errno === 2 => ' (is magiclinkd running? is MAGICLINKD_SOCKET right?)',
            $errno === 13 => ' (the socket\'s group must include this user, e.g. www-data)',
            $errno === 111 || $errno === 61 => ' (a socket file is there but nothing listens: is magiclinkd running?)',
            default => '',
        };
        return sprintf('cannot connect to magiclinkd at %s: %s%s', $path, $reason, $hint);
    }

    private static function lastError(): string
    {
        $error = error_get_last();
        if ($error === null) {
            return '';
        }
        // "fwrite(): Send of 23 bytes failed with errno=32 Broken pipe" → "errno=32 Broken pipe"
        $message = $error['message'];
        if (preg_match('/errno=\d+ .*$/', $message, $m) === 1) {
            $message = $m[0];
        }
        return ': ' . $message;
    }

    private static function nanoseconds(float $seconds): int
    {
        return (int) round($seconds * 1e9);
    }

    private static function seconds(float $seconds): string
    {
        return rtrim(rtrim(sprintf('%.3f', $seconds), '0'), '.');
    }
}
