<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\Vectors;

/**
 * Every vector once more, all as raw bytes through the client's transport, against a daemon of
 * its own: here each reply's `id` is checked against the vector too (Client::call() replaces
 * the id with its own).
 */
final class VectorsRawTest extends DaemonTestCase
{
    /** @dataProvider \MagicLink\Tests\Support\Vectors::all */
    public function testVectorRaw(string $file, \stdClass $case): void
    {
        $reply = self::client()->transport()->exchange(Vectors::bytes($case), false);
        Vectors::assertReply("{$file} {$case->name}", $case->expect, $reply);
    }
}
