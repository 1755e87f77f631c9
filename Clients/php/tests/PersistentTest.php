<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\TimeoutException;
use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\FakeServer;

/**
 * persistent: true keeps one connection per socket path per process (per PHP-FPM worker) across
 * Client instances, the way PHP-FPM would across requests. PHP's persistent list is
 * process-wide, so the test process plays the worker.
 */
final class PersistentTest extends DaemonTestCase
{
    private ?FakeServer $fake = null;

    protected function tearDown(): void
    {
        // Leave no persistent stream behind for the next test.
        (new Client(self::$daemon->socket, persistent: true))->close();
        $this->fake?->stop();
    }

    public function testClientsOfOneProcessShareThePersistentConnection(): void
    {
        // "Request 1" of the worker.
        $first = new Client(self::$daemon->socket, persistent: true);
        $first->hello();
        $stream = $first->transport()->stream();
        unset($first); // end of the request: the persistent stream stays open

        // "Request 2": a new Client gets the same connection.
        $second = new Client(self::$daemon->socket, persistent: true);
        self::assertSame('magiclinkd', $second->hello()->server);
        self::assertSame($stream, $second->transport()->stream());
        self::assertSame('persistent stream', get_resource_type($stream));

        // Not persistent: its own connection.
        $plain = new Client(self::$daemon->socket);
        $plain->hello();
        self::assertNotSame($stream, $plain->transport()->stream());
    }

    public function testAStaleReplyLeftByAnEarlierRequestIsDiscarded(): void
    {
        $client = new Client(self::$daemon->socket, persistent: true);
        $client->hello();
        $stream = $client->transport()->stream();
        unset($client);

        // An earlier request died after writing and before reading its reply: the reply waits
        // in the worker's persistent socket. (We write it ourselves on the same stream.)
        $same = stream_socket_client('unix://' . self::$daemon->socket, $errno, $errstr, 1, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
        self::assertSame($stream, $same);
        fwrite($same, "{\"id\":1,\"op\":\"session\",\"params\":{\"session\":\"x\"}}\n");
        $read = [$same];
        $none = null;
        self::assertSame(1, stream_select($read, $none, $none, 5), 'the stale reply did not arrive');

        $next = new Client(self::$daemon->socket, persistent: true);
        self::assertSame('magiclinkd', $next->hello()->server);
        self::assertNotSame($stream, $next->transport()->stream(), 'the stale connection was reused');
        self::assertSame('Unknown', get_resource_type($stream), 'the stale connection was not closed');
    }

    public function testAConnectionTheDaemonClosedIsReplaced(): void
    {
        $client = new Client(self::$daemon->socket, persistent: true);
        $client->hello();
        $stream = $client->transport()->stream();
        unset($client);

        self::$daemon->restart(); // the worker's persistent connection is now dead

        $next = new Client(self::$daemon->socket, persistent: true);
        self::assertSame('magiclinkd', $next->hello()->server);
        self::assertNotSame($stream, $next->transport()->stream());
    }

    public function testAfterATimeoutThePersistentConnectionIsNeverReused(): void
    {
        $fake = $this->fake = new FakeServer('late');
        $client = new Client($fake->socket, readTimeout: 0.3, persistent: true);
        try {
            $client->hello();
            self::fail('no timeout');
        } catch (TimeoutException) {
            $this->addToAssertionCount(1);
        }
        unset($client);

        $next = new Client($fake->socket, readTimeout: 5.0, persistent: true);
        self::assertSame('fake-conn-2', $next->hello()->version);
        $next->close();
    }

    public function testCloseClosesThePersistentConnection(): void
    {
        $client = new Client(self::$daemon->socket, persistent: true);
        $client->hello();
        $stream = $client->transport()->stream();
        $client->close();
        self::assertSame('Unknown', get_resource_type($stream));
        $again = new Client(self::$daemon->socket, persistent: true);
        $again->hello();
        self::assertNotSame($stream, $again->transport()->stream());
    }

    public function testAClientWhoseSharedStreamAnotherClientClosedReconnects(): void
    {
        $a = new Client(self::$daemon->socket, persistent: true);
        $b = new Client(self::$daemon->socket, persistent: true);
        $a->hello();
        $b->hello();
        self::assertSame($a->transport()->stream(), $b->transport()->stream());
        $a->close();
        self::assertSame('magiclinkd', $b->hello()->server);
        self::assertSame(2, $b->transport()->connectCount());
    }
}
