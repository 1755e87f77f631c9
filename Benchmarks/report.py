#!/usr/bin/env python3
"""Turns the records of one benchmark run (JSON lines) into results/latest.json and latest.md.

  report.py RECORDS.jsonl OUTDIR

Records: load generator results (they have "scenario"; "label" holds N for session/get), and
{"kind": "rss" | "ready" | "config", ...} written by Benchmarks/run.

A figure measured in several rounds (records with "round") is reported as the median of its
rounds, with every round kept under "rounds"; its ratio to Redis is the median of the ratios of
the rounds, each against the Redis figure measured right after it.
"""
import json
import statistics
import os
import platform
import subprocess
import sys
import time


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ""


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": int(sh("nproc") or 0),
        "cpu": model,
        "kernel": platform.release(),
        "swift": sh("swift --version 2>&1 | head -1"),
        "redis": sh("redis-server --version"),
        "sqlite": sh("pkg-config --modversion sqlite3"),
        "memory_total": sh("awk '/MemTotal/{print $2\" kB\"}' /proc/meminfo"),
        "loadavg_at_report": sh("cat /proc/loadavg"),
    }


def n_of(r):
    try:
        return int(r.get("label") or 0)
    except ValueError:
        return 0


def human_n(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def aggregate(loads):
    """One row per figure, in the order first measured; rounds folded into their medians."""
    groups = {}
    for r in loads:
        key = (r["target"], r["scenario"], r["conns"], n_of(r), r.get("variant"))
        groups.setdefault(key, []).append(r)
    rows = []
    for runs in groups.values():
        if len(runs) == 1:
            rows.append(dict(runs[0]))
            continue
        row = dict(runs[0])
        for field in ("ops_per_s", "mean_us", "p50_us", "p99_us", "p999_us"):
            row[field] = round(statistics.median(r[field] for r in runs), 1)
        row["ops_per_s"] = round(row["ops_per_s"])
        row["max_us"] = max(r["max_us"] for r in runs)
        for field in ("requests", "errors"):
            row[field] = sum(r[field] for r in runs)
        row["exhausted"] = any(r.get("exhausted") for r in runs)
        row["rounds"] = [{"round": r.get("round"), "ops_per_s": r["ops_per_s"], "p99_us": r["p99_us"]} for r in runs]
        row.pop("round", None)
        rows.append(row)
    return rows


def main(path, outdir):
    records = [json.loads(line) for line in open(path) if line.strip()]
    loads = aggregate([r for r in records if "scenario" in r])
    rss = [r for r in records if r.get("kind") == "rss"]
    ready = next((r for r in records if r.get("kind") == "ready"), None)
    config = next((r for r in records if r.get("kind") == "config"), {})

    def redis(scenario, conns, n=0):
        for r in loads:
            if r["target"] == "redis" and r["scenario"] == scenario and r["conns"] == conns and (n == 0 or n_of(r) == n):
                return r
        return None

    rows = []
    for r in loads:
        if r["target"] != "magiclinkd":
            continue
        n = n_of(r)
        match = {"session": ("get", n), "hello": ("ping", 0)}.get(r["scenario"])
        ref = redis(match[0], r["conns"], match[1]) if match else None
        row = dict(r)
        if ref:
            row["redis_scenario"] = ref["scenario"]
            row["redis_ops_per_s"] = ref["ops_per_s"]
            row["redis_p99_us"] = ref["p99_us"]
            row["ratio_to_redis"] = round(r["ops_per_s"] / ref["ops_per_s"], 3) if ref["ops_per_s"] else None
            # Rounds pair up by number: each daemon figure against the Redis one measured next.
            theirs = {x["round"]: x["ops_per_s"] for x in ref.get("rounds", [])}
            ratios = [x["ops_per_s"] / theirs[x["round"]] for x in r.get("rounds", []) if theirs.get(x["round"])]
            if ratios:
                row["ratio_to_redis"] = round(statistics.median(ratios), 3)
                row["ratio_rounds"] = [round(x, 3) for x in ratios]
        rows.append(row)

    # Targets of issue 7, on the daemon as shipped (records without a variant).
    def find(scenario, conns, n=None, variant=None):
        for r in rows:
            if r["scenario"] == scenario and r["conns"] == conns and (n is None or n_of(r) == n) and r.get("variant") == variant:
                return r
        return None

    targets = []

    def target(name, value, limit, met, unit=""):
        targets.append({"target": name, "measured": value, "limit": limit, "met": met, "unit": unit})

    # The same targets for `session` without the cache, for reference (not targets themselves).
    reference = []
    small = min((n_of(r) for r in rows if r["scenario"] == "session"), default=0)
    large = max((n_of(r) for r in rows if r["scenario"] == "session"), default=0)
    for c in sorted({r["conns"] for r in rows if r["scenario"] == "session"}):
        s = find("session", c, small)
        if s and s.get("ratio_to_redis") is not None:
            target(f"session N={human_n(small)} c={c}: ops/s vs Redis GET", s["ratio_to_redis"], ">= 1.0x", s["ratio_to_redis"] >= 1.0, "x")
    cmax = max((r["conns"] for r in rows if r["scenario"] == "session"), default=0)
    s = find("session", cmax, small)
    if s:
        target(f"session N={human_n(small)} c={cmax}: p99", s["p99_us"], "<= 1000 us", s["p99_us"] <= 1000, "us")
    for op in ("start", "callback"):
        r = find(op, cmax)
        if r:
            target(f"{op} c={cmax}: ops/s", r["ops_per_s"], ">= 5000/s", r["ops_per_s"] >= 5000 and r["errors"] == 0, "/s")
    if large > small:
        for c in sorted({r["conns"] for r in rows if r["scenario"] == "session"}):
            a, b = find("session", c, small), find("session", c, large)
            if a and b and b["ops_per_s"]:
                cost = round(a["ops_per_s"] / b["ops_per_s"], 3)
                target(f"session c={c}: cost with N={human_n(large)} / N={human_n(small)}", cost, "<= 1.2x", cost <= 1.2, "x")
            a, b = find("session", c, small, "uncached"), find("session", c, large, "uncached")
            if a and b and b["ops_per_s"]:
                reference.append({"what": f"session without cache c={c}: cost with N={human_n(large)} / N={human_n(small)}",
                                  "value": round(a["ops_per_s"] / b["ops_per_s"], 3)})
            # The small N fits the default cache, so its plain row is already "cache holds all".
            a, b = find("session", c, small), find("session", c, large, "cache holds all")
            if a and b and b["ops_per_s"]:
                reference.append({"what": f"session with a cache that holds every session c={c}: cost with N={human_n(large)} / N={human_n(small)}",
                                  "value": round(a["ops_per_s"] / b["ops_per_s"], 3)})
    idle = [r for r in rss if r.get("phase") == "idle"]
    if idle:
        v = round(min(r["kib"] for r in idle) / 1024, 1)
        target("idle RSS (smallest database)", v, "<= 20 MiB", v <= 20, "MiB")
    if ready:
        target("exec to ready (median)", ready["median_ms"], "<= 100 ms", ready["median_ms"] <= 100, "ms")

    result = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "config": config,
        "results": rows,
        "redis": [r for r in loads if r["target"] == "redis"],
        "rss": rss,
        "ready": ready,
        "targets": targets,
        "reference": reference,
    }
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "latest.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    m = result["machine"]
    md = []
    md.append(f"Measured {result['generated_at']} on {m['nproc']} × {m['cpu']}, Linux {m['kernel']}, "
              f"{m['swift']}, {m['redis'].split(' sha=')[0]}, SQLite {m['sqlite']}. "
              f"Closed loop, one request in flight per connection; {config.get('duration_s', '?')} s per "
              f"figure after {config.get('warmup_s', '?')} s warm-up; load generator, daemon and Redis share the "
              f"{m['nproc']} cores. Figures compared with Redis are the median of {config.get('rounds', 1)} rounds, "
              f"daemon and Redis alternating; × Redis is the median of the rounds' ratios (all rounds in latest.json).")
    md.append("")
    md.append("| op | N | c | ops/s | p50 µs | p99 µs | p99.9 µs | errors | Redis (same c) ops/s | × Redis | × Redis by round |")
    md.append("|---|---|---|---:|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        ref = f"{r['redis_scenario'].upper()} {r['redis_ops_per_s']:,}" if "redis_ops_per_s" in r else "–"
        ratio = f"{r['ratio_to_redis']:.2f}" if r.get("ratio_to_redis") is not None else "–"
        n = human_n(n_of(r)) if r["scenario"] == "session" else "–"
        op = r["scenario"] + (f" ({r['variant']})" if r.get("variant") else "")
        err = str(r["errors"]) + (" (tokens ran out)" if r.get("exhausted") else "")
        by_round = " ".join(f"{x:.2f}" for x in r.get("ratio_rounds", [])) or "–"
        md.append(f"| {op} | {n} | {r['conns']} | {r['ops_per_s']:,} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
                  f"{r['p999_us']:.0f} | {err} | {ref} | {ratio} | {by_round} |")
    md.append("")
    if any(r.get("variant") == "NIO floor" for r in rows):
        md.append("`hello (NIO floor)` is not the daemon: it is `Benchmarks/NIOFloor`, a SwiftNIO server on one event loop "
                  "that answers every line with one fixed reply from a single handler (no parsing, no state, no timers), "
                  "measured in the same rounds: the least that SwiftNIO itself costs per request.")
        md.append("")
    md.append("Redis alone, same client:")
    md.append("")
    md.append("| op | N | c | ops/s | p50 µs | p99 µs | p99.9 µs |")
    md.append("|---|---|---|---:|---:|---:|---:|")
    for r in result["redis"]:
        n = human_n(n_of(r)) if r["scenario"] == "get" else "–"
        md.append(f"| {r['scenario'].upper()} | {n} | {r['conns']} | {r['ops_per_s']:,} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['p999_us']:.0f} |")
    md.append("")
    if rss:
        md.append("Daemon memory (VmRSS; `peak` is VmHWM when the daemon stopped): " + "; ".join(
            f"N={human_n(r.get('n', 0))} {r['phase']} {r['kib'] / 1024:.1f} MiB" for r in rss) + ".")
        md.append("")
    if ready:
        md.append(f"Exec to ready (spawn, then `hello` every 0.5 ms until it answers), {len(ready['runs_ms'])} runs: "
                  f"median {ready['median_ms']} ms, min {ready['min_ms']} ms.")
        md.append("")
    md.append("Issue 7 targets:")
    md.append("")
    md.append("| target | measured | wanted | met |")
    md.append("|---|---:|---|---|")
    for t in targets:
        md.append(f"| {t['target']} | {t['measured']}{' ' + t['unit'] if t['unit'] not in ('x', '/s') else t['unit']} | {t['limit']} | {'yes' if t['met'] else '**no**'} |")
    md.append("")
    if reference:
        holds_all = any(r.get("variant") == "cache holds all" for r in rows)
        md.append("For reference, `session (uncached)` rows are a daemon with `session_cache_entries: 0`"
                  + (", `session (cache holds all)` rows one whose cache holds every session "
                     "(`session_cache_entries` = N + 10%, only for N past the default of 1,000,000)" if holds_all else
                     " (the default cache, 1,000,000 entries, holds every session of each N here)")
                  + ": " + "; ".join(f"{x['what']} {x['value']}x" for x in reference) + ".")
        md.append("")
    with open(os.path.join(outdir, "latest.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
