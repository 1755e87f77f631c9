<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/**
 * `admin_retry`: $retried, or why not ($reason: "not_found", "not_a_dead_letter",
 * "link_expired", or a reason added later).
 */
final class RetryResult
{
    public function __construct(
        public readonly bool $retried,
        public readonly ?string $reason,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->bool('retried'), $f->optionalString('reason'));
    }
}
