"""Do the sans-IO parsers cost linear CPU when a peer feeds them badly?

A parser that rescans its buffer on every read turns a slow or hostile peer into quadratic
CPU. This prints the CPU cost of (1) an MSRP frame of 1 MiB and 8 MiB fed in 1 KiB reads and
(2) a SIP message dribbled one byte per read, 8 KB and 64 KB, and the ratio of each pair:
about 8 means linear, about 64 means quadratic. Timing stays here, out of the test suite.

    python bench/parser_scaling.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from msrp_gateway.msrp.message import FrameParser, MSRPRequest  # noqa: E402
from msrp_gateway.sip.message import StreamParser  # noqa: E402


def best_cpu(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()  # CPU time: other processes' load does not count
        run()
        best = min(best, time.process_time() - started)
    return best


def msrp_frame(size: int) -> Callable[[], None]:
    raw = MSRPRequest(
        "bigframe", "SEND",
        [("To-Path", "msrp://b/s2;tcp"), ("From-Path", "msrp://a/s1;tcp"),
         ("Message-ID", "m1234"), ("Content-Type", "text/plain")],
        b"z" * size,
    ).to_bytes()

    def run() -> None:
        parser = FrameParser()
        frames = []
        for i in range(0, len(raw), 1024):
            frames += parser.feed(raw[i:i + 1024])
        assert len(frames) == 1
    return run


def sip_dribble(body_size: int) -> Callable[[], None]:
    data = (b"MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n"
            b"Content-Length: %d\r\n\r\n" % body_size) + b"x" * body_size

    def run() -> None:
        parser = StreamParser()
        messages = []
        for i in range(len(data)):
            messages += parser.feed(data[i:i + 1])
        assert len(messages) == 1
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per case; the best counts")
    args = ap.parse_args()
    script = os.path.join("bench", os.path.basename(sys.argv[0]))
    print("command:", shlex.join(["python", script, *sys.argv[1:]]))
    cases = [
        ("MSRP frame in 1 KiB reads", "1 MiB", msrp_frame(1 << 20), "8 MiB", msrp_frame(8 << 20)),
        ("SIP message, 1 byte per read", "8 KB", sip_dribble(8_000), "64 KB", sip_dribble(64_000)),
    ]
    print(f"{'case':32} {'small':>14} {'large (8x)':>14} {'ratio':>7}")
    for name, small_label, small, large_label, large in cases:
        t_small, t_large = best_cpu(small, args.repeat), best_cpu(large, args.repeat)
        print(f"{name:32} {small_label:>6} {t_small * 1e3:6.1f} ms {large_label:>6} "
              f"{t_large * 1e3:6.1f} ms {t_large / t_small:7.1f}")
    print("ratio ~8: linear; ~64: quadratic")


if __name__ == "__main__":
    main()
