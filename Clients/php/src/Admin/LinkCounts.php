<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/**
 * What became of the links looked at with `peek` (over the tokens the daemon still keeps, about
 * a day): peeked and never used (mail scanners, link previews, people who gave up), or peeked
 * and then used.
 */
final class LinkCounts
{
    public function __construct(
        public readonly int $peekedNeverUsed,
        public readonly int $peekedThenUsed,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->int('peeked_never_used'), $f->int('peeked_then_used'));
    }
}
