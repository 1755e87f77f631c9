<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Admin\DeadLetter;
use MagicLink\Admin\SessionCacheCounts;
use MagicLink\Admin\SessionRecord;
use MagicLink\Client;
use MagicLink\Exception\ConfirmationRequiredException;
use MagicLink\Exception\FlowMismatchException;
use MagicLink\Exception\InvalidCodeException;
use MagicLink\Exception\InvalidEmailException;
use MagicLink\Exception\InvalidRequestException;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Exception\InvalidTokenException;
use MagicLink\Exception\MagicLinkException;
use MagicLink\Exception\RateLimitedException;
use MagicLink\Exception\RedirectNotAllowedException;
use MagicLink\Exception\ServerException;
use MagicLink\Login;
use MagicLink\PeekResult;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\Mail;

/** Whole logins against a real daemon: mail in the outbox, the link's token, the session. */
final class FlowTest extends DaemonTestCase
{
    private Client $client;

    /** No cooldown between two starts for one address, so that a test can replace a link; the hourly cap (5) stays. */
    protected static function daemonEnvironment(): array
    {
        return ['MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN' => '0', 'MAGICLINKD_RATE_LIMIT_EMAIL_MAX' => '5'];
    }

    protected function setUp(): void
    {
        $this->client = new Client(self::$daemon->socket);
    }

    private function login(string $email, string $ip, ?string $redirect = '/account'): Login
    {
        $before = \count(Mail::mailsTo(self::$daemon, $email));
        $started = $this->client->start($email, redirect: $redirect, ip: $ip, userAgent: 'FlowTest/1.0');
        self::assertGreaterThan(time(), $started->expiresAt);
        $token = Mail::waitForToken(self::$daemon, $email, $before + 1);
        return $this->client->callback($token, $started->flow, ip: $ip, userAgent: 'FlowTest/1.0');
    }

    public function testFullLoginFlow(): void
    {
        $hello = $this->client->hello();
        self::assertSame('magiclinkd', $hello->server);
        self::assertSame(1, $hello->protocol);
        self::assertTrue($hello->supports('callback'));
        self::assertSame(65536, $hello->maxLineBytes);

        $email = 'flow-alice@example.com';
        $started = $this->client->start($email, redirect: '/account', ip: '192.0.2.1', userAgent: 'FlowTest/1.0');
        self::assertGreaterThan(time(), $started->expiresAt);
        self::assertLessThanOrEqual(time() + 600 + 5, $started->expiresAt);
        self::assertMatchesRegularExpression('/^[A-Za-z0-9_-]{43}$/', $started->flow);

        $token = Mail::waitForToken(self::$daemon, $email);
        self::assertMatchesRegularExpression('/^[A-Za-z0-9_-]{43}$/', $token);

        $login = $this->client->callback($token, $started->flow, ip: '192.0.2.1', userAgent: 'FlowTest/1.0');
        self::assertMatchesRegularExpression('/^[A-Za-z0-9_-]{43}$/', $login->session);
        self::assertSame('/account', $login->redirect);
        self::assertSame($email, $login->user->email);
        self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/', $login->user->id);
        self::assertGreaterThan(time(), $login->expiresAt);
        self::assertGreaterThan(time(), $login->idleExpiresAt);
        self::assertLessThanOrEqual($login->expiresAt, $login->idleExpiresAt);

        $info = $this->client->session($login->session);
        self::assertSame($login->user->id, $info->user->id);
        self::assertSame($email, $info->user->email);
        self::assertSame($login->expiresAt, $info->expiresAt);

        // Replaying the link: used.
        try {
            $this->client->callback($token, $started->flow);
            self::fail('a used token was accepted');
        } catch (InvalidTokenException $e) {
            self::assertSame('used', $e->getReason());
            self::assertSame('invalid_token', $e->getErrorCode());
            self::assertFalse($e->isRetryable());
        }

        $this->client->logout($login->session);
        $this->client->logout($login->session); // idempotent

        $this->expectException(InvalidSessionException::class);
        $this->client->session($login->session);
    }

    public function testSameUserIdOnSecondLoginAndLogoutAll(): void
    {
        $first = $this->login('flow-bob@example.com', '192.0.2.2');
        $second = $this->login('Flow-Bob@Example.com', '192.0.2.2');
        self::assertSame($first->user->id, $second->user->id);
        self::assertSame('flow-bob@example.com', $second->user->email, 'email stays as first seen');

        self::assertSame(2, $this->client->logoutAll($first->user->id));
        self::assertSame(0, $this->client->logoutAll($first->user->id));
        foreach ([$first, $second] as $login) {
            try {
                $this->client->session($login->session);
                self::fail('session still valid after logoutAll');
            } catch (InvalidSessionException) {
                $this->addToAssertionCount(1);
            }
        }
    }

