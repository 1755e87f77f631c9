<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/**
 * The daemon's memory of live sessions: its capacity (0 when off), the entries held, and since
 * the start the `session` calls answered from it (hits) and the well-formed ones that were not (misses).
 */
final class SessionCacheCounts
{
    public function __construct(
        public readonly int $capacity,
        public readonly int $entries,
        public readonly int $hits,
        public readonly int $misses,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->int('capacity'), $f->int('entries'), $f->int('hits'), $f->int('misses'));
    }
}
