<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/** A mail that was never delivered (`admin_dead_letters`): state "failed" or "expired". */
final class DeadLetter
{
    public function __construct(
        public readonly string $messageId,
        public readonly string $recipient,
        public readonly string $state,
        public readonly int $attempts,
        public readonly int $createdAt,
        public readonly int $expiresAt,
        public readonly ?int $finishedAt,
        public readonly ?string $lastError,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->string('message_id'),
            $f->string('recipient'),
            $f->string('state'),
            $f->int('attempts'),
            $f->int('created_at'),
            $f->int('expires_at'),
            $f->optionalInt('finished_at'),
            $f->optionalString('last_error'),
        );
    }
}
