<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `flow_mismatch`: the daemon runs with flow_binding: strict and the link was opened without the
 * flow of the browser that asked for it. The token still works in that browser.
 */
class FlowMismatchException extends ServerException
{
}
