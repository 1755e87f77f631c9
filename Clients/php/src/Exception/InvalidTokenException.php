<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `invalid_token`: the sign-in link is unknown, expired (or replaced by a newer one) or already used.
 */
class InvalidTokenException extends ServerException
{
    public const REASON_UNKNOWN = 'unknown';
    public const REASON_EXPIRED = 'expired';
    public const REASON_USED = 'used';

    /** "unknown", "expired" or "used" (details.reason); "unknown" if the daemon gave none. */
    public function getReason(): string
    {
        $reason = $this->getDetails()['reason'] ?? null;
        return \is_string($reason) ? $reason : self::REASON_UNKNOWN;
    }
}
