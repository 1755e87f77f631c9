<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * Marker interface implemented by every exception this library throws.
 *
 *     try { ... } catch (\MagicLink\Exception\MagicLinkException $e) { ... }
 *
 * catches them all. Two branches implement it: TransportException (the daemon could not be
 * reached, did not answer in time, or answered something that is not the protocol) and
 * ServerException (the daemon answered with an error code).
 */
interface MagicLinkException extends \Throwable
{
}
