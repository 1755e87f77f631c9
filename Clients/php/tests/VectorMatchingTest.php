<?php

declare(strict_types=1);

namespace MagicLink\Tests;

use MagicLink\Tests\Support\Vectors;
use PHPUnit\Framework\TestCase;

/** The vector runner's own rules (vectors/README.md, "Matching rules"), so that it can fail. */
final class VectorMatchingTest extends TestCase
{
    private static function j(string $json): mixed
    {
        return json_decode($json, false, 512, JSON_THROW_ON_ERROR);
    }

    public function testJsonEquality(): void
    {
        self::assertTrue(Vectors::equal(1, 1.0));
        self::assertFalse(Vectors::equal(1, true));
        self::assertFalse(Vectors::equal(0, false));
        self::assertFalse(Vectors::equal(null, false));
        self::assertFalse(Vectors::equal(1, '1'));
        self::assertFalse(Vectors::equal('é', "e\u{301}"));
        self::assertTrue(Vectors::equal(self::j('[1,{"a":[true]}]'), self::j('[1.0,{"a":[true]}]')));
        self::assertFalse(Vectors::equal(self::j('[1,2]'), self::j('[2,1]')));
        self::assertFalse(Vectors::equal(self::j('{"a":1}'), self::j('{"a":1,"b":2}')));
        self::assertFalse(Vectors::equal(self::j('{"a":1}'), self::j('[1]')));
    }

    public function testSubsetMatch(): void
    {
        $expected = self::j('{"server":"magiclinkd","ops":["hello"],"nested":{"a":1}}');
        self::assertTrue(Vectors::subset($expected, self::j('{"server":"magiclinkd","ops":["hello"],"nested":{"a":1,"b":2},"x":0}')));
        self::assertTrue(Vectors::subset($expected, ['server' => 'magiclinkd', 'ops' => ['hello'], 'nested' => ['a' => 1, 'b' => 2]]));
        self::assertFalse(Vectors::subset($expected, self::j('{"server":"magiclinkd","ops":["hello","start"],"nested":{"a":1}}')), 'arrays match exactly');
        self::assertFalse(Vectors::subset($expected, self::j('{"server":"magiclinkd","ops":["hello"],"nested":{"a":true}}')));
        self::assertFalse(Vectors::subset($expected, self::j('{"server":"magiclinkd","ops":["hello"]}')));
        self::assertTrue(Vectors::subset(self::j('{}'), self::j('{"anything":1}')));
        self::assertFalse(Vectors::subset(self::j('{}'), [1, 2]), 'a list is not an object');
    }

    public function testDuplicateNames(): void
    {
        self::assertTrue(Vectors::hasDuplicateNames('{"op":"a","o\u0070":"b"}'));
        self::assertTrue(Vectors::hasDuplicateNames('{"x":[{"y":1,"y":2}]}'));
        self::assertFalse(Vectors::hasDuplicateNames('{"op":"a","Op":"b"}'));
        self::assertFalse(Vectors::hasDuplicateNames('{"a":{"b":1},"b":{"a":1},"s":"\"a\":"}'));
        self::assertFalse(Vectors::hasDuplicateNames('{"a":["a","a"]}'));
    }

    public function testWhichCasesGoThroughTheClient(): void
    {
        $case = static fn (string $request): \stdClass => (object) ['request' => $request];
        self::assertNotNull(Vectors::envelope($case('{"id":"x","op":"hello","params":{}}')));
        self::assertNotNull(Vectors::envelope($case('{"op":"hello"}')));
        self::assertNotNull(Vectors::envelope($case('{"id":null,"op":"nope"}')));
        self::assertNull(Vectors::envelope($case('{"id":1,"op":"hello","params":[]}')));
        self::assertNull(Vectors::envelope($case('{"id":1.0,"op":"hello"}')));
        self::assertNull(Vectors::envelope($case('{"id":9007199254740992,"op":"hello"}')));
        self::assertNull(Vectors::envelope($case('{"id":1,"op":1}')));
        self::assertNull(Vectors::envelope($case('{"id":1,"op":"hello","op":"hello"}')));
        self::assertNull(Vectors::envelope($case("\u{FEFF}" . '{"op":"hello"}')));
        self::assertNull(Vectors::envelope((object) ['request_base64' => 'e30=']));
    }
}
