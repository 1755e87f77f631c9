<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `internal_error`: a bug in the daemon (its log has more; the message says nothing about internals).
 */
class InternalErrorException extends ServerException
{
}
