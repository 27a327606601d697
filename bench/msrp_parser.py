"""Frames parsed per second by the sans-IO MSRP parser (msrp_gateway.msrp.message).

Two workloads: small SENDs (a chat line each, several per TCP read, as a busy connection
delivers them) and 64 KiB chunks (file transfer; each fed in 16 KiB reads). Every run is
bounded in frames and in seconds. Prints the numbers with the command that produced them.

    python bench/msrp_parser.py [--seconds 2] [--small 200000] [--large 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from msrp_gateway.msrp.message import FrameParser, Limits, MSRPRequest  # noqa: E402


def small_send(i: int) -> bytes:
    return MSRPRequest(
        f"tx{i:08d}", "SEND",
        [("To-Path", "msrp://127.0.0.1:2855/gw8d7s6a5;tcp"),
         ("From-Path", "msrp://127.0.0.2:40000/cl1k2j3h;tcp"),
         ("Message-ID", f"m{i:010d}"), ("Byte-Range", "1-27/27"),
         ("Content-Type", "text/plain")],
        b"Hello, how are you doing?!\n",
    ).to_bytes()


def chunk_send(i: int, size: int) -> bytes:
    body = bytes((i + k) % 251 for k in range(256)) * (size // 256)
    start = i * size + 1
    return MSRPRequest(
        f"cx{i:08d}", "SEND",
        [("To-Path", "msrp://127.0.0.1:2855/gw8d7s6a5;tcp"),
         ("From-Path", "msrp://127.0.0.2:40000/cl1k2j3h;tcp"),
         ("Message-ID", "bigfile0001"), ("Byte-Range", f"{start}-{start + size - 1}/*"),
         ("Content-Type", "application/octet-stream")],
        body, "+",
    ).to_bytes()


def run(stream: bytes, read_size: int, max_frames: int, seconds: float,
        frames_per_stream: int) -> tuple[int, float, int]:
    """Feed `stream` again and again in `read_size` pieces; (frames, elapsed, bytes)."""
    parser = FrameParser(Limits(max_body_size=1 << 20))
    frames = 0
    fed = 0
    pieces = [stream[i : i + read_size] for i in range(0, len(stream), read_size)]
    start = time.perf_counter()
    deadline = start + seconds
    while frames < max_frames and time.perf_counter() < deadline:
        for piece in pieces:
            frames += len(parser.feed(piece))
        fed += len(stream)
    elapsed = time.perf_counter() - start
    assert frames % frames_per_stream == 0 and parser.pending_bytes == 0
    return frames, elapsed, fed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time bound per workload")
    ap.add_argument("--small", type=int, default=200_000, help="frame bound, small SENDs")
    ap.add_argument("--large", type=int, default=20_000, help="frame bound, 64 KiB chunks")
    args = ap.parse_args()

    print("command:", shlex.join([os.path.basename(sys.executable), *sys.argv]))
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}")

    batch = [small_send(i) for i in range(100)]
    stream = b"".join(batch)
    frames, elapsed, fed = run(stream, 4096, args.small, args.seconds, len(batch))
    print(f"small SENDs ({len(batch[0])} B each, 4 KiB reads): {frames} frames in "
          f"{elapsed:.2f} s = {frames / elapsed:,.0f} frames/s, "
          f"{fed / elapsed / 1e6:,.1f} MB/s, {elapsed / frames * 1e6:.1f} us/frame")

    size = 64 * 1024
    big = [chunk_send(i, size) for i in range(16)]
    stream = b"".join(big)
    frames, elapsed, fed = run(stream, 16384, args.large, args.seconds, len(big))
    print(f"64 KiB chunks (16 KiB reads): {frames} frames in {elapsed:.2f} s = "
          f"{frames / elapsed:,.0f} frames/s, {fed / elapsed / 1e6:,.1f} MB/s")


if __name__ == "__main__":
    main()
