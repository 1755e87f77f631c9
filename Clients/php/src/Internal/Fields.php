<?php

declare(strict_types=1);

namespace MagicLink\Internal;

use MagicLink\Exception\ProtocolException;

/**
 * Typed access to a decoded reply object; a missing or wrong-typed member is a
 * ProtocolException naming the member (never its value, which may be a secret).
 *
 * @internal
 */
final class Fields
{
    /** @param array<array-key, mixed> $data */
    public function __construct(private readonly array $data, private readonly string $where)
    {
    }

    public function string(string $key): string
    {
        $value = $this->data[$key] ?? null;
        if (!\is_string($value)) {
            throw $this->bad($key, 'a string');
        }
        return $value;
    }

    public function optionalString(string $key): ?string
    {
        $value = $this->data[$key] ?? null;
        if ($value !== null && !\is_string($value)) {
            throw $this->bad($key, 'a string');
        }
        return $value;
    }

    public function int(string $key): int
    {
        $value = $this->data[$key] ?? null;
        if (!\is_int($value)) {
            throw $this->bad($key, 'an integer');
        }
        return $value;
    }

    public function optionalInt(string $key): ?int
    {
        $value = $this->data[$key] ?? null;
        if ($value !== null && !\is_int($value)) {
            throw $this->bad($key, 'an integer');
        }
        return $value;
    }

    public function bool(string $key): bool
    {
        $value = $this->data[$key] ?? null;
        if (!\is_bool($value)) {
            throw $this->bad($key, 'a boolean');
        }
        return $value;
    }

    /** Whether `$key` is present and not null. */
    public function has(string $key): bool
    {
        return ($this->data[$key] ?? null) !== null;
    }

    public function object(string $key): self
    {
        $value = $this->data[$key] ?? null;
        if (!\is_array($value) || ($value !== [] && array_is_list($value))) {
            throw $this->bad($key, 'an object');
        }
        return new self($value, $this->where . '.' . $key);
    }

    /** @return list<self> */
    public function objects(string $key): array
    {
        $items = [];
        foreach ($this->list($key) as $i => $value) {
            if (!\is_array($value) || ($value !== [] && array_is_list($value))) {
                throw $this->bad($key . '[' . $i . ']', 'an object');
            }
            $items[] = new self($value, $this->where . '.' . $key . '[' . $i . ']');
        }
        return $items;
    }

    /** @return list<string> */
    public function strings(string $key): array
    {
        $items = $this->list($key);
        foreach ($items as $i => $value) {
            if (!\is_string($value)) {
                throw $this->bad($key . '[' . $i . ']', 'a string');
            }
        }
        return $items;
    }

    /** @return list<string>|null null when the member is missing (or null) */
    public function optionalStrings(string $key): ?array
    {
        return ($this->data[$key] ?? null) === null ? null : $this->strings($key);
    }

    /** @return list<mixed> */
    private function list(string $key): array
    {
        $value = $this->data[$key] ?? null;
        if (!\is_array($value) || !array_is_list($value)) {
            throw $this->bad($key, 'an array');
        }
        return $value;
    }

    private function bad(string $key, string $type): ProtocolException
    {
        return new ProtocolException(sprintf('reply from magiclinkd: %s.%s is missing or not %s', $this->where, $key, $type), true);
    }
}
