<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/** A live session (the answer to `session`): whose it is and when it ends. */
final class SessionInfo
{
    public function __construct(
        public readonly User $user,
        public readonly int $expiresAt,
        public readonly int $idleExpiresAt,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(User::fromFields($f->object('user')), $f->int('expires_at'), $f->int('idle_expires_at'));
    }
}
