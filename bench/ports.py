"""Loopback ports for servers that tests and benchmarks start in other processes.

A port the OS hands out for `bind(0)` lies in its ephemeral range, where any outgoing TCP
connection or UDP socket of the same machine may take it before the server binds it (a CI run
was lost to that). So ports are drawn below that range, where the OS never assigns one by
itself, are checked free for TCP and UDP, and are never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

_handed_out: set[int] = set()
_FLOOR = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(family: int, kind: int, host: str, port: int) -> bool:
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1", both: bool = True) -> int:
    """A port on `host` free for TCP (and, with `both`, for UDP under the same number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = max(_ephemeral_low(), _FLOOR + 1000)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(_FLOOR, high)
        if port in _handed_out:
            continue
        if not _bindable(family, socket.SOCK_STREAM, host, port):
            continue
        if both and not _bindable(family, socket.SOCK_DGRAM, host, port):
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port below the ephemeral range on {host}")


_PROC_NET = {("udp", False): "/proc/net/udp", ("udp", True): "/proc/net/udp6",
             ("tcp", False): "/proc/net/tcp", ("tcp", True): "/proc/net/tcp6"}
_TCP_LISTEN = "0A"


def is_bound(port: int, kind: str = "udp") -> bool:
    """Whether some process has a `kind` ("udp" or "tcp") socket bound to `port` (for TCP:
    listening on it), on any address. Read from /proc/net, so unlike a trial bind it never
    holds the port for an instant (a child binding it at that moment would fail)."""
    if kind not in ("udp", "tcp"):
        raise ValueError(f"kind must be 'udp' or 'tcp', not {kind!r}")
    wanted = f":{port:04X}"
    for v6 in (False, True):
        try:
            with open(_PROC_NET[(kind, v6)]) as f:
                next(f, None)  # the column titles
                for line in f:
                    fields = line.split()
                    if len(fields) < 4 or not fields[1].endswith(wanted):
                        continue
                    if kind == "udp" or fields[3] == _TCP_LISTEN:
                        return True
        except FileNotFoundError:  # no IPv6 on this machine
            continue
    return False


def wait_bound(port: int, kind: str = "udp", timeout: float = 30.0,
               alive: Callable[[], bool] | None = None) -> None:
    """Return once a child process has bound `port` (see `is_bound`); raise TimeoutError
    after `timeout` seconds, or RuntimeError as soon as `alive()` says the child exited."""
    end = time.monotonic() + timeout
    while not is_bound(port, kind):
        if alive is not None and not alive():
            raise RuntimeError(f"the process meant to bind {kind} port {port} exited")
        if time.monotonic() > end:
            raise TimeoutError(f"nothing bound {kind} port {port} within {timeout} s")
        time.sleep(0.02)


def udp_queued(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket bound to `port` (0 if none is):
    how a test tells that datagrams reached a process it has stopped (SIGSTOP)."""
    wanted = f":{port:04X}"
    total = 0
    for v6 in (False, True):
        try:
            with open(_PROC_NET[("udp", v6)]) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 4 and fields[1].endswith(wanted):
                        total += int(fields[4].partition(":")[2], 16)
        except FileNotFoundError:
            continue
    return total
