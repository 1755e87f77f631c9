<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

/** Runs fake-server.php in a child process; see there for the modes. */
final class FakeServer
{
    public readonly string $socket;

    private string $events;

    /** @var resource */
    private $process;

    /** @var array<int, resource> */
    private array $pipes;

    private string $dir;

    private int $ownerPid;

    public function __construct(public readonly string $mode)
    {
        $this->ownerPid = getmypid();
        $this->dir = Daemon::makeDir();
        $this->socket = $this->dir . '/f.sock';
        $this->events = $this->dir . '/events';
        touch($this->events);
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fake-server.php', $mode, $this->socket, $this->events],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $this->dir . '/stderr', 'a']],
            $pipes,
        );
        if (!\is_resource($process)) {
            throw new \RuntimeException('cannot start the fake server');
        }
        $this->process = $process;
        $this->pipes = $pipes;
        $read = [$pipes[1]];
        $write = null;
        $except = null;
        if (stream_select($read, $write, $except, 10) !== 1 || trim((string) fgets($pipes[1])) !== 'ready') {
            $this->stop();
            throw new \RuntimeException('the fake server did not start: ' . @file_get_contents($this->dir . '/stderr'));
        }
    }

    /** Sends a line to the fake's stdin (backlog-slow: accept one connection). */
    public function poke(): void
    {
        fwrite($this->pipes[0], "go\n");
        fflush($this->pipes[0]);
    }

    /** @return list<string> "connect <n>" and "request <n> <op>" lines so far */
    public function events(): array
    {
        return array_values(array_filter(explode("\n", (string) file_get_contents($this->events))));
    }

    /** Waits (bounded) until the events file holds $count lines. */
    public function waitForEvents(int $count, float $timeout = 5.0): array
    {
        $deadline = microtime(true) + $timeout;
        while (\count($events = $this->events()) < $count && microtime(true) < $deadline) {
            usleep(10_000);
        }
        return $events;
    }

    public function stop(): void
    {
        if (getmypid() !== $this->ownerPid) {
            return;
        }
        if (\is_resource($this->process)) {
            proc_terminate($this->process, 9);
            foreach ($this->pipes as $pipe) {
                if (\is_resource($pipe)) {
                    fclose($pipe);
                }
            }
            proc_close($this->process);
        }
        Daemon::removeTree($this->dir);
    }

    public function __destruct()
    {
        $this->stop();
    }
}
