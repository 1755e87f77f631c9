<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

/** Reads the login mails a daemon wrote to its Maildir outbox. */
final class Mail
{
    /**
     * Waits (bounded) until $count mails to $address are in the outbox and returns the token
     * of the newest one (whose link must start with $callbackUrl, by default Daemon::CALLBACK_URL).
     */
    public static function waitForToken(Daemon $daemon, string $address, int $count = 1, float $timeout = 15.0, ?string $callbackUrl = null): string
    {
        return self::token(self::waitFor($daemon, $address, $count, $timeout), $callbackUrl);
    }

    /** The same for the 6-digit code of the newest mail. */
    public static function waitForCode(Daemon $daemon, string $address, int $count = 1, float $timeout = 15.0): string
    {
        return self::code(self::waitFor($daemon, $address, $count, $timeout));
    }

    /** Waits (bounded) until $count mails to $address are there; returns the newest, raw. */
    public static function waitFor(Daemon $daemon, string $address, int $count = 1, float $timeout = 15.0): string
    {
        $deadline = microtime(true) + $timeout;
        while (true) {
            $mails = self::mailsTo($daemon, $address);
            if (\count($mails) >= $count) {
                return end($mails);
            }
            if (microtime(true) > $deadline) {
                throw new \RuntimeException(sprintf(
                    "%d mail(s) to %s expected in %s within %.0f s, found %d\n%s",
                    $count,
                    $address,
                    $daemon->outbox(),
                    $timeout,
                    \count($mails),
                    $daemon->log(),
                ));
            }
            usleep(20_000);
        }
    }

    /** @return list<string> raw messages to $address, oldest first */
    public static function mailsTo(Daemon $daemon, string $address): array
    {
        $found = [];
        foreach (['new', 'cur'] as $sub) {
            foreach (glob($daemon->outbox() . '/' . $sub . '/*') ?: [] as $file) {
                $raw = (string) file_get_contents($file);
                [$headers] = explode("\n\n", str_replace("\r\n", "\n", $raw), 2) + [1 => ''];
                if (preg_match('/^To:\s*(.*)$/mi', $headers, $m) === 1 && strcasecmp(trim($m[1]), $address) === 0) {
                    $found[filemtime($file) . ' ' . $file] = $raw;
                }
            }
        }
        ksort($found, SORT_NATURAL);
        return array_values($found);
    }

    /** The token of the link in the text part; the link must start with $callbackUrl (default Daemon::CALLBACK_URL). */
    public static function token(string $raw, ?string $callbackUrl = null): string
    {
        $callbackUrl ??= Daemon::CALLBACK_URL;
        $text = self::text($raw);
        if (preg_match('~[?&]token=([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])~', $text, $t) !== 1) {
            throw new \RuntimeException('no login link found in the mail');
        }
        if (!str_contains($text, $callbackUrl . '?token=' . $t[1])) {
            throw new \RuntimeException("the link does not start with the callback URL {$callbackUrl}");
        }
        return $t[1];
    }

    /** The 6-digit code in the text part (on a line of its own). */
    public static function code(string $raw): string
    {
        if (preg_match('/^\s*(\d{6})\s*$/m', self::text($raw), $c) !== 1) {
            throw new \RuntimeException('no code found in the mail');
        }
        return $c[1];
    }

    /** The text/plain part, transfer encoding undone. */
    public static function text(string $raw): string
    {
        $raw = str_replace("\r\n", "\n", $raw);
        [$headers, $body] = explode("\n\n", $raw, 2) + [1 => ''];
        if (preg_match('/boundary="?([^";\n]+)"?/i', $headers, $m) === 1) {
            foreach (explode('--' . $m[1], $body) as $part) {
                [$partHeaders, $partBody] = explode("\n\n", ltrim($part, "\n"), 2) + [1 => ''];
                if (stripos($partHeaders, 'text/plain') !== false) {
                    return self::decode($partHeaders, $partBody);
                }
            }
            throw new \RuntimeException('no text/plain part in the mail');
        }
        return self::decode($headers, $body);
    }

    private static function decode(string $headers, string $body): string
    {
        if (preg_match('/^Content-Transfer-Encoding:\s*quoted-printable/mi', $headers) === 1) {
            return quoted_printable_decode($body);
        }
        if (preg_match('/^Content-Transfer-Encoding:\s*base64/mi', $headers) === 1) {
            return (string) base64_decode($body);
        }
        return $body;
    }
}
