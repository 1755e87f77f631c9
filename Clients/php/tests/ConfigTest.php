<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\ConnectionException;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\DaemonTestCase;

/** Which socket the client uses, and that constructing it touches nothing. */
final class ConfigTest extends DaemonTestCase
{
    private string|false $savedEnv = false;

    protected function setUp(): void
    {
        $this->savedEnv = getenv('MAGICLINKD_SOCKET');
    }

    protected function tearDown(): void
    {
        putenv($this->savedEnv === false ? 'MAGICLINKD_SOCKET' : 'MAGICLINKD_SOCKET=' . $this->savedEnv);
    }

    public function testSocketFromTheEnvironment(): void
    {
        putenv('MAGICLINKD_SOCKET=' . self::$daemon->socket);
        $client = new Client();
        self::assertSame(self::$daemon->socket, $client->socketPath());
        self::assertSame('magiclinkd', $client->hello()->server);
    }

    public function testArgumentWinsOverTheEnvironment(): void
    {
        putenv('MAGICLINKD_SOCKET=/tmp/mlphp-nowhere/d.sock');
        $client = new Client(self::$daemon->socket);
        self::assertSame(self::$daemon->socket, $client->socketPath());
        self::assertSame('magiclinkd', $client->hello()->server);
    }

    public function testDefaultIsTheSystemdSocket(): void
    {
        putenv('MAGICLINKD_SOCKET');
        self::assertSame('/run/magiclinkd/magiclinkd.sock', (new Client())->socketPath());
        putenv('MAGICLINKD_SOCKET=');
        self::assertSame(Client::DEFAULT_SOCKET, (new Client())->socketPath(), 'an empty variable counts as unset');
    }

    public function testConstructingDoesNotConnect(): void
    {
        $dir = Daemon::makeDir();
        try {
            $path = $dir . '/later.sock';
            $client = new Client($path); // nothing there yet: no error
            self::assertFalse($client->transport()->isConnected());
            self::assertSame(0, $client->transport()->connectCount());

            $server = stream_socket_server('unix://' . $path);
            self::assertFalse($client->transport()->isConnected());
            fclose($server);
            @unlink($path);

            $this->expectException(ConnectionException::class);
            $client->hello();
        } finally {
            Daemon::removeTree($dir);
        }
    }

    public function testOneConnectionIsReused(): void
    {
        $client = new Client(self::$daemon->socket);
        for ($i = 0; $i < 20; $i++) {
            $client->hello();
            $client->logout('x');
        }
        self::assertSame(1, $client->transport()->connectCount());
    }

    public function testDebugOutputOfTheClient(): void
    {
        $client = new Client(self::$daemon->socket, readTimeout: 2.5);
        $client->hello();
        self::assertSame([
            'socketPath' => self::$daemon->socket,
            'connectTimeout' => 1.0,
            'readTimeout' => 2.5,
            'persistent' => false,
            'app' => null,
            'connected' => true,
        ], $client->__debugInfo());
    }
}
