<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Exception\InvalidSessionException;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\DaemonTestCase;

/**
 * A Client used on both sides of pcntl_fork(): the child must open its own connection, never
 * write to its parent's. Children report through a file and end with pcntl_exec(), so that no
 * PHPUnit shutdown code or destructor (which would stop the daemon) runs in them.
 *
 * @requires extension pcntl
 */
final class ForkTest extends DaemonTestCase
{
    private string $reportDir;

    protected function setUp(): void
    {
        $this->reportDir = Daemon::makeDir();
    }

    protected function tearDown(): void
    {
        Daemon::removeTree($this->reportDir);
    }

    /**
     * Runs $work in a child; returns what it returned (JSON-encodable), or fails the test with
     * the child's exception.
     */
    private function inChild(callable $work): int
    {
        $report = $this->reportDir . '/child-' . bin2hex(random_bytes(4));
        $pid = pcntl_fork();
        self::assertNotSame(-1, $pid, 'fork failed');
        if ($pid === 0) {
            try {
                $result = ['ok' => true, 'value' => $work()];
            } catch (\Throwable $e) {
                $result = ['ok' => false, 'error' => \get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString()];
            }
            file_put_contents($report, json_encode($result));
            pcntl_exec('/bin/true');
            posix_kill(getmypid(), SIGKILL); // only if exec failed
        }
        return $pid;
    }

    private function childResult(int $pid): mixed
    {
        $waited = pcntl_waitpid($pid, $status);
        self::assertSame($pid, $waited);
        $reports = glob($this->reportDir . '/child-*') ?: [];
        $found = null;
        foreach ($reports as $file) {
            $found = json_decode((string) file_get_contents($file), true);
            unlink($file);
        }
        self::assertIsArray($found, 'the child wrote no report');
        self::assertTrue($found['ok'], 'child failed: ' . ($found['error'] ?? ''));
        return $found['value'];
    }

    public function testChildOpensItsOwnConnection(): void
    {
        $client = new Client(self::$daemon->socket);
        $client->hello();
        $parentStream = $client->transport()->stream();
        self::assertSame(1, $client->transport()->connectCount());

        $pid = $this->inChild(function () use ($client, $parentStream): array {
            $server = $client->hello()->server;
            return [
                'server' => $server,
                'connects' => $client->transport()->connectCount(),
                'same_stream' => $client->transport()->stream() === $parentStream,
            ];
        });
        $child = $this->childResult($pid);
        self::assertSame(['server' => 'magiclinkd', 'connects' => 2, 'same_stream' => false], $child);

        // The parent's connection was left alone.
        self::assertSame('magiclinkd', $client->hello()->server);
        self::assertSame($parentStream, $client->transport()->stream());
        self::assertSame(1, $client->transport()->connectCount());
    }

    public function testParentAndChildCallConcurrently(): void
    {
        // Were the connection shared, replies would be read by the wrong process: the child
        // would see session errors where it expects hello results, or an id mismatch.
        $client = new Client(self::$daemon->socket);
        $client->hello();
        $pid = $this->inChild(function () use ($client): int {
            for ($i = 0; $i < 300; $i++) {
                if ($client->hello()->server !== 'magiclinkd') {
                    throw new \RuntimeException('wrong reply');
                }
            }
            return $i;
        });
        for ($i = 0; $i < 300; $i++) {
            try {
                $client->session('not-a-session-' . $i);
                self::fail('a made-up session was accepted');
            } catch (InvalidSessionException) {
                // expected
            }
        }
        self::assertSame(300, $this->childResult($pid));
        self::assertSame(1, $client->transport()->connectCount());
    }

    public function testPersistentConnectionIsNotSharedWithAChild(): void
    {
        $client = new Client(self::$daemon->socket, persistent: true);
        $client->hello();
        $parentStream = $client->transport()->stream();

        $pid = $this->inChild(function () use ($parentStream): array {
            // A new Client in the child: PHP would hand it the parent's persistent stream.
            $child = new Client(self::$daemon->socket, persistent: true);
            $child->hello();
            return ['same_stream' => $child->transport()->stream() === $parentStream];
        });
        self::assertSame(['same_stream' => false], $this->childResult($pid));

        self::assertSame('magiclinkd', $client->hello()->server);
        self::assertSame($parentStream, $client->transport()->stream());
        $client->close();
    }
}
