<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `unavailable` (retryable): the daemon cannot serve now (database busy, shutting down, mail queue full).
 */
class UnavailableException extends ServerException
{
    /** details.reason when the daemon gave one, e.g. "mail_queue_full". */
    public function getReason(): ?string
    {
        $reason = $this->getDetails()['reason'] ?? null;
        return \is_string($reason) ? $reason : null;
    }
}
