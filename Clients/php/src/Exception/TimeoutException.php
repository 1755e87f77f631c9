<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * The connect timeout or the read timeout ran out. After a read timeout the connection has been
 * closed, so a late reply can never be taken for the answer to a later request.
 */
class TimeoutException extends TransportException
{
}
