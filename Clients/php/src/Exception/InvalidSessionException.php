<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `invalid_session`: the session is unknown, logged out, expired or idle-expired.
 */
class InvalidSessionException extends ServerException
{
}
