<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `invalid_email`: the address is not one plain local@domain address (show the form again).
 */
class InvalidEmailException extends ServerException
{
}
