<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/**
 * What `peek` says about a link, without using it. Call it from the GET handler of the link, so
 * that mail scanners and link previews that open links cannot burn them; call callback() only
 * when the user's browser submits (or when $flowMatches: the browser that asked).
 *
 * $reason ("unknown", "expired", "used") is set when not $valid; $emailMasked and $expiresAt
 * only for a token that exists.
 */
final class PeekResult
{
    public function __construct(
        public readonly bool $valid,
        public readonly ?string $reason,
        public readonly bool $flowMatches,
        public readonly ?string $emailMasked,
        public readonly ?int $expiresAt,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->bool('valid'),
            $f->optionalString('reason'),
            $f->bool('flow_matches'),
            $f->optionalString('email_masked'),
            $f->optionalInt('expires_at'),
        );
    }
}
