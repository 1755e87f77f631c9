<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * The daemon could not be reached, did not answer in time, or broke the protocol.
 *
 * isOutcomeUnknown() is true when the request had already been sent when the failure happened:
 * the daemon may or may not have carried it out (a `start` may have queued its mail). The client
 * never repeats such a request by itself, except `hello` and `session` (and the read-only admin
 * ops), which are safe to repeat.
 */
class TransportException extends \RuntimeException implements MagicLinkException
{
    public function __construct(string $message, private readonly bool $outcomeUnknown = false, ?\Throwable $previous = null)
    {
        parent::__construct($message, 0, $previous);
    }

    public function isOutcomeUnknown(): bool
    {
        return $this->outcomeUnknown;
    }
}
