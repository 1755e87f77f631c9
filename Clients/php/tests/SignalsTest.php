<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Tests\Support\FakeServer;
use PHPUnit\Framework\TestCase;

/**
 * Signals while waiting for a reply: a handler that returns must not break the call; one that
 * throws must leave no half-used connection behind.
 *
 * @requires extension pcntl
 */
final class SignalsTest extends TestCase
{
    private ?FakeServer $fake = null;

    private bool $async;

    protected function setUp(): void
    {
        $this->async = pcntl_async_signals(true);
        // The fake's first connection answers after 1.5 s, later ones at once.
        $this->fake = new FakeServer('late');
    }

    protected function tearDown(): void
    {
        pcntl_alarm(0);
        pcntl_signal(SIGALRM, SIG_DFL);
        pcntl_async_signals($this->async);
        $this->fake?->stop();
    }

    public function testAHandledSignalDoesNotBreakTheCall(): void
    {
        $signals = 0;
        pcntl_signal(SIGALRM, function () use (&$signals): void {
            $signals++;
        });
        $client = new Client($this->fake->socket, readTimeout: 5.0);
        pcntl_alarm(1);
        self::assertSame('fake-conn-1', $client->hello()->version);
        self::assertSame(1, $signals, 'the alarm did not go off during the call');
        self::assertSame(1, $client->transport()->connectCount());
    }

    public function testAnExceptionFromAHandlerClosesTheConnection(): void
    {
        pcntl_signal(SIGALRM, static function (): void {
            throw new \LogicException('interrupted');
        });
        $client = new Client($this->fake->socket, readTimeout: 5.0);
        pcntl_alarm(1);
        try {
            $client->hello();
            self::fail('the handler\'s exception did not come through');
        } catch (\LogicException $e) {
            self::assertSame('interrupted', $e->getMessage());
        }
        self::assertFalse($client->transport()->isConnected());
        // The late reply on connection 1 is never read: the next call uses connection 2.
        self::assertSame('fake-conn-2', $client->hello()->version);
    }
}
