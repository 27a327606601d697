"""bench.ports, which the interop tests lean on to start child servers without races: ports
below the ephemeral range, free for TCP and UDP, never handed out twice; bound/queued state
read from /proc/net without touching the port."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from bench.ports import _ephemeral_low, free_port, is_bound, udp_queued, wait_bound


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable_for_tcp_and_udp():
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10000 <= p < max(_ephemeral_low(), 11000) for p in ports)
    for p in ports[:5]:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", p))
            u.bind(("127.0.0.1", p))


def test_is_bound_sees_udp_binds_and_tcp_listeners_only():
    port = free_port()
    assert not is_bound(port, "udp") and not is_bound(port, "tcp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", port))
        assert is_bound(port, "udp") and not is_bound(port, "tcp")
    assert not is_bound(port, "udp")
    with socket.socket() as t:
        t.bind(("127.0.0.1", port))
        assert not is_bound(port, "tcp")  # bound, not listening: connections are refused
        t.listen(1)
        assert is_bound(port, "tcp")
    with pytest.raises(ValueError):
        is_bound(port, "sctp")


def test_is_bound_sees_ipv6_sockets():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with s:
        assert is_bound(s.getsockname()[1], "udp")


def test_wait_bound_returns_once_another_thread_binds_and_times_out_otherwise():
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    binder = threading.Timer(0.2, holder.bind, (("127.0.0.1", port),))
    binder.start()
    try:
        wait_bound(port, "udp", timeout=30)
        assert is_bound(port, "udp")
    finally:
        binder.join()
        holder.close()
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_bound(free_port(), "udp", timeout=0.3)
    assert time.monotonic() - began < 5
    with pytest.raises(RuntimeError):
        wait_bound(free_port(), "udp", timeout=30, alive=lambda: False)


def test_udp_queued_counts_datagrams_waiting_unread():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        r.bind(("127.0.0.1", 0))
        port = r.getsockname()[1]
        assert udp_queued(port) == 0
        s.sendto(b"x" * 1000, ("127.0.0.1", port))
        one = udp_queued(port)
        s.sendto(b"x" * 1000, ("127.0.0.1", port))
        assert udp_queued(port) > one > 0
        r.recv(2000)
        r.recv(2000)
        assert udp_queued(port) == 0