    public function testNewerStartReplacesTheOlderLink(): void
    {
        $email = 'flow-carol@example.com';
        $first = $this->client->start($email, ip: '192.0.2.3');
        $old = Mail::waitForToken(self::$daemon, $email, 1);
        $second = $this->client->start($email, ip: '192.0.2.3');
        $new = Mail::waitForToken(self::$daemon, $email, 2);
        self::assertNotSame($old, $new);
        self::assertNotSame($first->flow, $second->flow);

        try {
            $this->client->callback($old, $first->flow);
            self::fail('a replaced token was accepted');
        } catch (InvalidTokenException $e) {
            self::assertSame('expired', $e->getReason());
        }
        $login = $this->client->callback($new, $second->flow);
        self::assertSame('/', $login->redirect, 'redirect defaults to /');
    }

    public function testUnknownTokenReason(): void
    {
        try {
            $this->client->callback(str_repeat('A', 43));
            self::fail('an unknown token was accepted');
        } catch (InvalidTokenException $e) {
            self::assertSame(InvalidTokenException::REASON_UNKNOWN, $e->getReason());
            self::assertInstanceOf(ServerException::class, $e);
            self::assertInstanceOf(MagicLinkException::class, $e);
        }
    }

    public function testSixthStartForOneAddressIsRateLimited(): void
    {
        $email = 'flow-rate@example.com';
        for ($i = 1; $i <= 5; $i++) {
            $this->client->start($email, ip: '198.51.100.' . $i);
        }
        try {
            $this->client->start($email, ip: '198.51.100.6');
            self::fail('the 6th start within the window was accepted');
        } catch (RateLimitedException $e) {
            self::assertTrue($e->isRetryable());
            self::assertGreaterThan(0, $e->getRetryAfter());
            self::assertLessThanOrEqual(3600, $e->getRetryAfter());
            self::assertSame($e->getDetails()['retry_after_s'], $e->getRetryAfter());
        }
    }

    public function testCooldownBetweenTwoStartsForOneAddress(): void
    {
        $daemon = Daemon::start(['MAGICLINKD_RATE_LIMIT_EMAIL_COOLDOWN' => '60']);
        try {
            $client = new Client($daemon->socket);
            $client->start('flow-cooldown@example.com', ip: '198.51.100.20');
            try {
                $client->start('Flow-Cooldown@example.com', ip: '198.51.100.21');
                self::fail('a second start within the cooldown was accepted');
            } catch (RateLimitedException $e) {
                self::assertGreaterThanOrEqual(1, $e->getRetryAfter());
                self::assertLessThanOrEqual(60, $e->getRetryAfter());
            }
            $daemon->stop();
        } finally {
            $daemon->cleanUp();
        }
    }

    public function testSessionPassesTheIpToTheFailureThrottle(): void
    {
        $daemon = Daemon::start(['MAGICLINKD_RATE_LIMIT_FAILURES_MAX' => '2']);
        try {
            $client = new Client($daemon->socket);
            $dead = str_repeat('A', 43);
            for ($i = 0; $i < 2; $i++) {
                try {
                    $client->session($dead, ip: '203.0.113.9');
                    self::fail('an unknown session was accepted');
                } catch (InvalidSessionException) {
                    $this->addToAssertionCount(1);
                }
            }
            try {
                $client->session($dead, ip: '203.0.113.9');
                self::fail('the third failure from one ip was not throttled');
            } catch (RateLimitedException $e) {
                self::assertSame('session', $e->getOp());
                self::assertGreaterThan(0, $e->getRetryAfter());
                self::assertLessThanOrEqual(900, $e->getRetryAfter());
            }
            // The throttle is per ip: another address, or no ip at all, still gets the real answer.
            foreach (['203.0.113.10', null] as $ip) {
                try {
                    $client->session($dead, ip: $ip);
                    self::fail('an unknown session was accepted');
                } catch (InvalidSessionException) {
                    $this->addToAssertionCount(1);
                }
            }
            $daemon->stop();
        } finally {
            $daemon->cleanUp();
        }
    }

