"""The twisted.names client that ``dns.SIPResolver`` asks, made stoppable: service shutdown
must fail the queries in flight, cancel their retry timers and close their sockets (UDP, and
TCP after a truncated answer), which ``twisted.names.client.Resolver`` cannot do by itself."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.names import client, dns

__all__ = ["ResolverStopped", "StoppableClient"]


class ResolverStopped(Exception):
    """What a DNS query still in flight fails with when its resolver stops (not a timeout,
    so twisted.names does not ask again)."""


class _QuerySocket(dns.DNSDatagramProtocol):
    """The UDP socket of one query; tells its client when the socket is closed."""

    def __init__(self, controller: StoppableClient, reactor: Any) -> None:
        super().__init__(controller, reactor=reactor)  # type: ignore[no-untyped-call]
        self.owner = controller
        self.closing = False

    def stopProtocol(self) -> None:  # noqa: N802 - Twisted's name
        super().stopProtocol()
        self.owner._closed(self)


class StoppableClient(client.Resolver):
    """twisted.names' client, made stoppable: it knows the UDP socket of every query in
    flight (one each, as Twisted does, from a random port) and its TCP connections, so
    ``stop()`` can fail their queries, cancel their retry timers and close the sockets."""

    def __init__(self, *, servers: list[tuple[str, int]], reactor: Any,
                 timeout: Sequence[float]) -> None:
        self._sockets: set[_QuerySocket] = set()  # bound and not yet closed
        self._connectors: list[Any] = []  # TCP connection attempts (truncated answers)
        self._closed_waiters: list[defer.Deferred[None]] = []
        self.stopped = False
        super().__init__(servers=servers, reactor=reactor,  # type: ignore[no-untyped-call]
                         timeout=tuple(timeout))

    def _connectedProtocol(self, interface: str = "") -> _QuerySocket:  # noqa: N802
        """A new query socket on a random source port (RFC 5452 s.9.2), as Twisted's."""
        if self.stopped:
            raise ResolverStopped("DNS resolver stopped")
        proto = _QuerySocket(self, self._reactor)
        for attempt in range(1000):
            try:
                self._reactor.listenUDP(dns.randomSource(), proto, interface=interface)
            except CannotListenError as e:
                if getattr(e.socketError, "errno", None) == errno.EMFILE or attempt == 999:
                    raise
                continue
            break
        self._sockets.add(proto)
        return proto

    def queryTCP(self, queries: Any, timeout: float = 10) -> defer.Deferred[Any]:  # noqa: N802
        """Twisted's (a truncated UDP answer asked again over TCP), keeping the connector
        so that ``stop()`` can abandon a connection attempt."""
        if self.stopped:
            return defer.fail(ResolverStopped("DNS resolver stopped"))
        if self.connections:
            d: defer.Deferred[Any] = self.connections[0].query(queries, timeout)
            return d
        address = self.pickServer()  # type: ignore[no-untyped-call]  # Twisted
        if address is None:
            return defer.fail(OSError("No domain name servers available"))
        connector = self._reactor.connectTCP(address[0], address[1], self.factory)
        self._connectors = [c for c in self._connectors if c.state == "connecting"]
        self._connectors.append(connector)
        waiting: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((waiting, queries, timeout))
        return waiting

    def _query(self, *args: Any) -> defer.Deferred[Any]:
        """One query on its own socket, closed once answered, failed or stopped."""
        proto = self._connectedProtocol(interface="::" if isIPv6Address(args[0][0]) else "")
        d: defer.Deferred[Any] = proto.query(*args)
        return d.addBoth(self._finished, proto)

    def _finished(self, result: Any, proto: _QuerySocket) -> Any:
        self._close(proto)
        return result

    def _close(self, proto: _QuerySocket) -> None:
        port: Any = proto.transport  # IUDPTransport's zope methods read without self
        if not proto.closing and port is not None:
            proto.closing = True
            port.stopListening()

    def _closed(self, proto: _QuerySocket) -> None:
        self._sockets.discard(proto)
        if not self._sockets:
            waiters, self._closed_waiters = self._closed_waiters, []
            for w in waiters:
                w.callback(None)

    def stop(self) -> defer.Deferred[None]:
        """Fail every query in flight with ResolverStopped, cancel their timers, close
        their sockets and TCP connections; fires once every query socket is closed."""
        self.stopped = True
        stopped = ResolverStopped("DNS resolver stopped")
        protocols: list[Any] = [*self._sockets, *self.connections]
        for proto in protocols:
            live, proto.liveMessages = dict(proto.liveMessages or {}), {}
            for d, call in live.values():
                if call.active():
                    call.cancel()
                d.errback(stopped)
        for proto in list(self._sockets):
            self._close(proto)
        for conn in list(self.connections):
            conn.transport.abortConnection()
        pending, self.pending = self.pending, []
        for d, _, _ in pending:
            d.errback(stopped)
        for connector in self._connectors:
            if connector.state == "connecting":
                connector.stopConnecting()
        self._connectors = []
        if not self._sockets:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed_waiters.append(waiter)
        return waiter
