#!/usr/bin/env python3
"""Time from exec to ready: spawns the daemon (environment as given), polls its socket with
`hello` every 0.5 ms until it answers, stops it with SIGTERM. Repeats RUNS times and prints JSON
with every run in milliseconds.

  ready.py RUNS SOCKET -- DAEMON [ARGS...]
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time


def once(sock_path, argv):
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"ready.py: daemon exited with {proc.returncode}")
            if time.monotonic() - t0 > 30:
                raise SystemExit("ready.py: not ready after 30 s")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock_path)
                s.sendall(b'{"id":1,"op":"hello"}\n')
                reply = s.makefile("rb").readline()
                s.close()
                if b'"ok":true' in reply:
                    return (time.monotonic() - t0) * 1000
            except OSError:
                pass
            time.sleep(0.0005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()


if __name__ == "__main__":
    runs, sock_path = int(sys.argv[1]), sys.argv[2]
    argv = sys.argv[sys.argv.index("--") + 1:]
    times = [round(once(sock_path, argv), 1) for _ in range(runs)]
    ordered = sorted(times)
    print(json.dumps({"runs_ms": times, "median_ms": ordered[len(ordered) // 2], "min_ms": ordered[0]}))
