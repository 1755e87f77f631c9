<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/** What `hello` says about the daemon. */
final class ServerInfo
{
    /** @param list<string> $ops */
    public function __construct(
        public readonly string $server,
        public readonly string $version,
        public readonly int $protocol,
        public readonly array $ops,
        public readonly int $maxLineBytes,
    ) {
    }

    public function supports(string $op): bool
    {
        return \in_array($op, $this->ops, true);
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self($f->string('server'), $f->string('version'), $f->int('protocol'), $f->strings('ops'), $f->int('max_line_bytes'));
    }
}
