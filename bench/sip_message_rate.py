"""Highest MESSAGE rate `twistd -n msrpgw` answers with zero failures and zero retransmissions.

sipp (UAC, one socket) sends MESSAGE at rising rates to a gateway whose routing script
answers 200 at once; each step runs for ``--seconds`` (bounded calls), then the next rate
is tried until a step is not clean or the time budget is spent. A step is clean only when
every call succeeded with 0 failures, 0 unexpected messages and 0 retransmissions, and the
achieved rate (successful calls / sipp's own span from its start to its last answer) is at
least ``CLEAN_FRACTION`` (98 %) of the target.
Prints one line per step (target and achieved rate, failures, retransmissions, p50/p99
response time from sipp's per-call RTT trace, 1 ms resolution, gateway CPU, clean or why
not) and writes JSON.

    python bench/sip_message_rate.py [--transport udp|tcp] [--start 1000] [--step 1000]
        [--max 20000] [--seconds 3] [--budget 180] [--json bench/results/sip_message_rate.json]

``--in-process [N]`` instead times the SIP layer alone, without sockets or sipp: CPU
microseconds per MESSAGE for the page side (datagram in -> parse -> stack -> route -> 200
written) and the send side (send_request -> MESSAGE written, its 200 in -> result), N
MESSAGEs per round, best of 5 rounds (the machine is shared: compare runs made back to
back). Writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gateway_harness import HOST, GatewayProcess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = os.path.join(ROOT, "tests", "interop", "sipp", "uac_message.xml")
ROUTE = '''
def route(req, gw):
    if req.method == "MESSAGE":
        req.reply(200, "OK")
    else:
        req.reply(405)
'''


CLEAN_FRACTION = 0.98  # of the target rate, for a step to count


def sipp_span(st: dict) -> float | None:
    """Seconds from sipp's StartTime to its CurrentTime in its final statistics row (each
    is "date<TAB>time<TAB>epoch"): the sending time plus the last answers, without the
    cost of starting the process."""
    try:
        start = float(st["StartTime"].split("\t")[-1])
        end = float(st["CurrentTime"].split("\t")[-1])
    except (KeyError, ValueError, IndexError):
        return None
    return end - start if end > start else None


def why_not_clean(r: dict) -> str:
    """'' for a clean step, else the first reason it is not."""
    if r["sipp_exit"] != 0:
        return f"sipp exit {r['sipp_exit']}"
    for key in ("failed", "unexpected", "retransmissions"):
        if r[key]:
            return f"{r[key]} {key}"
    if r["successful"] != r["calls"]:
        return f"{r['successful']}/{r['calls']} calls"
    if r["achieved_rate"] < CLEAN_FRACTION * r["target_rate"]:
        return f"achieved {r['achieved_fraction']:.1%} of the target"
    return ""


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def run_step(sipp: str, workdir: str, gw: GatewayProcess, transport: str, rate: int,
             seconds: float) -> dict:
    calls = max(1, int(rate * seconds))
    step_dir = os.path.join(workdir, f"{transport}-{rate}")
    os.makedirs(step_dir)
    scenario = os.path.join(step_dir, "m.xml")  # sipp writes its RTT trace next to it
    shutil.copy(SCENARIO, scenario)
    stats = os.path.join(step_dir, "stats.csv")
    args = [sipp, "-sf", scenario, "-m", str(calls), "-r", str(rate), "-rp", "1000",
            "-t", "u1" if transport == "udp" else "t1", "-i", HOST, "-p", "0",
            f"{HOST}:{gw.sip_port}", "-nostdin", "-timeout", str(int(seconds * 4 + 10)),
            "-timeout_error", "-trace_stat", "-stf", stats, "-trace_rtt",
            "-rtt_freq", str(min(calls, 1000)), "-l", str(max(100, rate * 2))]
    cpu0, t0 = gw.cpu_seconds(), time.monotonic()
    done = subprocess.run(args, cwd=step_dir, capture_output=True,
                          timeout=seconds * 4 + 40)
    wall = time.monotonic() - t0
    cpu = gw.cpu_seconds() - cpu0
    rows = list(csv.reader(open(stats), delimiter=";")) if os.path.exists(stats) else []
    st = dict(zip(rows[0], rows[-1])) if len(rows) >= 2 else {}
    rtts: list[float] = []
    for path in glob.glob(os.path.join(step_dir, "m_*_rtt.csv")):
        with open(path) as f:
            next(f, None)
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        rtts.append(float(parts[1]))
                    except ValueError:
                        pass
    ok = int(st.get("SuccessfulCall(C)", 0) or 0)
    span = sipp_span(st) or wall
    result = {
        "transport": transport,
        "target_rate": rate,
        "calls": calls,
        "successful": ok,
        "failed": int(st.get("FailedCall(C)", calls) or 0),
        "unexpected": int(st.get("FailedUnexpectedMessage(C)", 0) or 0),
        "retransmissions": int(st.get("Retransmissions(C)", 0) or 0),
        "achieved_rate": round(ok / span, 1) if span else 0.0,
        "achieved_fraction": round(ok / span / rate, 4) if span else 0.0,
        "measured_seconds": round(span, 3),
        "sipp_exit": done.returncode,
        "p50_ms": percentile(rtts, 50),
        "p99_ms": percentile(rtts, 99),
        "gateway_cpu_percent": round(100 * cpu / wall, 1) if wall else None,
        "wall_seconds": round(wall, 2),
    }
    result["not_clean"] = why_not_clean(result)
    result["clean"] = result["not_clean"] == ""
    return result


def in_process(n: int, rounds: int = 5) -> dict[str, float]:
    """CPU us per MESSAGE of the SIP layer on each side (best of ``rounds``); the UDP
    listener is a stub that keeps what would be written, the reactor never runs except to
    flush its timer queue every 50 messages, as its loop would."""
    import socket as _socket

    from twisted.internet import reactor

    sys.path.insert(0, ROOT)
    from msrp_gateway.sip.peers import Peer
    from msrp_gateway.sip.stack import SIPStack
    from msrp_gateway.sip.transport import SIPTransport

    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes, addr: object) -> None:
            written.append(data)

    class Listener:  # what SIPTransport needs of its UDP protocol
        transport = Writer()

    def fresh() -> tuple[SIPTransport, SIPStack]:
        t = SIPTransport(reactor)
        t._udp[_socket.AF_INET] = Listener()  # type: ignore[assignment]  # bench stub
        t._ports.append((Peer("udp", "127.0.0.1", 5060), None, None))  # type: ignore[arg-type]
        stack = SIPStack(reactor, t, local_uri_host="127.0.0.1",
                         router=lambda txn: txn.respond(200))
        return t, stack

    source = Peer("udp", "127.0.0.1", 5070)

    def message(i: int) -> bytes:
        return (f"MESSAGE sip:bob@127.0.0.1:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{i};rport\r\n"
                f"From: <sip:alice@127.0.0.1:5070>;tag={i}\r\nTo: <sip:bob@127.0.0.1>\r\n"
                f"Call-ID: {i}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
                f"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello").encode()

    def answer(data: bytes) -> bytes:
        lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
        keep = [h if not h.startswith(b"To:") else h + b";tag=x" for h in lines
                if h.split(b":")[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")]
        return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"

    page: list[float] = []
    for r in range(rounds):
        t, stack = fresh()
        datas = [message(r * n + i) for i in range(n)]
        written.clear()
        t0 = time.process_time()
        for i, d in enumerate(datas):
            t._datagram_received(Listener, d, source)  # type: ignore[arg-type]  # bench stub
            if i % 50 == 0:
                reactor.runUntilCurrent()  # type: ignore[attr-defined]
        page.append((time.process_time() - t0) / n * 1e6)
        assert len(written) == n, f"{len(written)} answers to {n} MESSAGEs"
        stack.stop()
        reactor.runUntilCurrent()  # type: ignore[attr-defined]
    send: list[float] = []
    for _ in range(rounds):
        t, stack = fresh()
        results: list[object] = []
        reqs = [stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:bob@127.0.0.1",
                                  "sip:bob@127.0.0.1:5070", body=b"hello",
                                  content_type="text/plain") for _ in range(n)]
        spent = 0.0
        for b in range(0, n, 50):  # 50 out, their 200s in: no Timer E fires meanwhile
            written.clear()
            t0 = time.process_time()
            for req in reqs[b:b + 50]:
                stack.send_request(req).addCallback(results.append)
            spent += time.process_time() - t0
            answers = [answer(d) for d in written]  # the peer's work: not timed
            t0 = time.process_time()
            for a in answers:
                t._datagram_received(Listener, a, source)  # type: ignore[arg-type]
            reactor.runUntilCurrent()  # type: ignore[attr-defined]
            spent += time.process_time() - t0
        assert len(results) == n, f"{len(results)} results for {n} MESSAGEs"
        send.append(spent / n * 1e6)
        stack.stop()
        reactor.runUntilCurrent()  # type: ignore[attr-defined]
    return {"page_side_us": min(page), "send_side_us": min(send),
            "page_rounds": page, "send_rounds": send}  # type: ignore[dict-item]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-process", type=int, nargs="?", const=8000, default=None,
                    metavar="N", help="time the SIP layer alone, N MESSAGEs per round")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--start", type=int, default=1000)
    ap.add_argument("--step", type=int, default=1000)
    ap.add_argument("--max", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--budget", type=float, default=180.0, help="total seconds for all steps")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "sip_message_rate.json"))
    a = ap.parse_args()
    if a.in_process is not None:
        r = in_process(max(a.in_process, 100))
        for side in ("page", "send"):
            rounds = ", ".join(f"{x:.1f}" for x in r[f"{side}_rounds"])  # type: ignore[attr-defined]
            print(f"{side} side: {r[f'{side}_side_us']:.1f} us/MESSAGE (best of 5: {rounds})")
        return 0
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed", file=sys.stderr)
        return 2
    command = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    results = []
    best = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="msrpgw-bench-") as workdir:
        script = os.path.join(workdir, "route.py")
        with open(script, "w") as f:
            f.write(ROUTE)
        gw = GatewayProcess(workdir, routing={"script": script})
        gw.start()
        try:
            rate = a.start
            print(f"{'target':>7} {'achieved':>9} {'%':>6} {'failed':>6} {'retrans':>7} "
                  f"{'p50 ms':>6} {'p99 ms':>6} {'gw cpu%':>7}  clean")
            while rate <= a.max and time.monotonic() - started + a.seconds * 2 < a.budget:
                r = run_step(sipp, workdir, gw, a.transport, rate, a.seconds)
                results.append(r)
                print(f"{rate:>7} {r['achieved_rate']:>9} {r['achieved_fraction']:>6.1%} "
                      f"{r['failed']:>6} {r['retransmissions']:>7} {r['p50_ms']!s:>6} "
                      f"{r['p99_ms']!s:>6} {r['gateway_cpu_percent']!s:>7}  "
                      f"{'yes' if r['clean'] else 'no: ' + r['not_clean']}", flush=True)
                if not r["clean"]:
                    break
                best = r
                rate += a.step
        finally:
            gw.stop()
    summary = {
        "benchmark": "sip_message_rate",
        "command": command,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "transport": a.transport,
        "clean_rule": (f"0 failed, 0 unexpected, 0 retransmissions, every call successful, "
                       f"achieved >= {CLEAN_FRACTION:.0%} of the target rate"),
        "best_clean_rate": best["target_rate"] if best else None,
        "best_achieved_rate": best["achieved_rate"] if best else None,
        "best": best,
        "steps": results,
    }
    if best:
        print(f"highest clean step over {a.transport}: target {best['target_rate']} MESSAGE/s, "
              f"achieved {best['achieved_rate']}/s (p50 {best['p50_ms']} ms, "
              f"p99 {best['p99_ms']} ms, gateway CPU {best['gateway_cpu_percent']} %)")
    else:
        print(f"no clean step over {a.transport} (start rate {a.start}/s)")
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"written {os.path.relpath(a.json, ROOT)}; command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
