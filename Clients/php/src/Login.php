<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/**
 * A successful `callback`: set $session as the cookie value (it expires at $expiresAt, Unix
 * seconds; unused, at $idleExpiresAt) and redirect to $redirect.
 *
 * $session is a secret: var_dump(), print_r() and json_encode() show it as "[redacted]".
 */
final class Login implements \JsonSerializable
{
    public function __construct(
        #[\SensitiveParameter] public readonly string $session,
        public readonly int $expiresAt,
        public readonly int $idleExpiresAt,
        public readonly User $user,
        public readonly string $redirect,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->string('session'),
            $f->int('expires_at'),
            $f->int('idle_expires_at'),
            User::fromFields($f->object('user')),
            $f->string('redirect'),
        );
    }

    /** @return array<string, mixed> */
    public function __debugInfo(): array
    {
        return $this->jsonSerialize();
    }

    /** @return array<string, mixed> */
    public function jsonSerialize(): array
    {
        return [
            'session' => '[redacted]',
            'expiresAt' => $this->expiresAt,
            'idleExpiresAt' => $this->idleExpiresAt,
            'user' => $this->user,
            'redirect' => $this->redirect,
        ];
    }
}
