<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Exception\InvalidTokenException;
use MagicLink\Exception\ProtocolException;
use MagicLink\Exception\TimeoutException;
use MagicLink\Login;
use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\FakeServer;
use MagicLink\Tests\Support\Mail;

/** Tokens and session ids never show up in exception messages, traces or debug output. */
final class SecretsTest extends DaemonTestCase
{
    /** Everything a developer might print about a result object or the client. */
    private static function renderings(object $value): string
    {
        ob_start();
        var_dump($value);
        return ob_get_clean() . print_r($value, true) . json_encode($value);
    }

    /**
     * What gets logged about an exception: message and trace (string arguments are cut to 15
     * characters there, so look for the secret's first 12), also of the previous exception.
     */
    private static function assertExceptionHides(string $secret, \Throwable $e): void
    {
        $shown = '';
        for ($x = $e; $x !== null; $x = $x->getPrevious()) {
            $shown .= $x->getMessage() . "\n" . $x->getTraceAsString() . "\n" . $x;
            foreach ($x->getTrace() as $frame) {
                $shown .= json_encode($frame['args'] ?? [], JSON_PARTIAL_OUTPUT_ON_ERROR);
            }
        }
        self::assertStringNotContainsString(substr($secret, 0, 12), $shown);
    }

    private function withTraceArguments(callable $fn): mixed
    {
        // Traces keep call arguments unless zend.exception_ignore_args is on (production
        // php.ini); test the worse case. #[\SensitiveParameter] (PHP 8.2) must hide them.
        $old = ini_set('zend.exception_ignore_args', '0');
        try {
            return $fn();
        } finally {
            ini_set('zend.exception_ignore_args', (string) $old);
        }
    }

    public function testLoginHidesTheSession(): void
    {
        $client = new Client(self::$daemon->socket);
        $email = 'secret-login@example.com';
        $started = $client->start($email, ip: '192.0.2.80');
        $token = Mail::waitForToken(self::$daemon, $email);
        $login = $client->callback($token, $started->flow);

        $shownStart = self::renderings($started);
        self::assertStringNotContainsString($started->flow, $shownStart);
        self::assertStringContainsString('[redacted]', $shownStart);

        self::assertInstanceOf(Login::class, $login);
        $shown = self::renderings($login);
        self::assertStringNotContainsString($login->session, $shown);
        self::assertStringContainsString('[redacted]', $shown);
        self::assertStringContainsString($email, $shown, 'the rest is still shown');
        self::assertStringNotContainsString($token, self::renderings($client));
    }

    public function testServerErrorsDoNotCarryTheSecret(): void
    {
        $client = new Client(self::$daemon->socket);
        $secret = 'Sx' . bin2hex(random_bytes(20));
        $this->withTraceArguments(function () use ($client, $secret): void {
            foreach ([
                fn () => $client->session($secret),
                fn () => $client->callback($secret, ip: '192.0.2.81'),
                fn () => $client->callback('Tx' . bin2hex(random_bytes(20)), $secret),
                fn () => $client->verifyCode($secret, '123456'),
                fn () => $client->call('session', ['session' => $secret]),
            ] as $call) {
                try {
                    $call();
                    self::fail('a made-up secret was accepted');
                } catch (InvalidSessionException | InvalidTokenException $e) {
                    self::assertExceptionHides($secret, $e);
                }
            }
        });
    }

    public function testTransportErrorsDoNotCarryTheSecret(): void
    {
        $secret = 'Sx' . bin2hex(random_bytes(20));

        // A reply that breaks off after "session":"SECRET..." is not JSON: the message must not
        // quote it.
        $garbage = new FakeServer('garbage');
        try {
            $this->withTraceArguments(function () use ($garbage): void {
                try {
                    (new Client($garbage->socket))->hello();
                    self::fail('garbage accepted');
                } catch (ProtocolException $e) {
                    self::assertExceptionHides('SECRETsecretSECRETsecret', $e);
                }
            });
        } finally {
            $garbage->stop();
        }

        // A timeout while sending a session: the message names the timeout, not the request.
        $silent = new FakeServer('silent');
        try {
            $this->withTraceArguments(function () use ($silent, $secret): void {
                try {
                    (new Client($silent->socket, readTimeout: 0.2))->session($secret);
                    self::fail('no timeout');
                } catch (TimeoutException $e) {
                    self::assertExceptionHides($secret, $e);
                }
            });
        } finally {
            $silent->stop();
        }
    }
}
