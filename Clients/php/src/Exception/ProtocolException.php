<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * The daemon's reply was not valid protocol: not JSON, the wrong `id`, a reply line over the
 * size limit (the connection has then been closed), or a result missing a member or with one of
 * the wrong type (say, a newer daemon that changed a result).
 */
class ProtocolException extends TransportException
{
}
