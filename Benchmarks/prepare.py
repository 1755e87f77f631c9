#!/usr/bin/env python3
"""Benchmark data for magiclinkd, written straight into a database the daemon has migrated.

  prepare.py db DATABASE OUTDIR SESSIONS TOKENS
      Inserts SESSIONS live sessions (over SESSIONS/4 users) and TOKENS unused login tokens, in
      one transaction, the way the daemon stores them: id_hash / hash / flow_hash are SHA-256 of
      the 43-char base64url text. Writes OUTDIR/sessions.txt (one session text a line) and
      OUTDIR/tokens.txt ("token flow" a line) for the load generator.
  prepare.py resp KEYFILE
      Writes RESP SET commands for redis-cli --pipe: each session text as a key, with a value
      shaped like the daemon's session result.
"""
import base64
import hashlib
import os
import sqlite3
import sys
import time


def secrets_text(count):
    raw = os.urandom(32 * count)
    enc = base64.urlsafe_b64encode
    return [enc(raw[i * 32:(i + 1) * 32]).rstrip(b"=").decode() for i in range(count)]


def uuid_text(raw):
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def sha(text):
    return hashlib.sha256(text.encode()).digest()


def prepare_db(database, outdir, n_sessions, n_tokens):
    now = int(time.time())
    n_users = max(1, n_sessions // 4)
    started = time.monotonic()
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("BEGIN")
    raw_ids = os.urandom(16 * n_users)
    users = [(uuid_text(raw_ids[i * 16:(i + 1) * 16]), f"u{i}@example.com") for i in range(n_users)]
    db.executemany(
        "INSERT INTO users (id, app_id, email, email_key, created_at) VALUES (?, 'default', ?, ?, ?)",
        sorted((uid, email, email, now) for uid, email in users))

    texts = secrets_text(n_sessions)
    rows = sorted((sha(t), users[i % n_users][0], now, now + 30 * 86400, now + 7 * 86400, now, "10.0.0.1", "loadgen")
                  for i, t in enumerate(texts))
    db.executemany(
        "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, idle_expires_at, touched_at, ip, user_agent) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    del rows

    tokens = secrets_text(n_tokens)
    flows = secrets_text(n_tokens)
    trows = sorted((sha(t), users[i % n_users][1], users[i % n_users][1], "/", now, now + 4 * 3600, "10.0.0.1", "loadgen", sha(f))
                   for i, (t, f) in enumerate(zip(tokens, flows)))
    db.executemany(
        "INSERT INTO login_tokens (hash, email, email_key, redirect, created_at, expires_at, ip, user_agent, flow_hash, app_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'default')", trows)
    del trows
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()

    with open(os.path.join(outdir, "sessions.txt"), "w") as f:
        f.write("\n".join(texts) + "\n")
    with open(os.path.join(outdir, "tokens.txt"), "w") as f:
        f.write("".join(f"{t} {fl}\n" for t, fl in zip(tokens, flows)))
    print(f"prepare: {n_users} users, {n_sessions} sessions, {n_tokens} tokens in {time.monotonic() - started:.1f} s",
          file=sys.stderr)


def resp(keyfile):
    out = sys.stdout.buffer
    exp = int(time.time()) + 30 * 86400
    chunk = []
    with open(keyfile) as f:
        for i, line in enumerate(f):
            key = line.strip().encode()
            if not key:
                continue
            value = (b'{"user":{"id":"%s","email":"u%d@example.com"},"expires_at":%d,"idle_expires_at":%d}'
                     % (uuid_text(hashlib.md5(key).digest()).encode(), i, exp, exp - 23 * 86400))
            chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
            if len(chunk) >= 10000:
                out.write(b"".join(chunk))
                chunk = []
    out.write(b"".join(chunk))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "db":
        prepare_db(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) == 3 and sys.argv[1] == "resp":
        resp(sys.argv[2])
    else:
        sys.exit(__doc__)
