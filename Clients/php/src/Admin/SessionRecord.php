<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/**
 * One live session as `admin_sessions` lists it. $handle names the session for adminRevoke()
 * but cannot be used as one.
 */
final class SessionRecord
{
    public function __construct(
        public readonly string $handle,
        public readonly string $userId,
        public readonly string $email,
        public readonly int $createdAt,
        public readonly int $expiresAt,
        public readonly int $idleExpiresAt,
        public readonly ?string $ip,
        public readonly ?string $userAgent,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->string('handle'),
            $f->string('user_id'),
            $f->string('email'),
            $f->int('created_at'),
            $f->int('expires_at'),
            $f->int('idle_expires_at'),
            $f->optionalString('ip'),
            $f->optionalString('user_agent'),
        );
    }
}
