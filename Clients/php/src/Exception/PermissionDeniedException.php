<?php

declare(strict_types=1);

namespace MagicLink\Exception;

/**
 * `permission_denied`: an admin op from a peer that is not an administrator (root, admin_uids, admin_gids).
 */
class PermissionDeniedException extends ServerException
{
}
