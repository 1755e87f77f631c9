<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

/**
 * A real magiclinkd for one test class: its own short temp dir under /tmp (socket, SQLite
 * database, Maildir outbox), configured by environment variables, or (startWithConfig()) by a
 * YAML file for what variables cannot say (apps:), with only the files' paths in variables.
 */
final class Daemon
{
    public const CALLBACK_URL = 'https://app.example.com/auth/callback';
    public const ALLOWED_ORIGIN = 'https://app.example.com';

    public readonly string $socket;

    /** @var resource|null */
    private $process = null;

    private ?int $exitCode = null;

    /** The process that started the daemon (a forked test child must not stop it). */
    private int $ownerPid = 0;

    /**
     * @param array<string, string> $extraEnv more MAGICLINKD_* settings
     * @param string|null           $config   the YAML config file, if any (then the callback URL
     *                                        and redirect origins come from it, not from variables,
     *                                        which would win over it)
     */
    private function __construct(public readonly string $dir, private readonly array $extraEnv, private readonly ?string $config = null)
    {
        $this->socket = $dir . '/d.sock';
    }

    /**
     * A daemon configured by $yaml (written to config.yaml in its dir, passed as MAGICLINKD_CONFIG);
     * socket, database and outbox still come from variables.
     *
     * @param array<string, string> $extraEnv
     */
    public static function startWithConfig(string $yaml, array $extraEnv = []): self
    {
        $dir = self::makeDir();
        $daemon = new self($dir, $extraEnv, $dir . '/config.yaml');
        try {
            if (file_put_contents($daemon->config, $yaml) === false) {
                throw new \RuntimeException("cannot write {$daemon->config}");
            }
            $daemon->launch();
        } catch (\Throwable $e) {
            self::removeTree($daemon->dir);
            throw $e;
        }
        return $daemon;
    }

    /** @param array<string, string> $extraEnv */
    public static function start(array $extraEnv = []): self
    {
        $daemon = new self(self::makeDir(), $extraEnv);
        try {
            $daemon->launch();
        } catch (\Throwable $e) {
            self::removeTree($daemon->dir);
            throw $e;
        }
        return $daemon;
    }

    public static function binary(): string
    {
        $bin = getenv('MAGICLINKD_BIN');
        if (\is_string($bin) && $bin !== '') {
            if (!is_file($bin) || !is_executable($bin)) {
                throw new \RuntimeException("MAGICLINKD_BIN={$bin} is not an executable file");
            }
            return $bin;
        }
        $fallback = \dirname(__DIR__, 4) . '/.build/debug/magiclinkd';
        if (is_file($fallback) && is_executable($fallback)) {
            return $fallback;
        }
        throw new \RuntimeException(
            "no magiclinkd binary: set MAGICLINKD_BIN to a built magiclinkd, or run `swift build` so that {$fallback} exists",
        );
    }

    /** A short private directory under /tmp (Unix socket paths must fit in 108 bytes). */
    public static function makeDir(): string
    {
        for ($i = 0; $i < 10; $i++) {
            $dir = '/tmp/mlphp-' . bin2hex(random_bytes(4));
            if (@mkdir($dir, 0700)) {
                return $dir;
            }
        }
        throw new \RuntimeException('cannot create a temp dir under /tmp');
    }

    public function isRunning(): bool
    {
        return $this->process !== null && $this->status()['running'];
    }

    public function pid(): int
    {
        return $this->status()['pid'];
    }

    /** SIGTERM, wait for the exit, and insist on exit status 0. */
    public function stop(): void
    {
        if ($this->process === null) {
            return;
        }
        $code = $this->terminate(15);
        if ($code !== 0) {
            throw new \RuntimeException("magiclinkd exited with status {$code} after SIGTERM:\n" . $this->log());
        }
    }

    /** SIGKILL: a crash. The socket file stays behind. */
    public function kill(): void
    {
        if ($this->process !== null) {
            $this->terminate(9);
        }
    }

    /** Stops this daemon (SIGTERM) and starts a new one on the same socket, database and outbox. */
    public function restart(): void
    {
        $this->stop();
        $this->launch();
    }

    /** Starts a new daemon on the same files after kill(). */
    public function relaunch(): void
    {
        $this->launch();
    }

