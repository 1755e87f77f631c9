<?php

declare(strict_types=1);

namespace MagicLink;

use MagicLink\Internal\Fields;

/**
 * What `hello` says about the daemon. $apps lists the ids of the apps it serves (empty from a
 * daemon older than apps, which serves one and takes no `app`).
 */
final class ServerInfo
{
    /**
     * @param list<string> $ops
     * @param list<string> $apps
     */
    public function __construct(
        public readonly string $server,
        public readonly string $version,
        public readonly int $protocol,
        public readonly array $ops,
        public readonly int $maxLineBytes,
        public readonly array $apps = [],
    ) {
    }

    public function servesApp(string $app): bool
    {
        return \in_array($app, $this->apps, true);
    }

    public function supports(string $op): bool
    {
        return \in_array($op, $this->ops, true);
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->string('server'),
            $f->string('version'),
            $f->int('protocol'),
            $f->strings('ops'),
            $f->int('max_line_bytes'),
            $f->optionalStrings('apps') ?? [],
        );
    }
}
