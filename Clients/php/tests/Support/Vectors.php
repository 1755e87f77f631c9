<?php

declare(strict_types=1);

namespace MagicLink\Tests\Support;

use MagicLink\Exception\ServerException;
use PHPUnit\Framework\Assert;

/**
 * Protocol/vectors: loading, deciding which cases go through Client::call(), and the matching
 * rules of Protocol/vectors/README.md.
 */
final class Vectors
{
    public static function directory(): string
    {
        return \dirname(__DIR__, 4) . '/Protocol/vectors';
    }

    /** @return array<string, array{0: string, 1: \stdClass}> case name => [file, case], every case of every file */
    public static function all(): array
    {
        $files = glob(self::directory() . '/*.json') ?: [];
        if ($files === []) {
            throw new \RuntimeException('no vector files in ' . self::directory());
        }
        $cases = [];
        foreach ($files as $file) {
            $doc = json_decode((string) file_get_contents($file), false, 512, JSON_THROW_ON_ERROR);
            foreach ($doc->cases as $case) {
                if (isset($cases[$case->name])) {
                    throw new \RuntimeException("duplicate vector name {$case->name}");
                }
                $cases[$case->name] = [basename($file), $case];
            }
        }
        return $cases;
    }

    /** The request bytes of a case, without the line feed. */
    public static function bytes(\stdClass $case): string
    {
        if (isset($case->request_base64)) {
            $bytes = base64_decode($case->request_base64, true);
            if ($bytes === false) {
                throw new \RuntimeException('bad request_base64');
            }
            return $bytes;
        }
        return $case->request;
    }

