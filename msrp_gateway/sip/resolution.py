"""Next hop for a request (RFC 3261 s.18.1.1, RFC 3263): the pure choice of transport, host
and port from a URI, RFC 3263's choices among NAPTR and SRV answers (RFC 2782 order), and
the non-blocking lookup of a host name. The DNS lookups themselves are in ``dns.py``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IHostResolution, IResolutionReceiver
from zope.interface import implementer  # type: ignore[import-untyped]  # no stubs

from .message import SIPParseError
from .peers import DEFAULT_PORTS, MTU_SIZE_LIMIT, Peer, TransportError, family, is_ip
from .uri import parse_uri

__all__ = ["NAPTRRecord", "NextHopCache", "SRVRecord", "Target", "first_address",
           "naptr_choices", "next_hop", "order_srv", "refuses_service", "srv_name",
           "target_of", "transport_order", "udp_fallback"]


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


# -- RFC 3263 server location: the pure choices (the lookups are in dns.py) ---------------

NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}  # RFC 3263 s.4.1
SRV_PREFIXES = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}  # s.4.2
MAX_DNS_NAME = 253  # RFC 1035 s.2.3.4 (presentation form, no trailing dot)


@dataclass(frozen=True, slots=True)
class SRVRecord:
    """One SRV answer (RFC 2782); ``target`` without the trailing dot, lower-cased."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class NAPTRRecord:
    """One NAPTR answer (RFC 3403) as RFC 3263 reads it; text fields decoded, the
    replacement without the trailing dot, lower-cased."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Target:
    """What a URI tells RFC 3263 before any lookup: the TARGET (maddr, else host; no
    brackets), the transport it fixes (``transport`` param; sips: TLS) or None when DNS
    may choose, the explicit port or None, and whether it is a SIPS URI."""

    host: str
    transport: str | None
    port: int | None
    secure: bool

    @property
    def uses_srv(self) -> bool:
        """s.4.2: SRV (and NAPTR, s.4.1) only for a host name without a port. Names that
        DNS must never see (RFC 6761 ``localhost``) and single-label names (looked up as
        hosts, so that search domains and the hosts file apply) go straight to A/AAAA."""
        host = self.host.lower().rstrip(".")
        return (self.port is None and not is_ip(self.host) and "." in host
                and host != "localhost" and not host.endswith(".localhost"))


def target_of(uri_text: str) -> Target:
    """The RFC 3263 inputs of ``uri_text``; raises TransportError as ``next_hop`` does."""
    try:
        uri = parse_uri(uri_text.strip().strip("<>"))
    except SIPParseError as e:
        raise TransportError(f"cannot route to {uri_text!r}: {e.reason}") from None
    secure = uri.scheme == "sips"
    transport = uri.transport
    if transport is not None:
        if secure and transport == "tcp":
            transport = "tls"
        if transport not in DEFAULT_PORTS:
            raise TransportError(f"unsupported transport {transport!r} in {uri_text!r}")
    elif secure:
        transport = None  # s.4.1: a SIPS URI may still use NAPTR, among SIPS+D2T only
    host = (uri.param("maddr") or uri.host).strip("[]")
    if not host:
        raise TransportError(f"cannot route to {uri_text!r}: no host")
    return Target(host, transport, uri.port, secure)


def transport_order(target: Target, allowed: frozenset[str], large: bool) -> list[str]:
    """The transports to look for, best first: the one the URI fixes (``transport`` param;
    TLS for a SIPS URI), else UDP, TCP, TLS — TCP and TLS first for a request over 1300
    bytes (s.18.1.1) —, keeping those in ``allowed`` (what our Via can name) when any is."""
    if target.transport is not None:
        return [target.transport]
    if target.secure:
        return ["tls"]
    order = ["tcp", "tls", "udp"] if large else ["udp", "tcp", "tls"]
    return [t for t in order if t in allowed] or order


def naptr_choices(records: list[NAPTRRecord], order: list[str],
                  large: bool = False) -> list[tuple[str, str]]:
    """(transport, SRV name) from NAPTR records, s.4.1: only ``S`` records of the SIP
    services in ``order`` (with an empty regexp), by order then preference (RFC 3403),
    our ``order`` among equals; UDP last of all for a ``large`` request (s.18.1.1). Each
    SRV name at most once."""
    rank = {t: i for i, t in enumerate(order)}
    usable = []
    for r in records:
        transport = NAPTR_SERVICES.get(r.service.upper())
        if transport is None or transport not in rank or r.flags.lower() != "s" or r.regexp:
            continue
        if not r.replacement or len(r.replacement) > MAX_DNS_NAME:
            continue
        usable.append((large and transport == "udp", r.order, r.preference, rank[transport],
                       transport, r.replacement))
    usable.sort()
    seen: set[tuple[str, str]] = set()
    out = []
    for *_, transport, name in usable:
        if (transport, name) not in seen:
            seen.add((transport, name))
            out.append((transport, name))
    return out


def srv_name(transport: str, domain: str) -> str:
    """The SRV owner name for ``transport`` at ``domain`` (s.4.2: ``_sips._tcp`` for TLS)."""
    return SRV_PREFIXES[transport] + domain.rstrip(".").lower()


def order_srv(records: list[SRVRecord], rng: random.Random) -> list[SRVRecord]:
    """RFC 2782's order: lowest priority first; within a priority, a weighted random pick
    repeated until none is left (weight 0 placed first, so it is picked rarely when others
    weigh more). Targets of ``.`` (service not offered) are left out. ``rng`` is injected
    so that tests can seed it."""
    out: list[SRVRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority and r.target not in ("", ".")]
        group.sort(key=lambda r: r.weight != 0)  # zero weights first, else as received
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def refuses_service(records: list[SRVRecord]) -> bool:
    """RFC 2782: a single SRV record whose target is ``.`` says the service is decidedly
    not available at this domain."""
    return len(records) == 1 and records[0].target in ("", ".")
