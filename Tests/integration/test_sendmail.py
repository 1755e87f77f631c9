"""The sendmail transport: the message is piped to a sendmail-compatible program as
`sendmail -t -i -f <from>`; its exit status decides between sent, retry and dead letter. The
program here is a small recording stand-in with the same interface as Postfix's or msmtp's."""

import email.parser
import email.policy
import json
import sqlite3
import time

from conftest import ok, unique_email

FAKE_SENDMAIL = """#!/usr/bin/env python3
import json, os, sys
spool = os.environ.get("FAKE_SENDMAIL_SPOOL") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "spool")
os.makedirs(spool, exist_ok=True)
data = sys.stdin.buffer.read()
statuses = os.path.join(spool, "statuses")
status = 0
if os.path.exists(statuses):
    lines = open(statuses).read().split()
    if lines:
        status = int(lines[0])
        open(statuses, "w").write(" ".join(lines[1:]))
n = len([f for f in os.listdir(spool) if f.endswith(".json")])
# Written aside and renamed: a test polling the spool never reads a half-written record.
record = os.path.join(spool, f"{n:04d}.json")
with open(record + ".part", "w") as f:
    json.dump({"argv": sys.argv[1:], "status": status, "message": data.decode("utf-8", "replace")}, f)
os.rename(record + ".part", record)
if status:
    sys.stderr.write(f"fake sendmail: failing with {status}\\n")
sys.exit(status)
"""


def make_sendmail(directory, statuses=()):
    program = directory / "sendmail"
    program.write_text(FAKE_SENDMAIL)
    program.chmod(0o755)
    spool = directory / "spool"
    spool.mkdir()
    (spool / "statuses").write_text(" ".join(str(s) for s in statuses))
    return program, spool


def calls(spool):
    return [json.loads(p.read_text()) for p in sorted(spool.glob("*.json"))]


def wait_calls(spool, n, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = calls(spool)
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {n} sendmail runs, got {calls(spool)}")


def env_for(program):
    return {
        "MAGICLINKD_MAIL_TRANSPORT": "sendmail",
        "MAGICLINKD_SENDMAIL_PATH": str(program),
        "MAGICLINKD_MAIL_FROM": "Shop <login@shop.example>",
        "MAGICLINKD_MAIL_RETRY_MIN_DELAY": "1",
        "MAGICLINKD_MAIL_RETRY_MAX_DELAY": "1",
    }


def state(daemon):
    with sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True) as db:
        return db.execute("SELECT state, attempts, last_error FROM mail_queue").fetchall()


def test_message_is_piped_with_t_i_and_envelope_sender(daemon_factory, tmp_path):
    program, spool = make_sendmail(tmp_path)
    d = daemon_factory(env_for(program))
    addr = unique_email("sm")
    ok(d.call("start", {"email": addr}))
    [run] = wait_calls(spool, 1)
    assert run["argv"] == ["-t", "-i", "-f", "login@shop.example"]
    assert "\r\n" not in run["message"], "sendmail gets local line ends"
    msg = email.parser.Parser(policy=email.policy.default).parsestr(run["message"])
    assert [a.addr_spec for a in msg["To"].addresses] == [addr]
    assert "token=" in msg.get_body(("plain",)).get_content()
    time.sleep(0.3)
    assert state(d) == [("sent", 1, None)]


def test_tempfail_is_retried_then_sent(daemon_factory, tmp_path):
    program, spool = make_sendmail(tmp_path, statuses=[75])
    d = daemon_factory(env_for(program))
    ok(d.call("start", {"email": unique_email("sm-retry")}))
    runs = wait_calls(spool, 2)
    assert [r["status"] for r in runs] == [75, 0]
    time.sleep(0.3)
    assert state(d)[0][:2] == ("sent", 2)


def test_no_such_user_is_a_dead_letter(daemon_factory, tmp_path):
    program, spool = make_sendmail(tmp_path, statuses=[67])
    d = daemon_factory(env_for(program))
    ok(d.call("start", {"email": unique_email("sm-dead")}))
    wait_calls(spool, 1)
    time.sleep(2.5)
    assert len(calls(spool)) == 1, "not retried"
    [(st, attempts, last_error)] = state(d)
    assert st == "failed" and attempts == 1 and "67" in last_error


def test_missing_program_is_retried_not_lost(daemon_factory, tmp_path):
    d = daemon_factory(env_for(tmp_path / "no-such-sendmail"))
    ok(d.call("start", {"email": unique_email("sm-missing")}))
    time.sleep(2.5)
    [(st, attempts, last_error)] = state(d)
    assert st == "queued" and attempts >= 1 and "no-such-sendmail" in last_error
