<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Exception\ServerException;
use MagicLink\Tests\Support\DaemonTestCase;
use MagicLink\Tests\Support\Vectors;

/**
 * Every case of Protocol/vectors/*.json against a real daemon. A case whose request line the
 * client could have written itself goes through Client::call(), the path every per-op method
 * takes (encode → send → decode → exception); the others (malformed JSON, invalid UTF-8, wrong
 * envelope types, duplicate names, invalid ids) go through the client's transport as raw bytes.
 */
final class VectorsTest extends DaemonTestCase
{
    public function testEveryVectorFileIsRun(): void
    {
        $files = array_unique(array_column(Vectors::all(), 0));
        sort($files);
        $onDisk = array_map('basename', glob(Vectors::directory() . '/*.json') ?: []);
        sort($onDisk);
        self::assertSame($onDisk, $files);
        self::assertGreaterThanOrEqual(300, \count(Vectors::all()));
    }

    /** @dataProvider \MagicLink\Tests\Support\Vectors::all */
    public function testVector(string $file, \stdClass $case): void
    {
        $name = "{$file} {$case->name}";
        $envelope = Vectors::envelope($case);
        if ($envelope === null) {
            $reply = self::client()->transport()->exchange(Vectors::bytes($case), false);
            Vectors::assertReply($name, $case->expect, $reply);
            return;
        }

        // The client sends its own id and checks that the reply echoes it; the vector's id is
        // the request's (or null for none), which is what the daemon echoes.
        if (property_exists($case->expect, 'id')) {
            self::assertSame($envelope['id'], $case->expect->id, "{$name}: the vector's expected id is not its request's id");
        }
        try {
            $result = self::client()->call($envelope['op'], $envelope['params']);
        } catch (ServerException $e) {
            self::assertFalse($case->expect->ok, "{$name}: expected success, got " . \get_class($e) . ': ' . $e->getMessage());
            Vectors::assertException($name, $case->expect, $e);
            return;
        }
        self::assertTrue($case->expect->ok, "{$name}: expected an error, got a result: " . json_encode($result));
        Vectors::assertResult($name, $case->expect, $result);
    }
}
