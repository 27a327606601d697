"""Run every gateway benchmark, print one table and write the JSON next to it.

    python bench/run.py [--quick] [--only NAME ...] [--others] [--out DIR]

Needs sipp and twistd on PATH. Everything runs on loopback; each benchmark starts its own
`twistd -n msrpgw` and MSRP peer and stops them after. `--others` also runs every other
script in bench/ (the layers' own micro-benchmarks) with its defaults and keeps its output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import gateway_bench as gb

FULL = [50, 100, 200, 400, 800, 1200, 1600, 2400, 3200, 4000, 4800, 5600, 6400, 8000]
QUICK = [50, 200, 800]


def benchmarks(quick: bool) -> dict[str, Any]:
    rates = QUICK if quick else FULL
    setup_rates = [20, 50, 100, 200] if quick else [20, 50, 100, 200, 400, 600, 800, 1000,
                                                       1200, 1600]
    return {
        "page_to_session_1": lambda: gb.page_to_session(1, rates),
        # [msrp_gateway] delivery = "end_to_end": each MESSAGE answered 200 after its SEND's 200
        "page_to_session_1_e2e": lambda: gb.page_to_session(1, rates, delivery="end_to_end"),
        "page_to_session_100": lambda: gb.page_to_session(100, rates),
        "session_to_page_1": lambda: gb.session_to_page(1, rates),
        "session_to_page_100": lambda: gb.session_to_page(100, rates),
        "setup_rate": lambda: gb.setup_rate(setup_rates),
        "memory_10k_idle": lambda: gb.memory(2000 if quick else 10_000),
    }


OTHERS_TIMEOUT = 400.0


def other_scripts() -> list[str]:
    """The layer benchmarks: scripts of bench/ that run as a program (helpers such as
    ports.py, imported by the others and by tests, are not benchmarks)."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = []
    for f in sorted(os.listdir(here)):
        if not f.endswith(".py") or f.startswith(("gateway_", "run", "_")):
            continue
        path = os.path.join(here, f)
        with open(path, encoding="utf-8") as source:
            if 'if __name__ == "__main__":' in source.read():
                found.append(path)
    return found


def run_other(path: str) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    began = time.time()
    try:
        done = subprocess.run([sys.executable, os.path.relpath(path, root)], check=False,
                              capture_output=True, text=True, env=env, cwd=root,
                              timeout=OTHERS_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {OTHERS_TIMEOUT} s"}
    out = {"exit": done.returncode, "seconds": round(time.time() - began, 1),
           "output": done.stdout[-4000:]}
    if done.returncode != 0:
        out["error"] = done.stderr[-1000:] or f"exit status {done.returncode}"
    return out


def table(results: dict[str, Any]) -> str:
    head = (f"{'benchmark':<22} {'max rate/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'cpu s':>7} {'us/msg':>6} {'peak RSS MiB':>12}  notes")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:<22} {'-':>10} {'-':>8} {'-':>8} {'-':>7} {'-':>6} "
                         f"{'-':>12}  error: {r['error'][:60]}")
            continue
        peak = r.get("gateway_peak_rss_kib", 0) / 1024
        if name.startswith("memory"):
            lines.append(f"{name:<22} {'-':>10} {'-':>8} {'-':>8} "
                         f"{r.get('gateway_cpu_seconds_total', 0):>7} {'-':>6} {peak:>12.1f}  "
                         f"{r['sessions']} sessions: {r['kib_per_session']} KiB/session "
                         f"({r['rss_before_kib'] // 1024} -> {r['rss_after_kib'] // 1024} MiB)")
            continue
        best = r.get("best")
        failed = [s for s in r.get("steps", []) if not s["ok"]]
        note = ""
        if failed:
            f = failed[0]
            note = (f"failed at {f['rate']}/s: delivered {f.get('delivered')}/"
                    f"{f.get('messages', f.get('sessions'))}, retrans {f['retransmissions']}")
            if f.get("peer_cpu_seconds") is not None:
                note += (f", cpu gw/peer/sipp {f['gateway_cpu_seconds']}/"
                         f"{f['peer_cpu_seconds']}/{f.get('sipp_cpu_seconds')} s "
                         f"in {gb.STEP_SECONDS:.0f} s")
            if f.get("answers") is not None:  # end_to_end: what the sender got instead of 200
                other = {k: v for k, v in f["answers"].items() if k != "200"}
                unanswered = f["messages"] - sum(f["answers"].values())
                note += f", answers other than 200: {other or 'none'}, unanswered {unanswered}"
                if f.get("answer_max_ms") is not None:  # over 500 ms: sipp retransmitted
                    note += (f", sender's wait p99/max {_f(f.get('answer_p99_ms'))}/"
                             f"{_f(f['answer_max_ms'])} ms")
            if f.get("first_error"):
                note += f"; gateway log: {f['gateway_log_errors']} x {f['first_error'][:90]!r}"
        elif r.get("steps"):
            note = "ladder top reached"
        if best is not None and best.get("answer_p50_ms") is not None:
            note = (f"sender's 200 after p50/p99 {_f(best['answer_p50_ms'])}/"
                    f"{_f(best['answer_p99_ms'])} ms; {note}")
        if best is None:
            lines.append(f"{name:<22} {'< ' + str(r['steps'][0]['rate']):>10} {'-':>8} {'-':>8} "
                         f"{'-':>7} {'-':>6} {peak:>12.1f}  {note}")
            continue
        items = best.get("messages", best.get("sessions")) or 1
        per = 1e6 * best["gateway_cpu_seconds"] / items  # gateway CPU per message/session
        lines.append(f"{name:<22} {best['rate']:>10} {_f(best['p50_ms']):>8} "
                     f"{_f(best['p99_ms']):>8} {best['gateway_cpu_seconds']:>7} {per:>6.0f} "
                     f"{peak:>12.1f}  {note}")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="msrpgw gateway benchmarks")
    ap.add_argument("--quick", action="store_true", help="fewer, lower rates (a smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    ap.add_argument("--others", action="store_true",
                    help="also run the other bench/*.py scripts and keep their output")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results"))
    args = ap.parse_args(argv)
    todo = benchmarks(args.quick)
    if args.only:
        unknown = set(args.only) - set(todo)
        if unknown:
            ap.error(f"unknown benchmark(s) {sorted(unknown)}; known: {sorted(todo)}")
        todo = {k: v for k, v in todo.items() if k in args.only}
    results: dict[str, Any] = {}
    began = time.time()
    for name, fn in todo.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001 - one broken benchmark must not hide the rest
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    text = table(results)
    print(text)
    others: dict[str, Any] = {}
    if args.others:
        for path in other_scripts():
            name = os.path.basename(path)
            print(f"running {name} ...", file=sys.stderr, flush=True)
            others[name] = run_other(path)
            print(f"\n== {name} (exit {others[name].get('exit')})\n"
                  f"{others[name].get('output', '').rstrip()}")
    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(began))
    doc = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
           "seconds": round(time.time() - began, 1), "quick": args.quick,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "platform": platform.platform()},
           "step_seconds": gb.STEP_SECONDS, "results": results, "table": text,
           "others": others}
    path = os.path.join(args.out, f"gateway-{stamp}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"\nJSON: {path}")
    everything = list(results.values()) + list(others.values())
    return 0 if all("error" not in r for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
