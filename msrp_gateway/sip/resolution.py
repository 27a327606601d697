"""Next hop for a request (RFC 3261 s.18.1.1, RFC 3263 without NAPTR/SRV): the pure choice
of transport, host and port from a URI, and the non-blocking lookup of a host name."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from zope.interface import implementer  # type: ignore[import-untyped]  # no stubs

from .message import SIPParseError
from .peers import DEFAULT_PORTS, MTU_SIZE_LIMIT, Peer, TransportError, family, is_ip
from .uri import parse_uri

__all__ = ["NextHopCache", "first_address", "next_hop", "udp_fallback"]


def next_hop(uri_text: str, size: int = 0, *, upgrade: bool = True) -> tuple[str, str, int]:
    """(transport, host, port) for a request of ``size`` bytes to ``uri_text``: the
    ``transport`` param (sips: TLS; UDP over 1300 bytes: TCP, unless ``upgrade`` is False
    because we have no TCP listener a Via could name), host from ``maddr`` or the URI
    (brackets kept; may be a name), the transport's default port. Raises TransportError
    for a URI we cannot route to."""
    try:
        uri = parse_uri(uri_text.strip().strip("<>"))
    except SIPParseError as e:
        raise TransportError(f"cannot route to {uri_text!r}: {e.reason}") from None
    transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
    if uri.scheme == "sips" and transport == "tcp":
        transport = "tls"
    if transport not in DEFAULT_PORTS:
        raise TransportError(f"unsupported transport {transport!r} in {uri_text!r}")
    if transport == "udp" and size > MTU_SIZE_LIMIT and upgrade:
        transport = "tcp"
    host = uri.param("maddr") or uri.host
    return transport, host, uri.port or DEFAULT_PORTS[transport]


Hop = tuple[str, str, int, "Peer | None"]


class NextHopCache:
    """``next_hop`` remembered per (URI text, over 1300 bytes?, upgrade?): the same R-URI is
    parsed once, not for every MESSAGE sent to it. Entries are immutable tuples
    ``(transport, host, port, peer)`` — ``peer`` is the final ``Peer`` when the host is an
    IP literal, else None (a name to look up). URIs that cannot be routed are not kept
    (each one raises again). At most ``max_entries``, oldest dropped first."""

    __slots__ = ("max_entries", "_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, bool, bool], Hop] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def lookup(self, uri_text: str, size: int, upgrade: bool) -> Hop:
        """As ``next_hop(uri_text, size, upgrade=upgrade)`` plus the Peer for an IP host;
        raises TransportError as it does."""
        key = (uri_text, size > MTU_SIZE_LIMIT, upgrade)
        hop = self._entries.get(key)
        if hop is None:
            transport, host, port = next_hop(uri_text, size, upgrade=upgrade)
            bare = host.strip("[]")
            hop = (transport, host, port, Peer(transport, bare, port) if is_ip(bare) else None)
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = hop
        return hop


def udp_fallback(uri_text: str, peer: Peer) -> Peer | None:
    """Where to retry a request over UDP when TCP to ``peer`` failed, if it went over TCP
    only because of its size (s.18.1.1: "the element SHOULD retry the request, using
    UDP"); None when TCP was asked for (``transport=tcp``) or the URI is not usable."""
    if peer.transport != "tcp":
        return None
    try:
        transport = next_hop(uri_text, 0)[0]
    except TransportError:
        return None
    return Peer("udp", peer.host, peer.port) if transport == "udp" else None


def first_address(reactor: Any, host: str, families: set[int]) -> defer.Deferred[str]:
    """The first address ``host`` resolves to (A or AAAA) in one of ``families`` (those we
    listen on; any if none fits), through the reactor's pluggable resolver (getaddrinfo in
    the thread pool: the reactor never blocks)."""
    d: defer.Deferred[str] = defer.Deferred()
    found: list[str] = []

    @implementer(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, resolution: IHostResolution) -> None:  # noqa: N802
            pass

        def addressResolved(self, address: Any) -> None:  # noqa: N802
            found.append(address.host)

        def resolutionComplete(self) -> None:  # noqa: N802
            usable = [a for a in found if family(a) in families] or found
            if usable:
                d.callback(usable[0])
            else:
                d.errback(TransportError(f"{host!r} has no address"))

    reactor.nameResolver.resolveHostName(Receiver(), host)
    return d
