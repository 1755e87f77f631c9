<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\ConnectionException;
use MagicLink\Login;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\FakeServer;
use MagicLink\Tests\Support\Mail;
use PHPUnit\Framework\TestCase;

/**
 * A connection that died while idle is replaced silently (nothing was sent, so any op is safe);
 * one that breaks after the request was written is retried once, only for ops safe to repeat.
 */
final class ReconnectTest extends TestCase
{
    private ?Daemon $daemon = null;

    private ?FakeServer $fake = null;

    protected function tearDown(): void
    {
        $this->fake?->stop();
        if ($this->daemon !== null) {
            try {
                $this->daemon->stop();
            } finally {
                $this->daemon->cleanUp();
            }
        }
    }

    private function login(Client $client, string $email): Login
    {
        $started = $client->start($email, redirect: '/r', ip: '192.0.2.50');
        return $client->callback(Mail::waitForToken($this->daemon, $email), $started->flow);
    }

    public function testHelloAndSessionSurviveADaemonRestart(): void
    {
        $this->daemon = Daemon::start();
        $client = new Client($this->daemon->socket);
        $login = $this->login($client, 'restart@example.com');
        self::assertSame(1, $client->transport()->connectCount());
        $firstPid = $this->daemon->pid();

        $this->daemon->restart(); // SIGTERM (exit 0), then a new daemon on the same socket and database
        self::assertNotSame($firstPid, $this->daemon->pid());
        self::assertTrue($client->transport()->isConnected(), 'the client has not noticed yet');

        self::assertSame('magiclinkd', $client->hello()->server);
        self::assertSame(2, $client->transport()->connectCount());

        $this->daemon->restart();
        $info = $client->session($login->session);
        self::assertSame('restart@example.com', $info->user->email);
        self::assertSame(3, $client->transport()->connectCount());
    }

    public function testAnyOpIsSafeWhenTheIdleConnectionIsFoundDead(): void
    {
        // Found dead before sending: even start (not safe to repeat) goes through.
        $this->daemon = Daemon::start();
        $client = new Client($this->daemon->socket);
        $client->hello();
        $this->daemon->restart();
        self::assertGreaterThan(time(), $client->start('restart-start@example.com', ip: '192.0.2.51')->expiresAt);
        Mail::waitForToken($this->daemon, 'restart-start@example.com');
        self::assertCount(1, Mail::mailsTo($this->daemon, 'restart-start@example.com'));
    }

    public function testCrashedDaemonReplacedByANewOne(): void
    {
        $this->daemon = Daemon::start();
        $client = new Client($this->daemon->socket);
        $client->hello();

        $this->daemon->kill(); // SIGKILL: the socket file stays behind
        try {
            $client->hello();
            self::fail('hello succeeded with no daemon');
        } catch (ConnectionException $e) {
            self::assertFalse($e->isOutcomeUnknown(), 'nothing was sent: the dead connection was noticed first');
        }

        $this->daemon->relaunch();
        self::assertSame('magiclinkd', $client->hello()->server);
    }

    public function testSafeOpsAreRetriedOnceWhenTheConnectionBreaksAfterSending(): void
    {
        // hello, session and peek change nothing that matters when sent twice.
        // The fake reads the first request on connection 1 and closes it without a reply.
        $this->fake = new FakeServer('drop-first');
        $client = new Client($this->fake->socket);
        self::assertSame('fake-conn-2', $client->hello()->version);
        self::assertSame(['connect 1', 'request 1 hello', 'connect 2', 'request 2 hello'], $this->fake->events());

        $this->fake->stop();
        $this->fake = new FakeServer('drop-first');
        $client = new Client($this->fake->socket);
        self::assertSame('conn2@example.com', $client->session('s')->user->email);
        self::assertSame(['connect 1', 'request 1 session', 'connect 2', 'request 2 session'], $this->fake->events());

        $this->fake->stop();
        $this->fake = new FakeServer('drop-first');
        $client = new Client($this->fake->socket);
        self::assertSame('unknown', $client->peek('t')->reason);
        self::assertSame(['connect 1', 'request 1 peek', 'connect 2', 'request 2 peek'], $this->fake->events());
    }

    public function testUnsafeOpsAreNotRetriedAndTheOutcomeIsUnknown(): void
    {
        foreach ([
            'start' => fn (Client $client) => $client->start('x@example.com'),
            'callback' => fn (Client $client) => $client->callback('t'),
            'verify_code' => fn (Client $client) => $client->verifyCode('f', '123456'),
            'logout' => fn (Client $client) => $client->logout('s'),
            'logout_all' => fn (Client $client) => $client->logoutAll('u'),
        ] as $op => $call) {
            $this->fake?->stop();
            $this->fake = new FakeServer('drop-first');
            $client = new Client($this->fake->socket);
            try {
                $call($client);
                self::fail("{$op} returned after the connection broke");
            } catch (ConnectionException $e) {
                self::assertTrue($e->isOutcomeUnknown(), $op);
                self::assertStringContainsString('unknown', $e->getMessage());
            }
            self::assertSame(['connect 1', "request 1 {$op}"], $this->fake->events(), "{$op} was sent again");
        }
    }

    public function testOnlyOneRetry(): void
    {
        $this->fake = new FakeServer('drop-all');
        $client = new Client($this->fake->socket);
        try {
            $client->hello();
            self::fail('hello returned');
        } catch (ConnectionException $e) {
            self::assertTrue($e->isOutcomeUnknown());
            self::assertStringContainsString('also after reconnecting once', $e->getMessage());
        }
        self::assertSame(['connect 1', 'request 1 hello', 'connect 2', 'request 2 hello'], $this->fake->events());
    }
}
