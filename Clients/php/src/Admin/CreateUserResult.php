<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;
use MagicLink\User;

/**
 * `admin_create_user`: the user with that address, and whether this call $created it (false:
 * it existed already and is returned unchanged).
 */
final class CreateUserResult
{
    public function __construct(
        public readonly User $user,
        public readonly bool $created,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(User::fromFields($f->object('user')), $f->bool('created'));
    }
}
