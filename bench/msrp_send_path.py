"""CPU per SEND on the MSRP hot path, both directions, without sockets (process CPU time).

- out: `session.send()` of a 100-byte message on a bound session, its frame written, the
  200 fed back (chunking, serialization, transaction id, deadline, response parse);
- in: an incoming 100-byte SEND fed to the connection: parse, match, reassembly check,
  delivery to `on_message` and the 200 written.
Process CPU time (not wall time) so a busy shared machine disturbs it less; the best and
the median of the repetitions are printed with the command that ran them.

    python bench/msrp_send_path.py [--count 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from msrp_gateway.msrp.message import FrameParser, MSRPRequest  # noqa: E402
from msrp_gateway.msrp.session import LinkCore, MSRPSession, SessionSettings  # noqa: E402
from msrp_gateway.testing import ClockedSessionHost  # noqa: E402

PEER = "msrp://127.0.0.1:40000/zyxw98765;tcp"
BODY = b"x" * 100


def bench_host() -> ClockedSessionHost:
    """Bounds high enough that the measured loops never hit them."""
    return ClockedSessionHost(SessionSettings(max_inflight=1 << 20,
                                              max_queued_messages=1 << 20))


def bound_session(written: list[bytes]) -> tuple[ClockedSessionHost, MSRPSession, LinkCore]:
    host = bench_host()
    core = LinkCore(host.clock, host.table, host.settings, FrameParser(), written.append,
                    lambda: None, lambda c: None, "bench")
    host.link = core
    s = MSRPSession(host, "abcdefabcdef1234", "msrp://127.0.0.1:2855/abcdefabcdef1234;tcp",
                    ["text/plain"], host.settings)
    s.set_remote_path([PEER])
    host.table.add(s)
    s.bind(core)
    return host, s, core


def outgoing(count: int) -> float:
    written: list[bytes] = []
    _, s, core = bound_session(written)
    ok: list[Any] = []
    t0 = time.process_time()
    for _ in range(count):
        s.send("text/plain", BODY).addCallback(ok.append)
        tid = written[-1][5:written[-1].index(b" ", 5)].decode()
        core.data_received(f"MSRP {tid} 200 OK\r\nTo-Path: {s.local_uri}\r\n"
                           f"From-Path: {PEER}\r\n-------{tid}$\r\n".encode())
    spent = time.process_time() - t0
    assert len(ok) == count, "every SEND must get its 200"
    return spent / count * 1e6


def incoming(count: int) -> float:
    written: list[bytes] = []
    _, s, core = bound_session(written)
    got: list[Any] = []
    s.on_message = got.append
    frames = [MSRPRequest(f"t{i:07d}", "SEND", [
        ("To-Path", s.local_uri), ("From-Path", PEER), ("Message-ID", f"m{i:08d}"),
        ("Byte-Range", f"1-{len(BODY)}/{len(BODY)}"), ("Content-Type", "text/plain"),
    ], BODY).to_bytes() for i in range(count)]
    t0 = time.process_time()
    for f in frames:
        core.data_received(f)
    spent = time.process_time() - t0
    assert len(got) == count and len(written) == count, "each SEND delivered and answered"
    return spent / count * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    count = max(1, min(a.count, 1_000_000))
    repeat = max(1, min(a.repeat, 50))
    print("command: python bench/msrp_send_path.py " + shlex.join(sys.argv[1:]))
    for name, fn in (("out: send + 200", outgoing), ("in: SEND -> message + 200", incoming)):
        runs = sorted(fn(count) for _ in range(repeat))
        print(f"{name:28s} {count} SENDs x {repeat}: best {runs[0]:.2f} us, "
              f"median {runs[len(runs) // 2]:.2f} us process CPU per SEND")


if __name__ == "__main__":
    main()