    public function log(): string
    {
        return (string) @file_get_contents($this->dir . '/daemon.log');
    }

    public function outbox(): string
    {
        return $this->dir . '/outbox';
    }

    /** Stops the daemon if it still runs and removes its directory. */
    public function cleanUp(): void
    {
        if ($this->process !== null) {
            $this->terminate(9);
        }
        self::removeTree($this->dir);
    }

    public function __destruct()
    {
        if ($this->process !== null && getmypid() === $this->ownerPid) {
            $this->terminate(9);
        }
    }

    private function launch(): void
    {
        $env = [];
        foreach (getenv() as $name => $value) {
            if (!str_starts_with($name, 'MAGICLINKD_')) {
                $env[$name] = $value;
            }
        }
        $env = array_merge($env, [
            'MAGICLINKD_SOCKET' => $this->socket,
            'MAGICLINKD_DATABASE' => $this->dir . '/db.sqlite',
            'MAGICLINKD_OUTBOX_DIR' => $this->dir . '/outbox',
            'MAGICLINKD_MAIL_TRANSPORT' => 'outbox',
        ], $this->config === null ? [
            'MAGICLINKD_CALLBACK_URL' => self::CALLBACK_URL,
            'MAGICLINKD_ALLOWED_REDIRECT_ORIGINS' => self::ALLOWED_ORIGIN,
        ] : [
            'MAGICLINKD_CONFIG' => $this->config,
        ], $this->extraEnv);

        $log = $this->dir . '/daemon.log';
        $process = proc_open(
            [self::binary(), 'serve'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
            $pipes,
            $this->dir,
            $env,
        );
        if (!\is_resource($process)) {
            throw new \RuntimeException('cannot start ' . self::binary());
        }
        $this->process = $process;
        $this->exitCode = null;
        $this->ownerPid = getmypid();

        // Ready when a hello is answered; fail with the daemon's output if it exits first.
        $deadline = microtime(true) + 30.0;
        while (true) {
            if (!$this->status()['running']) {
                $this->process = null;
                throw new \RuntimeException("magiclinkd exited (status {$this->exitCode}) before it was ready:\n" . $this->log());
            }
            if ($this->answersHello()) {
                return;
            }
            if (microtime(true) > $deadline) {
                $this->terminate(9);
                throw new \RuntimeException("magiclinkd did not answer hello within 30 s:\n" . $this->log());
            }
            usleep(20_000);
        }
    }

    private function answersHello(): bool
    {
        $s = @stream_socket_client('unix://' . $this->socket, $errno, $errstr, 0.5);
        if ($s === false) {
            return false;
        }
        stream_set_timeout($s, 2);
        fwrite($s, "{\"id\":1,\"op\":\"hello\"}\n");
        $line = fgets($s);
        fclose($s);
        return \is_string($line) && str_contains($line, '"ok":true');
    }

    /** @return array{running: bool, pid: int} */
    private function status(): array
    {
        $status = proc_get_status($this->process);
        if (!$status['running'] && $this->exitCode === null) {
            // Reported once only (PHP < 8.3): keep it.
            $this->exitCode = $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];
        }
        return ['running' => $status['running'], 'pid' => $status['pid']];
    }

    private function terminate(int $signal): int
    {
        if ($this->status()['running']) {
            proc_terminate($this->process, $signal);
        }
        $deadline = microtime(true) + 20.0;
        while ($this->status()['running']) {
            if (microtime(true) > $deadline) {
                proc_terminate($this->process, 9);
                usleep(100_000);
                $this->status();
                proc_close($this->process);
                $this->process = null;
                throw new \RuntimeException("magiclinkd did not exit within 20 s of signal {$signal}:\n" . $this->log());
            }
            usleep(10_000);
        }
        proc_close($this->process);
        $this->process = null;
        return (int) $this->exitCode;
    }

    public static function removeTree(string $dir): void
    {
        if (!is_dir($dir) || is_link($dir)) {
            @unlink($dir);
            return;
        }
        foreach (scandir($dir) ?: [] as $entry) {
            if ($entry !== '.' && $entry !== '..') {
                self::removeTree($dir . '/' . $entry);
            }
        }
        @rmdir($dir);
    }
}
