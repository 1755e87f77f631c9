<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `rate_limited` (retryable): too many sign-in requests for this address or IP; nothing was sent.
 */
class RateLimitedException extends ServerException
{
    /** Seconds until one more request would be accepted (details.retry_after_s, at least 1). */
    public function getRetryAfter(): int
    {
        $seconds = $this->getDetails()['retry_after_s'] ?? null;
        return \is_int($seconds) && $seconds >= 1 ? $seconds : 1;
    }
}
