"""Where the gateway's CPU goes: one load held at a fixed rate while py-spy samples the
`twistd -n msrpgw` process (and, with --peer, the MSRP peer), then the functions that
cost the most, by own time and by inclusive time.

    python bench/gateway_profile.py page_to_session|session_to_page|setup --rate 2000
        [--seconds 4] [--sessions 1] [--peer] [--svg DIR] [--top 25]

Needs sipp and py-spy (`pip install py-spy`) on PATH. Same processes and scenarios as
bench/gateway_bench.py, so a profile and a benchmark step measure the same thing.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import gateway_bench as gb  # noqa: E402
from bench.gateway_harness import HOST, SippProcess, wait_for  # noqa: E402


def spy(pid: int, seconds: float, out: str, fmt: str = "raw") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--duration", str(int(round(seconds))),
         "--rate", "250", "--function", "--format", fmt, "--output", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarize(raw_path: str, top: int) -> str:
    """Collapsed stacks -> own and inclusive sample shares per function."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_short(x) for x in stack.split(";") if x]
            if not frames:
                continue
            own[frames[-1]] += n
            modules[_module(frames)] += n
            for fr in set(frames):
                incl[fr] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", f"{'own %':>6}  module (innermost project frame)"]
    lines += [f"{100 * n / total:6.1f}  {m}" for m, n in modules.most_common(top)]
    lines += ["", f"{'own %':>6}  function"]
    lines += [f"{100 * n / total:6.1f}  {fn}" for fn, n in own.most_common(top)]
    lines += ["", f"{'incl %':>6}  function"]
    lines += [f"{100 * n / total:6.1f}  {fn}" for fn, n in incl.most_common(top * 2)]
    return "\n".join(lines)


def _module(frames: list[str]) -> str:
    """The project (or peer) file the innermost project frame is in; the C/Twisted work
    under it is counted there (a UDP write under SIPTransport.send is the transport's)."""
    for fr in reversed(frames):
        where = fr.partition(" (")[2]
        if where.startswith(("msrp_gateway/", "msrp_peer.py")):
            return where.rsplit(":", 1)[0]
    return "(reactor, no project frame)"


