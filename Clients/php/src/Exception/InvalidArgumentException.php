<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * A caller passed something the client cannot send (e.g. a list as `params`, a non-positive
 * timeout). Nothing was sent.
 */
class InvalidArgumentException extends \InvalidArgumentException implements MagicLinkException
{
}
