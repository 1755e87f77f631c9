<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `unknown_op`: the daemon does not know this op (an older daemon?).
 */
class UnknownOpException extends ServerException
{
    public function getUnknownOp(): ?string
    {
        $op = $this->getDetails()['op'] ?? null;
        return \is_string($op) ? $op : null;
    }
}
