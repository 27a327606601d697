"""events.py over a real TCP socket on 127.0.0.1: a tcp: subscriber that stopped reading
(its receive window and our send buffer full) cannot make `EventBus.stop()` hang. The
close is aborted `CLOSE_GRACE` seconds after the stop, and the stop's Deferred fires then.
"""

from __future__ import annotations

import time

import pytest_twisted
from twisted.internet import defer, protocol, reactor

from msrp_gateway.events import CLOSE_GRACE, EVENT_SETUP_FAILED, EventBus

WAIT = 20.0  # bounds a failure only
CHUNK = 1 << 20  # one notification's payload
MAX_NOTIFICATIONS = 64  # 64 MiB at most: more than loopback's socket buffers


class DeafPeer(protocol.Protocol):
    """Accepts the connection and never reads from it."""

    def __init__(self, factory: "DeafFactory") -> None:
        self.factory = factory

    def connectionMade(self) -> None:
        self.factory.transport = self.transport
        self.transport.pauseProducing()  # stop reading: the sender's window closes
        self.factory.connected.callback(self)

    def connectionLost(self, reason=None) -> None:
        self.factory.lost.callback(reason.type if reason is not None else None)


class DeafFactory(protocol.Factory):
    noisy = False

    def __init__(self) -> None:
        self.connected: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()
        self.transport = None

    def buildProtocol(self, addr):
        return DeafPeer(self)


def sleep(seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


def unsent(conn) -> int:
    """Bytes the TCP transport holds that the kernel did not take."""
    return len(conn.dataBuffer) - conn.offset + conn._tempDataLen


def bounded(d: defer.Deferred, what: str) -> defer.Deferred:
    return d.addTimeout(WAIT, reactor, onTimeoutCancel=lambda *_: AssertionError(what))


@pytest_twisted.inlineCallbacks
def test_stop_aborts_a_real_connection_whose_peer_stopped_reading():
    server = DeafFactory()
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    bus = EventBus(reactor, tcp_queue_limit=MAX_NOTIFICATIONS)
    try:
        bus.subscribe(EVENT_SETUP_FAILED, f"tcp:127.0.0.1:{port.getHost().port}")
        bus.raise_event(EVENT_SETUP_FAILED, {"n": 0})
        yield bounded(server.connected, "the bus never connected")
        target = bus._tcp[next(iter(bus._tcp))]
        until = time.monotonic() + WAIT  # the server side can see the connection first
        while target.proto is None and time.monotonic() < until:
            yield sleep(0.01)
        conn = target.proto.conn
        # Write until the kernel takes no more: bytes then wait in the transport.
        deadline = time.monotonic() + WAIT
        for i in range(1, MAX_NOTIFICATIONS):
            bus.raise_event(EVENT_SETUP_FAILED, {"n": i, "pad": "x" * CHUNK})
            yield sleep(0.05)  # the reactor pushes what the kernel takes
            if unsent(conn) or time.monotonic() > deadline:
                break
        assert unsent(conn), "the peer's socket never pushed back"
        started = time.monotonic()
        yield bounded(bus.stop(), "EventBus.stop() hung")
        took = time.monotonic() - started
        assert took >= CLOSE_GRACE * 0.9  # the grace was given (a hang is `bounded`'s failure)
        assert target.proto is None
        until = time.monotonic() + WAIT  # the abort completes a reactor turn later
        while not conn.disconnected and time.monotonic() < until:
            yield sleep(0.01)
        assert conn.disconnected  # our side is gone, unsent bytes and all
        # The peer, reading again, finds the connection closed (a paused peer cannot).
        server.transport.resumeProducing()
        why = yield bounded(server.lost, "the peer's connection was not closed")
        assert why is not None
        assert target.proto is None and not bus._closing
    finally:
        yield bus.stop()  # a no-op once stopped; bounded by CLOSE_GRACE otherwise
        yield port.stopListening()
