<?php

declare(strict_types=1);

namespace MagicLink\Internal;

/**
 * The connection broke; $sent tells whether any byte of the request had left. Never escapes
 * Transport::exchange(), which turns it into a retry or a ConnectionException.
 *
 * @internal
 */
final class BrokenConnection extends \RuntimeException
{
    public function __construct(string $message, public readonly bool $sent)
    {
        parent::__construct($message);
    }
}
