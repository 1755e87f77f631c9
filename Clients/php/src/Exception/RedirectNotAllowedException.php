<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `redirect_not_allowed`: the redirect is neither a local path nor on an allowed origin.
 */
class RedirectNotAllowedException extends ServerException
{
}
