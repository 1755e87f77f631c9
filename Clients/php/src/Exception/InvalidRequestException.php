<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `invalid_request`: a malformed request or a missing or wrong-typed member (getField()).
 */
class InvalidRequestException extends ServerException
{
    /** The member at fault as a path ("params.email"), when the daemon named one. */
    public function getField(): ?string
    {
        $field = $this->getDetails()['field'] ?? null;
        return \is_string($field) ? $field : null;
    }
}
