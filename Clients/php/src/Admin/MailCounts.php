<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/** How many messages of the durable mail queue are in each state. */
final class MailCounts
{
    public function __construct(
        public readonly int $queued,
        public readonly int $sending,
        public readonly int $sent,
        public readonly int $failed,
        public readonly int $expired,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->int('queued'), $f->int('sending'), $f->int('sent'), $f->int('failed'), $f->int('expired'));
    }
}