    /**
     * The envelope to pass to Client::call() when the line is one the client could have written:
     * strict JSON (no duplicate names, at most 64 levels deep, which json_decode alone does not
     * check), a top-level object with a string `op`, `params` absent or an object, and an `id`
     * that is absent, null or valid (integer within ±(2^53−1), or a string of at most 256 bytes):
     * the client sends its own id, so a case about an invalid id can only be sent raw.
     *
     * @return array{op: string, params: \stdClass|array{}, id: int|string|null}|null
     */
    public static function envelope(\stdClass $case): ?array
    {
        if (!isset($case->request)) {
            return null;
        }
        try {
            // PHP counts one level more than JSON nesting: depth 65 allows the 64 levels of the spec.
            $decoded = json_decode($case->request, false, 65, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            return null;
        }
        if (!$decoded instanceof \stdClass || self::hasDuplicateNames($case->request)) {
            return null;
        }
        if (!property_exists($decoded, 'op') || !\is_string($decoded->op)) {
            return null;
        }
        if (property_exists($decoded, 'params') && !$decoded->params instanceof \stdClass) {
            return null;
        }
        $id = $decoded->id ?? null;
        $validId = $id === null
            || (\is_int($id) && abs($id) <= 9007199254740991) // 1.0 and 1e3 decode as floats
            || (\is_string($id) && \strlen($id) <= 256);
        if (!$validId) {
            return null;
        }
        return ['op' => $decoded->op, 'params' => $decoded->params ?? [], 'id' => $id];
    }

    /** Duplicate member names in any object, compared after unescaping. $json is valid JSON. */
    public static function hasDuplicateNames(string $json): bool
    {
        preg_match_all('/"(?:[^"\\\\]|\\\\.)*"|[{}\[\]:,]/s', $json, $tokens);
        $stack = [];
        foreach ($tokens[0] as $token) {
            switch ($token) {
                case '{':
                    $stack[] = ['object', [], true];
                    break;
                case '[':
                    $stack[] = ['array', [], false];
                    break;
                case '}':
                case ']':
                    array_pop($stack);
                    break;
                case ',':
                    $top = \count($stack) - 1;
                    if ($top >= 0 && $stack[$top][0] === 'object') {
                        $stack[$top][2] = true;
                    }
                    break;
                case ':':
                    $stack[\count($stack) - 1][2] = false;
                    break;
                default:
                    $top = \count($stack) - 1;
                    if ($top >= 0 && $stack[$top][0] === 'object' && $stack[$top][2]) {
                        $name = json_decode($token, false, 1, JSON_THROW_ON_ERROR);
                        if (isset($stack[$top][1][$name])) {
                            return true;
                        }
                        $stack[$top][1][$name] = true;
                    }
            }
        }
        return false;
    }

    /** Checks a raw reply line against `expect`, all members (id included). */
    public static function assertReply(string $name, \stdClass $expect, string $line): void
    {
        try {
            $reply = json_decode($line, false, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            Assert::fail("{$name}: reply is not JSON: {$e->getMessage()}");
        }
        Assert::assertInstanceOf(\stdClass::class, $reply, "{$name}: reply is not an object");
        Assert::assertTrue(property_exists($reply, 'ok') && \is_bool($reply->ok), "{$name}: reply has no boolean ok");
        Assert::assertSame($expect->ok, $reply->ok, "{$name}: ok");
        if (property_exists($expect, 'id')) {
            Assert::assertTrue(property_exists($reply, 'id'), "{$name}: reply has no id");
            Assert::assertTrue(self::equal($expect->id, $reply->id), "{$name}: id " . json_encode($reply->id) . ' != ' . json_encode($expect->id));
        }
        if ($expect->ok) {
            Assert::assertInstanceOf(\stdClass::class, $reply->result ?? null, "{$name}: result is not an object");
            self::assertResult($name, $expect, $reply->result);
        } else {
            $error = $reply->error ?? null;
            Assert::assertInstanceOf(\stdClass::class, $error, "{$name}: error is not an object");
            self::assertError(
                $name,
                $expect,
                $error->code ?? null,
                $error->retryable ?? null,
                ($error->details ?? null) instanceof \stdClass ? $error->details : null,
            );
        }
    }

    /** Checks `expect` against what Client::call() returned. */
    public static function assertResult(string $name, \stdClass $expect, mixed $result): void
    {
        if (property_exists($expect, 'result')) {
            Assert::assertTrue(
                self::subset($expect->result, $result),
                "{$name}: result " . json_encode($result) . ' does not match ' . json_encode($expect->result),
            );
        }
        foreach ($expect->result_keys ?? [] as $key) {
            Assert::assertTrue(self::hasMember($result, $key), "{$name}: result has no member {$key}");
        }
    }

    /** Checks `expect` against what Client::call() threw. */
    public static function assertException(string $name, \stdClass $expect, ServerException $e): void
    {
        $expectedClass = \get_class(ServerException::fromWire($e->getErrorCode(), '', false, []));
        Assert::assertSame($expectedClass, \get_class($e), "{$name}: exception class for {$e->getErrorCode()}");
        self::assertError($name, $expect, $e->getErrorCode(), $e->isRetryable(), $e->getDetails());
    }

    private static function assertError(string $name, \stdClass $expect, mixed $code, mixed $retryable, mixed $details): void
    {
        if (property_exists($expect, 'error_code')) {
            Assert::assertSame($expect->error_code, $code, "{$name}: error code");
        }
        if (property_exists($expect, 'retryable')) {
            Assert::assertSame($expect->retryable, $retryable, "{$name}: retryable");
        }
        if (property_exists($expect, 'details')) {
            Assert::assertNotNull($details, "{$name}: error has no details object");
            foreach (get_object_vars($expect->details) as $key => $value) {
                Assert::assertTrue(self::hasMember($details, (string) $key), "{$name}: details has no member {$key}");
                Assert::assertTrue(
                    self::equal($value, self::member($details, (string) $key)),
                    "{$name}: details.{$key} " . json_encode(self::member($details, (string) $key)) . ' != ' . json_encode($value),
                );
            }
        }
    }

    /**
     * Subset match: every member of the expected object is in $actual; nested objects again as
     * subsets; anything else equal exactly. $actual is a decoded object (stdClass) or what the
     * client returns (an associative array, where PHP cannot tell {} from []).
     */
    public static function subset(\stdClass $expected, mixed $actual): bool
    {
        if (!self::isObject($actual)) {
            return false;
        }
        foreach (get_object_vars($expected) as $key => $value) {
            $key = (string) $key;
            if (!self::hasMember($actual, $key)) {
                return false;
            }
            $other = self::member($actual, $key);
            if ($value instanceof \stdClass ? !self::subset($value, $other) : !self::equal($value, $other)) {
                return false;
            }
        }
        return true;
    }

    /** JSON equality: numbers by value, booleans never equal to numbers, objects and arrays deeply. */
    public static function equal(mixed $a, mixed $b): bool
    {
        if (\is_bool($a) || \is_bool($b) || $a === null || $b === null || \is_string($a) || \is_string($b)) {
            return $a === $b;
        }
        if ((\is_int($a) || \is_float($a)) && (\is_int($b) || \is_float($b))) {
            return $a == $b;
        }
        if ($a instanceof \stdClass || $b instanceof \stdClass || (\is_array($a) && !array_is_list($a)) || (\is_array($b) && !array_is_list($b))) {
            if (!self::isObject($a) || !self::isObject($b)) {
                return false;
            }
            $ka = array_map('strval', array_keys((array) $a));
            $kb = array_map('strval', array_keys((array) $b));
            sort($ka);
            sort($kb);
            if ($ka !== $kb) {
                return false;
            }
            foreach ($ka as $key) {
                if (!self::equal(self::member($a, $key), self::member($b, $key))) {
                    return false;
                }
            }
            return true;
        }
        if (\is_array($a) && \is_array($b)) {
            if (\count($a) !== \count($b)) {
                return false;
            }
            foreach ($a as $i => $value) {
                if (!self::equal($value, $b[$i])) {
                    return false;
                }
            }
            return true;
        }
        return false;
    }

    private static function isObject(mixed $value): bool
    {
        return $value instanceof \stdClass || (\is_array($value) && ($value === [] || !array_is_list($value)));
    }

    private static function hasMember(mixed $object, string $key): bool
    {
        return $object instanceof \stdClass ? property_exists($object, $key) : (\is_array($object) && \array_key_exists($key, $object));
    }

    private static function member(mixed $object, string $key): mixed
    {
        return $object instanceof \stdClass ? $object->{$key} : $object[$key];
    }
}