    public function testInvalidEmail(): void
    {
        try {
            $this->client->start('not an address', ip: '192.0.2.4');
            self::fail('an invalid address was accepted');
        } catch (InvalidEmailException $e) {
            self::assertSame('invalid_email', $e->getErrorCode());
            self::assertSame('start', $e->getOp());
            self::assertStringContainsString('invalid_email', $e->getMessage());
        }
    }

    public function testInvalidUtf8IsReplacedNotSentRaw(): void
    {
        // Bytes from a Latin-1 form: the daemon sees U+FFFD and refuses the address.
        $this->expectException(InvalidEmailException::class);
        $this->client->start("jos\xE9@example.com", ip: '192.0.2.4');
    }

    public function testRedirectNotAllowed(): void
    {
        $this->expectException(RedirectNotAllowedException::class);
        $this->client->start('flow-redirect@example.com', redirect: 'https://evil.example/', ip: '192.0.2.5');
    }

    public function testAllowedOriginRedirectIsReturned(): void
    {
        $login = $this->login('flow-origin@example.com', '192.0.2.6', Daemon::ALLOWED_ORIGIN . '/x?y=1');
        self::assertSame(Daemon::ALLOWED_ORIGIN . '/x?y=1', $login->redirect);
    }

    public function testInvalidRequestNamesTheField(): void
    {
        try {
            $this->client->call('start', ['email' => 42]);
            self::fail('a number as email was accepted');
        } catch (InvalidRequestException $e) {
            self::assertSame('params.email', $e->getField());
        }
    }

    public function testAdminOpsReturnTypedResults(): void
    {
        $email = 'flow-admin@example.com';
        $login = $this->login($email, '192.0.2.7');

        $status = $this->client->adminStatus();
        self::assertGreaterThanOrEqual(1, $status->users);
        self::assertGreaterThanOrEqual(1, $status->liveSessions);
        self::assertGreaterThanOrEqual(1, $status->mail->sent + $status->mail->queued + $status->mail->sending);
        self::assertSame($this->client->hello()->version, $status->version);
        self::assertInstanceOf(SessionCacheCounts::class, $status->sessionCache);
        self::assertGreaterThan(0, $status->sessionCache->capacity);

        $sessions = $this->client->adminSessions(email: $email);
        self::assertCount(1, $sessions);
        self::assertInstanceOf(SessionRecord::class, $sessions[0]);
        self::assertSame($login->user->id, $sessions[0]->userId);
        self::assertSame('192.0.2.7', $sessions[0]->ip);
        self::assertSame('FlowTest/1.0', $sessions[0]->userAgent);
        self::assertSame(substr(hash('sha256', $login->session), 0, 16), $sessions[0]->handle);
        self::assertEquals($sessions, $this->client->adminSessions(userId: $login->user->id));

        // Mails replaced by a newer start before they were sent may be dead letters ("expired").
        $letters = $this->client->adminDeadLetters(limit: 1000);
        foreach ($letters as $letter) {
            self::assertInstanceOf(DeadLetter::class, $letter);
            self::assertContains($letter->state, ['failed', 'expired']);
            self::assertStringNotContainsString('token=', (string) $letter->lastError);
        }
        self::assertLessThanOrEqual(1, \count($this->client->adminDeadLetters(limit: 1)));
        $retry = $this->client->adminRetry('nobody@localhost');
        self::assertFalse($retry->retried);
        self::assertSame('not_found', $retry->reason);
        self::assertGreaterThanOrEqual(0, $this->client->adminPurge());

        self::assertSame(1, $this->client->adminRevoke(handle: $sessions[0]->handle));
        $this->expectException(InvalidSessionException::class);
        $this->client->session($login->session);
    }

    public function testLinkOpenedWithoutItsFlowNeedsConfirmation(): void
    {
        $email = 'flow-other-device@example.com';
        $started = $this->client->start($email, redirect: '/account', ip: '192.0.2.20');
        $token = Mail::waitForToken(self::$daemon, $email);

        foreach ([null, str_repeat('x', 43)] as $flow) {
            try {
                $this->client->callback($token, $flow);
                self::fail('a link opened without its flow logged in silently');
            } catch (ConfirmationRequiredException $e) {
                self::assertSame('confirmation_required', $e->getErrorCode());
                self::assertMatchesRegularExpression('/^f\*+@example\.com$/', (string) $e->getEmailMasked());
                self::assertEqualsWithDelta(time(), (int) $e->getRequestedAt(), 60);
                self::assertStringNotContainsString($email, $e->getMessage());
            }
        }
        // Nothing was used up: confirming completes the login.
        $login = $this->client->callback($token, confirm: true);
        self::assertSame($email, $login->user->email);
        self::assertSame('/account', $login->redirect);
        unset($started);
    }

