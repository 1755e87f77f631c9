<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/** A user: `id` is a stable lower-case UUID, `email` the address as first seen. */
final class User
{
    public function __construct(
        public readonly string $id,
        public readonly string $email,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->string('id'), $f->string('email'));
    }
}
