<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `request_too_large`: the request line was over the daemon's max_line_bytes (the daemon closed the connection; the client reconnects for the next call).
 */
class RequestTooLargeException extends ServerException
{
    public function getMaxLineBytes(): ?int
    {
        $max = $this->getDetails()['max_line_bytes'] ?? null;
        return \is_int($max) ? $max : null;
    }
}