def _short(frame: str) -> str:
    """'fn (/abs/path/msrp_gateway/x.py:12)' -> 'fn (msrp_gateway/x.py:12)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("msrp_gateway/", "twisted/", "bench/", "tests/", "python3.11/"):
        i = where.find(marker)
        if i >= 0:
            where = where[i:]
            break
    return f"{name} ({where})" if where else name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="profile the gateway under one load")
    ap.add_argument("load", choices=["page_to_session", "session_to_page", "setup"])
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--peer", action="store_true", help="profile the MSRP peer as well")
    ap.add_argument("--svg", default="", help="also write flame graphs into this directory")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cprofile", action="store_true",
                    help="cProfile inside the gateway instead of py-spy (exact call counts, "
                         "per-message microseconds; Python code looks dearer than it is)")
    args = ap.parse_args(argv)
    if not args.cprofile and shutil.which("py-spy") is None:
        ap.error("py-spy is not on PATH (pip install py-spy), or use --cprofile")
    s = gb.Setup(f"profile-{args.load}", cprofile=args.cprofile)
    outputs: list[tuple[str, str]] = []
    try:
        count = int(args.rate * args.seconds)
        if args.load == "page_to_session":
            users = s.users_file(args.sessions, "u")
            warm = s.sipp_uac(users, args.sessions, min(200, args.sessions * 10), "warm")
            if warm.wait(60) != 0:
                raise RuntimeError("warm-up failed")
            wait_for(lambda: s.peer_stats()["sessions"] >= args.sessions, 30, "sessions")
            s.quiet()
            m0 = s.peer_stats()["messages"]
            spies = _start_spies(s, args)
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            uac = s.sipp_uac(users, count, args.rate, "prof", trace=False)
            uac.wait(args.seconds + 60)
            print(f"delivered {s.wait_delivered(m0, count)}/{count}, "
                  f"retransmissions {uac.counter('Retransmissions')}")
        elif args.load == "setup":
            s.quiet()
            users = s.users_file(1, "new")
            spies = _start_spies(s, args)
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            uac = s.sipp_uac(users, count, args.rate, "prof", suffix="p", trace=False,
                             new_keys=True)
            uac.wait(args.seconds + 60)
        else:
            uas = SippProcess(s.dir, s.uas, "-m", str(count), "-timeout",
                              str(int(args.seconds + 60)), name="uas-prof", trace_msg=False)
            time.sleep(0.3)
            sids = []
            for i in range(args.sessions):
                target = f"sip:phone{i}@{HOST}:{uas.port}"
                s.peer.send(cmd="invite", **{"from": f"sip:p{i}@{HOST}", "to": target,
                                             "ruri": target})
                sids.append(s.peer.expect("started")["sid"])
            for sid in sids:
                s.peer.expect("established", timeout=30, sid=sid)
            spies = _start_spies(s, args)
            cpu0, pcpu0 = s.gw.cpu_seconds(), s.peer_cpu()
            s.peer.send(cmd="send", sid="*", ctype="text/plain", body="m{i} t={t}",
                        count=count, rate=args.rate)
            s.peer.expect("burst_done", timeout=args.seconds + 60)
            try:
                uas.wait(30)
            except Exception:  # noqa: BLE001
                pass
        cpu, pcpu = s.gw.cpu_seconds() - cpu0, s.peer_cpu() - pcpu0
        if args.cprofile:
            s.gw.profile_toggle()
            wait_for(lambda: os.path.exists(s.cprofile), 30, "the cProfile stats")
            time.sleep(0.5)
        for name, proc, path in spies:
            proc.wait(args.seconds + 30)
            outputs.append((name, path))
        print(f"{args.load} at {args.rate}/s for {args.seconds:.0f} s: gateway CPU {cpu:.2f} s, "
              f"peer CPU {pcpu:.2f} s")
        for name, path in outputs:
            print(f"\n== {name}\n{summarize(path, args.top)}")
        if args.cprofile:
            print(f"\n== gateway, cProfile, per {args.load} item ({count})\n"
                  f"{cprofile_summary(s.cprofile, count, args.top)}")
    finally:
        s.close()
    return 0


def cprofile_summary(path: str, count: int, top: int) -> str:
    """Own and cumulative microseconds per item, and calls per item, by function."""
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, fn), (_cc, calls, tottime, cumtime, _callers) in stats.items():
        where = _short(f"{fn} ({filename}:{line})")
        rows.append((tottime, cumtime, calls, where))
    total = sum(r[0] for r in rows)
    out = [f"profiled CPU {total:.2f} s = {1e6 * total / max(count, 1):.0f} us per item",
           "", f"{'own us':>7} {'cum us':>7} {'calls':>6}  function (per item)"]
    for tottime, cumtime, calls, where in sorted(rows, reverse=True)[:top]:
        out.append(f"{1e6 * tottime / count:7.1f} {1e6 * cumtime / count:7.1f} "
                   f"{calls / count:6.2f}  {where}")
    out += ["", "by cumulative time:"]
    for tottime, cumtime, calls, where in sorted(rows, key=lambda r: -r[1])[:top * 2]:
        out.append(f"{1e6 * tottime / count:7.1f} {1e6 * cumtime / count:7.1f} "
                   f"{calls / count:6.2f}  {where}")
    return "\n".join(out)


def _start_spies(s: gb.Setup, args: Any) -> list[tuple[str, subprocess.Popen[bytes], str]]:
    if args.cprofile:
        s.gw.profile_toggle()
        time.sleep(0.3)
        return []
    targets = [("gateway", s.gw.pid)] + ([("peer", s.peer.proc.pid)] if args.peer else [])
    out = []
    for name, pid in targets:
        path = os.path.join(s.dir, f"{name}.raw")
        out.append((name, spy(pid, args.seconds + 1, path), path))
        if args.svg:
            os.makedirs(args.svg, exist_ok=True)
            spy(pid, args.seconds + 1, os.path.join(args.svg, f"{args.load}-{name}.svg"),
                "flamegraph")
    time.sleep(0.5)
    return out


if __name__ == "__main__":
    sys.exit(main())
