<?php

declare(strict_types=1);

namespace MagicLink\Admin;

use MagicLink\Internal\Fields;

/** `admin_status`: the daemon's version, uptime and counts (users, sessions, mail, peeked links). */
final class Status
{
    public function __construct(
        public readonly string $version,
        public readonly int $startedAt,
        public readonly int $uptimeSeconds,
        public readonly int $users,
        public readonly int $liveSessions,
        public readonly MailCounts $mail,
        public readonly LinkCounts $links,
        /** Null from a daemon without a session cache. */
        public readonly ?SessionCacheCounts $sessionCache = null,
    ) {
    }

    /** @internal */
    public static function fromFields(Fields $f): self
    {
        return new self(
            $f->string('version'),
            $f->int('started_at'),
            $f->int('uptime_s'),
            $f->int('users'),
            $f->int('live_sessions'),
            MailCounts::fromFields($f->object('mail')),
            LinkCounts::fromFields($f->object('links')),
            $f->has('session_cache') ? SessionCacheCounts::fromFields($f->object('session_cache')) : null,
        );
    }
}
