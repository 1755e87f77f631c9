<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `invalid_code`: the code typed for verify_code is wrong. After 3 wrong codes the flow's code is
 * dead (getAttemptsLeft() 0): the link still works, a new start() sends a new code.
 */
class InvalidCodeException extends ServerException
{
    /** How many more codes may be tried for this flow (details.attempts_left). */
    public function getAttemptsLeft(): int
    {
        $left = $this->getDetails()['attempts_left'] ?? null;
        return \is_int($left) && $left >= 0 ? $left : 0;
    }
}
