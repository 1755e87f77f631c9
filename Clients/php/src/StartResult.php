<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/**
 * `start` queued the mail. The link (and code) work until $expiresAt (Unix seconds).
 *
 * $flow is a secret for the browser that asked: keep it where only that browser can present it
 * again (an HttpOnly, SameSite=Lax cookie) and pass it to callback(), peek() and verifyCode().
 * var_dump(), print_r() and json_encode() show it as "[redacted]".
 */
final class StartResult implements \JsonSerializable
{
    public function __construct(
        public readonly int $expiresAt,
        #[\SensitiveParameter] public readonly string $flow,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->int('expires_at'), $f->string('flow'));
    }

    /** @return array<string, mixed> */
    public function __debugInfo(): array
    {
        return $this->jsonSerialize();
    }

    /** @return array<string, mixed> */
    public function jsonSerialize(): array
    {
        return ['expiresAt' => $this->expiresAt, 'flow' => '[redacted]'];
    }
}
