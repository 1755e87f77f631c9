<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\TimeoutException;
use MagicLink\Exception\TransportException;
use MagicLink\Tests\Support\FakeServers;
use PHPUnit\Framework\TestCase;

/** Connect and read timeouts, against fakes that accept and never answer, or never accept. */
final class TimeoutTest extends TestCase
{
    use FakeServers;

    public function testReadTimeout(): void
    {
        $fake = $this->fake('silent');
        $client = new Client($fake->socket, readTimeout: 0.3);
        $started = microtime(true);
        try {
            $client->hello();
            self::fail('a silent server did not time out');
        } catch (TimeoutException $e) {
            $elapsed = microtime(true) - $started;
            self::assertGreaterThanOrEqual(0.29, $elapsed);
            self::assertLessThan(2.0, $elapsed);
            self::assertInstanceOf(TransportException::class, $e);
            self::assertTrue($e->isOutcomeUnknown(), 'the request had been sent');
            self::assertStringContainsString('0.3 s', $e->getMessage());
        }
        // A timeout after sending drops the connection, and hello is not retried on timeouts.
        self::assertFalse($client->transport()->isConnected());
        self::assertSame(['connect 1', 'request 1 hello'], $fake->waitForEvents(2));
    }

    public function testLateReplyIsNeverTakenForTheNextOne(): void
    {
        // Connection 1 answers after 1.5 s, later connections at once, naming their connection.
        $fake = $this->fake('late');
        $client = new Client($fake->socket, readTimeout: 0.3);
        try {
            $client->hello();
            self::fail('no timeout');
        } catch (TimeoutException) {
            $this->addToAssertionCount(1);
        }
        // Wait until the fake has sent (or could not send) its late reply on connection 1.
        $events = $fake->waitForEvents(3, 5.0);
        self::assertStringStartsWith('late reply', $events[2] ?? '', implode(', ', $events));
        self::assertSame('fake-conn-2', $client->hello()->version);
        self::assertSame('fake-conn-2', $client->hello()->version);
        self::assertSame(2, $client->transport()->connectCount());
    }

    public function testConnectTimeoutWhenTheListenQueueIsFull(): void
    {
        $fake = $this->fake('backlog-full');
        // Fill the queue (backlog 0 holds one connection): now connect() fails with EAGAIN.
        $filler = stream_socket_client('unix://' . $fake->socket, $errno, $errstr, 1);
        self::assertIsResource($filler);
        $probe = @stream_socket_client('unix://' . $fake->socket, $errno, $errstr, 1);
        self::assertFalse($probe, 'the listen queue is not full');

        $client = new Client($fake->socket, connectTimeout: 0.4, readTimeout: 5.0);
        $started = microtime(true);
        try {
            $client->hello();
            self::fail('connected to a full listen queue');
        } catch (TimeoutException $e) {
            $elapsed = microtime(true) - $started;
            self::assertGreaterThanOrEqual(0.39, $elapsed);
            self::assertLessThan(2.0, $elapsed);
            self::assertFalse($e->isOutcomeUnknown(), 'nothing was sent');
            self::assertStringContainsString('did not accept the connection within 0.4 s', $e->getMessage());
        }
        fclose($filler);
    }

    public function testConnectWaitsForRoomInTheQueueWithinTheTimeout(): void
    {
        $fake = $this->fake('backlog-slow');
        $filler = stream_socket_client('unix://' . $fake->socket, $errno, $errstr, 1);
        self::assertIsResource($filler);
        self::assertFalse(@stream_socket_client('unix://' . $fake->socket, $errno, $errstr, 1), 'the listen queue is not full');

        // First without room: a timeout that says so.
        $client = new Client($fake->socket, connectTimeout: 0.2, readTimeout: 0.2);
        try {
            $client->hello();
            self::fail('connected to a full listen queue');
        } catch (TimeoutException $e) {
            self::assertStringContainsString('did not accept the connection', $e->getMessage());
        }

        // The fake accepts the filler: the queue has room, so the client connects, sends, and
        // then times out reading, since this fake never answers.
        $fake->poke();
        self::assertSame(['accepted'], $fake->waitForEvents(1));
        $client = new Client($fake->socket, connectTimeout: 2.0, readTimeout: 0.2);
        try {
            $client->hello();
            self::fail('nobody should answer');
        } catch (TimeoutException $e) {
            self::assertStringContainsString('no reply from magiclinkd within the read timeout of 0.2 s', $e->getMessage());
            self::assertTrue($e->isOutcomeUnknown());
            self::assertSame(1, $client->transport()->connectCount());
        }
        fclose($filler);
    }
}
