<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Client;
use MagicLink\Tests\Support\Daemon;
use MagicLink\Tests\Support\Vectors;
use PHPUnit\Framework\TestCase;

/**
 * Every vector once more, all as raw bytes through the client's transport, against a daemon of
 * its own: here each reply's `id` is checked against the vector too (Client::call() replaces
 * the id with its own).
 */
final class VectorsRawTest extends TestCase
{
    private static ?Daemon $daemon = null;

    private static ?Client $client = null;

    public static function setUpBeforeClass(): void
    {
        self::$daemon = Daemon::start();
        self::$client = new Client(self::$daemon->socket);
    }

    public static function tearDownAfterClass(): void
    {
        self::$client?->close();
        try {
            self::$daemon?->stop();
        } finally {
            self::$daemon?->cleanUp();
            self::$daemon = null;
        }
    }

    /** @return array<string, array{0: string, 1: \stdClass}> */
    public static function cases(): array
    {
        return Vectors::all();
    }

    /** @dataProvider cases */
    public function testVectorRaw(string $file, \stdClass $case): void
    {
        $reply = self::$client->transport()->exchange(Vectors::bytes($case), false);
        Vectors::assertReply("{$file} {$case->name}", $case->expect, $reply);
    }
}
