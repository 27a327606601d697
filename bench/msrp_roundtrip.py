"""SEND/200 round trips per second between two MSRP endpoints over loopback TCP.

Both endpoints run in this process on one reactor (so the figure is the cost of both
sides together). Bounded in count and in time; prints the command that ran it.

    python bench/msrp_roundtrip.py [--count N] [--seconds S] [--size BYTES] [--window W]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer  # noqa: E402

from msrp_gateway.msrp.transport import MSRPStack  # noqa: E402


async def run(reactor, count: int, seconds: float, size: int, window: int) -> dict:
    a = MSRPStack(reactor)
    b = MSRPStack(reactor)
    try:
        a.listen("msrp:127.0.0.1:0")
        b.listen("msrp:127.0.0.1:0")
        sa = a.create_session(["text/plain"])
        sb = b.create_session(["text/plain"])
        sa.set_remote_path([sb.local_uri])
        sb.set_remote_path([sa.local_uri])
        received = 0

        def on_message(_msg) -> None:
            nonlocal received
            received += 1

        sb.on_message = on_message
        bound = sb.wait_bound(10)
        await sa.connect()
        await bound
        body = b"x" * size
        for _ in range(min(200, count)):  # warm-up
            await sa.send("text/plain", body)
        done = 0
        errors = 0
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker(share: int) -> None:
            nonlocal done, errors
            for _ in range(share):
                if time.perf_counter() > deadline:
                    return
                try:
                    await sa.send("text/plain", body)
                    done += 1
                except Exception:
                    errors += 1

        shares = [count // window + (1 if i < count % window else 0) for i in range(window)]
        await defer.gatherResults([defer.ensureDeferred(worker(n)) for n in shares])
        elapsed = time.perf_counter() - start
        return {"round_trips": done, "errors": errors, "seconds": elapsed,
                "per_second": done / elapsed if elapsed else 0.0, "received": received}
    finally:
        await defer.gatherResults([a.stop(), b.stop()])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20000, help="round trips (bound)")
    p.add_argument("--seconds", type=float, default=20.0, help="time bound")
    p.add_argument("--size", type=int, default=100, help="body bytes per SEND")
    p.add_argument("--window", type=int, default=1,
                   help="SENDs in flight at once (1 = strictly sequential)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.count < 1 or args.window < 1 or args.seconds <= 0:
        p.error("count, window and seconds must be positive")
    from twisted.internet import reactor

    out: dict = {}
    failure: list = []

    def start() -> None:
        d = defer.ensureDeferred(run(reactor, args.count, args.seconds, args.size,
                                     args.window))
        d.addCallbacks(out.update, failure.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    print(f"command: python bench/msrp_roundtrip.py {shlex.join(argv)}".rstrip())
    if failure:
        failure[0].printTraceback()
        return 1
    print(f"{out['round_trips']} SEND/200 round trips ({out['errors']} errors, "
          f"{out['received']} delivered) in {out['seconds']:.2f}s: "
          f"{out['per_second']:.0f} round trips/s, {args.size}-byte bodies, "
          f"window {args.window}")
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
