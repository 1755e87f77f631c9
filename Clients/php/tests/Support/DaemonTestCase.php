<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

use MagicLink\Client;
use PHPUnit\Framework\TestCase;

/**
 * A test class with one real magiclinkd of its own, started before its first test and stopped
 * (its directory removed) after its last. A class configures the daemon by overriding
 * daemonEnvironment(); a class that adds its own setUpBeforeClass()/tearDownAfterClass() calls
 * the parent's. client() is one Client for that daemon, kept for the whole class.
 */
abstract class DaemonTestCase extends TestCase
{
    protected static ?Daemon $daemon = null;

    private static ?Client $classClient = null;

    /**
     * More MAGICLINKD_* settings for the class's daemon (Daemon::start()'s $extraEnv).
     *
     * @return array<string, string>
     */
    protected static function daemonEnvironment(): array
    {
        return [];
    }

    public static function setUpBeforeClass(): void
    {
        self::$daemon = Daemon::start(static::daemonEnvironment());
    }

    /** The class's Client, connected to its daemon on first use, closed after its last test. */
    protected static function client(): Client
    {
        return self::$classClient ??= new Client(self::$daemon->socket);
    }

    public static function tearDownAfterClass(): void
    {
        try {
            self::$classClient?->close();
            self::$classClient = null;
            self::$daemon?->stop();
        } finally {
            self::$daemon?->cleanUp();
            self::$daemon = null;
        }
    }
}