    public function testStrictFlowBindingRefusesEvenWhenConfirmed(): void
    {
        $strict = Daemon::start(['MAGICLINKD_FLOW_BINDING' => 'strict']);
        try {
            $client = new Client($strict->socket);
            $email = 'flow-strict@example.com';
            $started = $client->start($email, ip: '192.0.2.21');
            $token = Mail::waitForToken($strict, $email);
            try {
                $client->callback($token, confirm: true);
                self::fail('strict mode accepted a link without its flow');
            } catch (FlowMismatchException $e) {
                self::assertSame('flow_mismatch', $e->getErrorCode());
            }
            self::assertSame($email, $client->callback($token, $started->flow)->user->email);
            $strict->stop();
        } finally {
            $strict->cleanUp();
        }
    }

    public function testCodeLogin(): void
    {
        $email = 'flow-code@example.com';
        $started = $this->client->start($email, redirect: '/account', ip: '192.0.2.22', send: Client::SEND_CODE);
        $code = Mail::waitForCode(self::$daemon, $email);
        $wrong = $code === '000000' ? '111111' : '000000';

        try {
            $this->client->verifyCode($started->flow, $wrong);
            self::fail('a wrong code was accepted');
        } catch (InvalidCodeException $e) {
            self::assertSame(2, $e->getAttemptsLeft());
        }
        $login = $this->client->verifyCode($started->flow, substr($code, 0, 3) . ' ' . substr($code, 3), ip: '192.0.2.22');
        self::assertSame($email, $login->user->email);
        self::assertSame('/account', $login->redirect);
        self::assertSame($email, $this->client->session($login->session)->user->email);

        $this->expectException(InvalidTokenException::class);
        $this->client->verifyCode($started->flow, $code);
    }

    public function testCodeDiesAfterThreeWrongAttemptsAndOnlyWorksWithItsFlow(): void
    {
        $email = 'flow-code-dies@example.com';
        $started = $this->client->start($email, ip: '192.0.2.23', send: Client::SEND_BOTH);
        $raw = Mail::waitFor(self::$daemon, $email);
        $code = Mail::code($raw);
        $wrong = $code === '000000' ? '111111' : '000000';

        $other = $this->client->start('flow-code-other@example.com', ip: '192.0.2.23', send: Client::SEND_CODE);
        try {
            $this->client->verifyCode($other->flow, $code);
            self::fail('a code was accepted with another flow');
        } catch (InvalidCodeException) {
            $this->addToAssertionCount(1);
        }

        foreach ([2, 1, 0] as $left) {
            try {
                $this->client->verifyCode($started->flow, $wrong);
                self::fail('a wrong code was accepted');
            } catch (InvalidCodeException $e) {
                self::assertSame($left, $e->getAttemptsLeft());
            }
        }
        try {
            $this->client->verifyCode($started->flow, $code);
            self::fail('the right code worked after 3 wrong ones');
        } catch (InvalidCodeException $e) {
            self::assertSame(0, $e->getAttemptsLeft());
        }
        // The link of the same mail still works.
        self::assertSame($email, $this->client->callback(Mail::token($raw), $started->flow)->user->email);
    }

    public function testPeekDoesNotUseTheLink(): void
    {
        $email = 'flow-peek@example.com';
        $started = $this->client->start($email, ip: '192.0.2.24');
        $token = Mail::waitForToken(self::$daemon, $email);

        $scanner = $this->client->peek($token);
        self::assertTrue($scanner->valid);
        self::assertFalse($scanner->flowMatches);
        self::assertNull($scanner->reason);
        self::assertMatchesRegularExpression('/^f\*+@example\.com$/', (string) $scanner->emailMasked);
        self::assertSame($started->expiresAt, $scanner->expiresAt);

        $browser = $this->client->peek($token, $started->flow);
        self::assertTrue($browser->valid);
        self::assertTrue($browser->flowMatches);

        $this->client->callback($token, $started->flow);
        $after = $this->client->peek($token, $started->flow);
        self::assertFalse($after->valid);
        self::assertSame('used', $after->reason);

        $unknown = $this->client->peek(str_repeat('B', 43));
        self::assertEquals(new PeekResult(false, 'unknown', false, null, null), $unknown);

        self::assertGreaterThanOrEqual(1, $this->client->adminStatus()->links->peekedThenUsed);
    }
}
