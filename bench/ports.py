"""Loopback ports for servers that tests and benchmarks start in other processes.

A port the OS hands out for `bind(0)` lies in its ephemeral range, where any outgoing TCP
connection or UDP socket of the same machine may take it before the server binds it (a CI run
was lost to that). So ports are drawn below that range, where the OS never assigns one by
itself, are checked free for TCP and UDP, and are never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket

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
