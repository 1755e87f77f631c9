<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * Could not connect (no socket at the path, connection refused, permission denied), or the
 * connection broke before the reply arrived.
 */
class ConnectionException extends TransportException
{
}
