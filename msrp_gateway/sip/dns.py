"""RFC 3263 server location for the requests we send: NAPTR -> SRV -> A/AAAA through
twisted.names (never blocking the reactor), answers kept within their TTLs in a bounded
cache. The choices themselves are the pure functions of ``resolution``."""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import client, dns, error
from twisted.python.failure import Failure

from ..sockets import SocketStringError, parse_host_port
from .dns_client import ResolverStopped, StoppableClient
from .peers import DEFAULT_PORTS, Peer, TransportError, family, is_ip
from .resolution import (
    MAX_DNS_NAME, NAPTRRecord, SRVRecord, Target, first_address, naptr_choices, order_srv,
    refuses_service, srv_name, target_of, transport_order,
)

__all__ = ["DNSCache", "DNSLookupError", "Located", "ResolverStopped", "SIPResolver",
           "TargetsExhausted", "parse_servers"]

log = Logger()

DEFAULT_TIMEOUT = (1.0, 3.0, 5.0)  # per-try waits: a dead server costs 9 s, well inside Timer F
RESOLV_CONF = "/etc/resolv.conf"  # resolv.conf(5): the system's name servers
RESOLV_RECHECK = 60.0  # seconds between checks of resolv.conf's mtime (at lookup time)
MAX_RECORDS = 32  # answers of one type we consider; the rest of a hostile answer is ignored
MAX_TARGETS = 8  # SRV targets whose addresses we try before giving up
MAX_SRV_NAMES = 6  # SRV names (from NAPTR) asked for one request: a hostile zone cannot
# make one request cost more than this many SRV queries


class DNSLookupError(TransportError):
    """A DNS query that got no usable answer (timeout, server failure, refusal); a
    TransportError, so the request it was for is answered 503. ``timed_out`` tells a
    server that did not answer from one that answered with an error."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class TargetsExhausted(TransportError):
    """Every target RFC 3263 gives for a URI is among those excluded (already tried for
    this request, s.4.3): there is no next one."""


def parse_servers(servers: Sequence[str | tuple[str, int]]) -> list[tuple[str, int]]:
    """DNS servers as ``"IP"``, ``"IP:PORT"``, ``"[V6]:PORT"`` or ``(IP, PORT)`` -> (ip,
    port) pairs (port 53 by default). Raises ValueError naming the bad entry: a server is
    an IP literal (a name would need DNS to find DNS) with a port from 1 to 65535."""
    if isinstance(servers, (str, bytes)):
        raise ValueError("DNS servers must be a list, e.g. ['127.0.0.1:5353']")
    out: list[tuple[str, int]] = []
    for entry in servers:
        try:
            if isinstance(entry, tuple) and len(entry) == 2:
                host, port = str(entry[0]).strip("[]"), entry[1]
                if not is_ip(host) or not isinstance(port, int) or not 0 < port < 65536:
                    raise SocketStringError("host", "an IP literal and a port 1-65535")
            elif isinstance(entry, str) and ":" in entry and is_ip(entry):
                host, port = entry, 53  # a bare IPv6 literal, as resolv.conf writes it
            elif isinstance(entry, str):
                host, port = parse_host_port(entry, 53, names=False, min_port=1)
            else:
                raise SocketStringError("host", "'IP[:PORT]' or (IP, PORT)")
        except SocketStringError as e:
            raise ValueError(f"bad DNS server {entry!r}: the {e.part} must be {e.expected}") \
                from None
        out.append((host.strip("[]"), port))
    if not out:
        raise ValueError("DNS servers: give at least one 'IP[:PORT]'")
    return out


def read_resolv_conf(path: str) -> list[tuple[str, int]]:
    """The ``nameserver`` lines of a resolv.conf(5) file (bad lines skipped); 127.0.0.1 when
    it names none or is missing, as the C library does."""
    servers: list[tuple[str, int]] = []
    try:
        with open(path, "rb") as f:
            for line in f.read(65536).splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == b"nameserver":
                    host = parts[1].decode("ascii", "replace").split("%")[0]
                    if is_ip(host) and len(servers) < 3:  # MAXNS is 3 in resolv.conf(5)
                        servers.append((host, 53))
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


class DNSCache:
    """Answers by key until their TTL ends, on the injected clock; at most ``max_entries``,
    the oldest stored dropped first past the bound (insertion order: O(1))."""

    __slots__ = ("clock", "max_entries", "_entries")

    def __init__(self, clock: Any, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("the DNS cache needs max_entries >= 1")
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[str, int], tuple[float, Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, int]) -> Any:
        """The value stored for ``key`` if its TTL has not run out, else None."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock.seconds():
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: tuple[str, int], value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self.clock.seconds() + ttl, value)

    def clear(self) -> None:
        self._entries.clear()


@dataclass(frozen=True, slots=True)
class Located:
    """Where a request goes: ``peer`` (an IP), and ``name``, the host that a TLS server's
    certificate must name (the URI's domain, RFC 5922 s.4, not the SRV target)."""

    peer: Peer
    name: str


class SIPResolver:
    """RFC 3263 s.4 for a URI: NAPTR (no transport param, no port) -> SRV (no port) ->
    A/AAAA, ports 5060/5061 when DNS has no records. Failures errback TransportError (the
    stack answers 503).

    ``servers``: DNS servers to ask (validated by ``parse_servers``); default: resolv.conf's
    ``nameserver`` lines, re-read when the file changes. SRV targets' addresses come from
    DNS; other hosts' (a port given, ``localhost``, one label, a domain without records)
    from the servers when given, else from the reactor's resolver (getaddrinfo: the hosts
    file and search domains apply, as before RFC 3263 support). ``dns_client`` replaces the twisted.names
    client (any object with ``lookupNamingAuthorityPointer``, ``lookupService``,
    ``lookupAddress``, ``lookupIPV6Address``), for tests. ``rng`` orders SRV weights."""

    def __init__(self, reactor: Any, *, servers: Sequence[str | tuple[str, int]] | None = None,
                 timeout: Sequence[float] = DEFAULT_TIMEOUT, max_cache_entries: int = 4096,
                 max_ttl: float = 3600.0, negative_ttl: float = 30.0,
                 max_pending: int = 1024, rng: random.Random | None = None,
                 dns_client: Any = None, resolv_conf: str = RESOLV_CONF) -> None:
        if not timeout or any(not 0 < t <= 60 for t in timeout) or sum(timeout) > 60:
            raise ValueError("DNS timeout: one or more waits of (0, 60] s, 60 s in all")
        if max_ttl < 0 or negative_ttl < 0:
            raise ValueError("DNS max_ttl and negative_ttl must be >= 0")
        if max_pending < 1:
            raise ValueError("DNS max_pending must be >= 1")
        self.reactor = reactor
        self.servers = parse_servers(servers) if servers is not None else None
        self.timeout = tuple(float(t) for t in timeout)
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.max_pending = max_pending
        self.rng = rng or random.SystemRandom()
        self.cache = DNSCache(reactor, max_cache_entries)
        self._client = dns_client
        self._dns_addresses = servers is not None or dns_client is not None
        self._resolv_conf = resolv_conf
        self._resolv_checked = float("-inf")
        self._resolv_mtime: float | None = None
        self._pending: dict[tuple[str, int], list[defer.Deferred[Any]]] = {}
        self._targets: dict[str, tuple[Target, bool]] = {}
        self.queries = 0  # DNS queries sent (cache misses), for tests and operators
        self._unreachable: dict[Peer, float] = {}
        self._srv_peers: dict[Peer, None] = {}  # peers SRV walks chose lately (bounded)
        self._waits: set[defer.Deferred[Any]] = set()  # answers a walk waits for
        self.stopped = False

    def stop(self) -> defer.Deferred[None]:
        """Shutdown: every lookup in flight fails now (its ``locate`` errbacks
        DNSLookupError, a TransportError: the request gets 503), the DNS retry timers are
        cancelled and the query sockets closed; later lookups fail at once. Fires when
        the sockets are closed. (An address asked of the reactor's resolver, getaddrinfo in
        a thread, cannot be recalled: its answer is ignored.)"""
        self.stopped = True
        waits, self._waits = self._waits, set()
        for wait in waits:
            if not wait.called:
                wait.callback(_stopped_error())
        dns_client, self._pending = self._client, {}
        closing: defer.Deferred[None] = defer.succeed(None)
        if dns_client is not None and callable(getattr(dns_client, "stop", None)):
            closing = defer.maybeDeferred(dns_client.stop)
        return closing

    # -- the DNS client ------------------------------------------------------------------

    def _dns(self) -> Any:
        """The twisted.names client, made on first use (no socket and no timer before a
        name needs DNS); without explicit servers its list follows resolv.conf."""
        if self._client is None:
            servers = self.servers or read_resolv_conf(self._resolv_conf)
            self._client = StoppableClient(servers=servers, reactor=self.reactor,
                                   timeout=self.timeout)
            self._resolv_checked = self.reactor.seconds()
            self._resolv_mtime = self._mtime()
        elif self.servers is None and isinstance(self._client, client.Resolver):
            now = self.reactor.seconds()
            if now - self._resolv_checked >= RESOLV_RECHECK:
                self._resolv_checked = now
                mtime = self._mtime()
                if mtime != self._resolv_mtime:
                    self._resolv_mtime = mtime
                    self._client.servers = read_resolv_conf(self._resolv_conf)
                    log.info("DNS servers from {path}: {servers}", path=self._resolv_conf,
                             servers=self._client.servers)
        return self._client

    def _mtime(self) -> float | None:
        try:
            return os.stat(self._resolv_conf).st_mtime
        except OSError:
            return None

    def _query(self, name: str, rtype: int) -> defer.Deferred[list[Any]]:
        """Records of ``rtype`` for ``name`` (``NAPTRRecord``, ``SRVRecord`` or address
        text; malformed ones left out), from the cache or one query; an empty list for
        NXDOMAIN or no data (kept ``negative_ttl``). Concurrent identical queries share
        one. Timeouts and server failures errback DNSLookupError and are not kept."""
        key = (name, rtype)
        hit = self.cache.get(key)
        if hit is not None:
            return defer.succeed(hit)
        if self.stopped:
            return defer.fail(_stopped_error())
        waiting = self._pending.get(key)
        if waiting is not None:
            d: defer.Deferred[list[Any]] = defer.Deferred()
            waiting.append(d)
            return d
        if len(self._pending) >= self.max_pending:
            return defer.fail(DNSLookupError(
                f"too many DNS lookups in progress ({self.max_pending}); {name!r} not asked",
                timed_out=False))
        self._pending[key] = []
        self.queries += 1
        lookup, convert = _LOOKUPS[rtype]
        d = defer.maybeDeferred(getattr(self._dns(), lookup), name)

        def answered(result: Any) -> list[Any]:
            answers = [rr for rr in result[0] if rr.type == rtype][:MAX_RECORDS]
            records = [r for r in map(convert, (rr.payload for rr in answers)) if r is not None]
            if records:
                ttl = min(float(rr.ttl or 0) for rr in answers)
                self.cache.put(key, records, min(ttl, self.max_ttl))
            else:
                self.cache.put(key, records, self.negative_ttl)
            return records

        def failed(f: Failure) -> list[Any]:
            if isinstance(f.value, error.DNSNameError):  # NXDOMAIN: a negative answer
                self.cache.put(key, [], self.negative_ttl)
                return []
            timeout = (error.DNSQueryTimeoutError, defer.TimeoutError)
            why = "timed out" if isinstance(f.value, timeout) \
                else f.getErrorMessage() or type(f.value).__name__
            raise DNSLookupError(f"DNS {dns.QUERY_TYPES.get(rtype, rtype)} lookup of "
                                 f"{name!r} failed: {why}",
                                 timed_out=isinstance(f.value, timeout))

        def done(result: Any) -> Any:
            for other in self._pending.pop(key, []):
                if isinstance(result, Failure):
                    other.errback(result)
                else:
                    other.callback(result)
            return result

        return d.addCallbacks(answered, failed).addBoth(done)

    # -- RFC 3263 ------------------------------------------------------------------------

    def mark_unreachable(self, peer: Peer, seconds: float = 60.0) -> None:
        """Note that ``peer`` failed (connection refused, no answer: s.4.3); for
        ``seconds``, SRV walks try the other targets first. At most 1024 noted, oldest
        first out."""
        self._unreachable.pop(peer, None)
        while len(self._unreachable) >= 1024:
            del self._unreachable[next(iter(self._unreachable))]
        self._unreachable[peer] = self.reactor.seconds() + seconds

    def found_by_srv(self, peer: Peer) -> bool:
        """Whether ``peer`` is one an SRV walk chose lately (of the last 4096 chosen): the
        stack marks such a peer unreachable when a request to it fails (s.4.3)."""
        return peer in self._srv_peers

    def _chose(self, where: Located) -> Located:
        peers = self._srv_peers
        if where.peer not in peers:
            if len(peers) >= 4096:
                del peers[next(iter(peers))]
            peers[where.peer] = None
        return where

    def is_unreachable(self, peer: Peer) -> bool:
        until = self._unreachable.get(peer)
        if until is None:
            return False
        if until <= self.reactor.seconds():
            del self._unreachable[peer]
            return False
        return True

    def locate(self, uri_text: str, *, transports: frozenset[str] | None = None,
               large: bool = False, families: set[int] | None = None,
               exclude: Collection[Peer] | None = None) -> defer.Deferred[Located]:
        """Where a request to ``uri_text`` goes: s.4.1 transport (the URI's, NAPTR, SRV
        presence, else UDP/TLS), s.4.2 port and host (SRV in RFC 2782 order, else the URI's
        or the default port), the address of the first target that has one (``families``
        preferred). ``transports``: those we can send (default all); ``large``: the request
        must not go over UDP if another transport is offered (s.18.1.1). When every answer
        needed is cached, the Deferred has fired on return.

        ``exclude``: peers already tried for this request (s.4.3): they are never returned; the walk goes on to the next SRV
        target, then to the next SRV name (NAPTR order or ours), and errbacks
        ``TargetsExhausted`` (a TransportError) when none is left. Targets marked
        unreachable come after the others, as without ``exclude``."""
        skip = frozenset(exclude) if exclude is not None else frozenset()
        known = self._targets.get(uri_text)
        if known is None:
            try:
                target = target_of(uri_text)
            except TransportError as e:
                return defer.fail(e)
            if len(target.host) > MAX_DNS_NAME:
                return defer.fail(TransportError(f"host name too long in {uri_text!r}"))
            known = (target, target.uses_srv)
            if len(self._targets) >= 4096:  # a memo of the parse: bounded, oldest first
                del self._targets[next(iter(self._targets))]
            self._targets[uri_text] = known
        target, srv = known
        allowed = transports if transports is not None else frozenset(DEFAULT_PORTS)
        order = transport_order(target, allowed, large)
        fams = families or set()
        return self._run(self._walk(target, srv, order, large, fams, skip), None, fams)

    def _walk(self, target: Target, srv: bool, order: list[str], large: bool,
              families: set[int], exclude: frozenset[Peer] = frozenset(),
              ) -> Generator[list[tuple[str, int]], list[Any], Located]:
        """RFC 3263 as a sans-IO walk: it yields the lookups it needs (name, type) — all
        of one step at once — and is sent their results in the same order (a list of
        answers, or the DNSLookupError). ``_run`` answers from the cache or the network."""
        if not srv:  # s.4.2: an IP, a port, or a name DNS must not see
            transport = order[0]
            ip = yield from self._walk_address(target.host, families, system=True)
            return _unless_excluded(
                Located(Peer(transport, ip, target.port or DEFAULT_PORTS[transport]),
                        target.host), exclude)
        domain = target.host.rstrip(".").lower()
        choices: list[tuple[str, str]] = []
        if target.transport is None:
            (naptrs,) = yield [(domain, dns.NAPTR)]
            if isinstance(naptrs, DNSLookupError):
                if naptrs.timed_out:
                    raise naptrs
                # a server that refuses or fails NAPTR (some do): go on with SRV
                log.debug("{why}; trying SRV", why=str(naptrs))
                naptrs = []
            choices = naptr_choices(naptrs, order, large)[:MAX_SRV_NAMES]
        if not choices:  # s.4.1: no (usable) NAPTR: SRV for each transport we use
            choices = [(t, srv_name(t, domain)) for t in order]
        refused: list[str] = []
        refused_transports: set[str] = set()
        passed_over = 0  # targets skipped as ``exclude``d: s.4.3 goes on to the next name
        for transport, name in choices:
            (records,) = yield [(name, dns.SRV)]
            if isinstance(records, Exception):
                raise records
            if refuses_service(records):
                refused.append(name)
                refused_transports.add(transport)
                continue
            if records:
                errors = []
                shunned: Located | None = None
                excluded = 0
                for r in order_srv(records, self.rng)[:MAX_TARGETS]:
                    try:
                        ip = yield from self._walk_address(r.target, families, system=False)
                    except TransportError as e:
                        errors.append(str(e))
                        continue
                    where = Located(Peer(transport, ip, r.port), domain)
                    if where.peer in exclude:
                        excluded += 1
                        continue
                    if not self.is_unreachable(where.peer):
                        return self._chose(where)
                    shunned = shunned or where  # s.4.3: the next target first
                if shunned is not None:
                    return self._chose(shunned)  # all known unreachable: better than none
                if excluded:
                    passed_over += excluded
                    continue
                if passed_over:
                    break  # the name after the tried ones has no usable target either
                raise TransportError(f"no SRV target of {domain!r} has an address: "
                                     + "; ".join(errors[:3]))
        if passed_over:  # failover: never the address fallback (s.4.2 is for no SRV at all)
            raise TargetsExhausted(f"every target of {domain!r} has been tried "
                                   f"({passed_over})")
        # s.4.2: no SRV records: the domain's own address, on the default port of the
        # first transport the domain did not refuse with a '.' target
        usable = [t for t in order if t not in refused_transports]
        if not usable or refused and len(refused) == len(choices):
            raise TransportError(f"{domain!r} offers no SIP service "
                                 f"(SRV target '.' at {', '.join(refused)})")
        transport = usable[0]
        ip = yield from self._walk_address(domain, families, system=True)
        return _unless_excluded(Located(Peer(transport, ip, DEFAULT_PORTS[transport]), domain),
                                exclude)

    def _walk_address(self, host: str, families: set[int], *,
                      system: bool) -> Generator[list[tuple[str, int]], list[Any], str]:
        """One address of ``host``, a family of ``families`` first. A and AAAA from DNS
        for SRV targets (DNS named them) and whenever our servers were given; the other
        hosts through the reactor's resolver by default (hosts file, search domains)."""
        bare = host.strip("[]")
        if (bare[-1:].isdigit() or ":" in bare) and is_ip(bare):  # cheap test first
            return bare
        if system and not self._dns_addresses:
            (found,) = yield [(bare, SYSTEM)]
            if isinstance(found, Exception):
                raise found
            return str(found[0])
        name = bare.rstrip(".").lower()
        answers = yield [(name, dns.A), (name, dns.AAAA)]
        addresses: list[str] = []
        failures: list[str] = []
        for answer in answers:
            if isinstance(answer, Exception):
                failures.append(str(answer))
            else:
                addresses.extend(answer)
        usable = [a for a in addresses if family(a) in families] or addresses
        if usable:
            return usable[0]
        raise TransportError(f"{name!r} has no address" +
                             (f" ({failures[0]})" if failures else ""))

    def _run(self, walk: Generator[list[tuple[str, int]], list[Any], Located],
             answers: list[Any] | None, families: set[int]) -> defer.Deferred[Located]:
        """Drive ``walk``: cached answers at once, the rest by one query each (in
        parallel within a step); its result or error becomes the Deferred's."""
        try:
            while True:
                asks = walk.send(answers)  # type: ignore[arg-type]  # None starts it
                answers = [None if rtype == SYSTEM else self.cache.get((name, rtype))
                           for name, rtype in asks]
                missing = [i for i, a in enumerate(answers) if a is None]
                if missing:
                    break
        except StopIteration as stop:
            return defer.succeed(stop.value)
        except TransportError as e:
            return defer.fail(e)
        except Exception as e:  # a fault of ours: still a 503 for the request, and logged
            log.error("RFC 3263 lookup failed: {err!r}", err=e)
            return defer.fail(TransportError(f"name resolution failed: {e!r}"))
        known = answers

        def ask(name: str, rtype: int) -> defer.Deferred[Any]:
            """The answer (or the exception) for one lookup, as a Deferred of ours that
            ``stop()`` can fire early."""
            if self.stopped:
                return defer.succeed(_stopped_error())
            d: defer.Deferred[Any]
            if rtype == SYSTEM:
                d = _system_address(self.reactor, name, families).addCallback(
                    lambda ip: [ip])
            else:
                d = self._query(name, rtype)
            out: defer.Deferred[Any] = defer.Deferred()
            self._waits.add(out)

            def deliver(result: Any) -> None:
                self._waits.discard(out)
                if not out.called:
                    out.callback(result)

            d.addErrback(lambda f: f.value if isinstance(f.value, Exception) else f)
            d.addBoth(deliver)
            return out

        def resume(results: list[Any]) -> defer.Deferred[Located]:
            for i, result in zip(missing, results):
                known[i] = result
            return self._run(walk, known, families)

        waits = [ask(*asks[i]) for i in missing]
        return defer.gatherResults(waits).addCallback(resume)


def _unless_excluded(where: Located, exclude: frozenset[Peer]) -> Located:
    """``where``, or TargetsExhausted when it is the one target and was already tried."""
    if where.peer in exclude:
        raise TargetsExhausted(f"{where.peer} (the only target of {where.name!r}) "
                               "has been tried")
    return where


def _stopped_error() -> DNSLookupError:
    return DNSLookupError("DNS resolver stopped (shutting down)", timed_out=False)


SYSTEM = -1  # a pseudo record type: the address from the reactor's resolver (not cached)


def _system_address(reactor: Any, host: str, families: set[int]) -> defer.Deferred[str]:
    if getattr(reactor, "nameResolver", None) is not None:
        d = first_address(reactor, host, families)
    else:
        d = defer.maybeDeferred(reactor.resolve, host)

    def failed(f: Failure) -> str:
        if isinstance(f.value, TransportError):
            return f  # type: ignore[return-value]  # re-raised as it is
        raise TransportError(f"cannot resolve {host!r}: {f.getErrorMessage()}")

    return d.addErrback(failed)


def _text(value: Any) -> str:
    raw = getattr(value, "string", getattr(value, "name", value))
    if isinstance(raw, bytes):
        return raw.decode("ascii", "replace")
    return str(raw)


def _name(value: Any) -> str:
    return _text(value).rstrip(".").lower()


def _naptr(record: Any) -> NAPTRRecord | None:
    try:
        return NAPTRRecord(int(record.order), int(record.preference), _text(record.flags),
                           _text(record.service), _text(record.regexp),
                           _name(record.replacement))
    except (AttributeError, TypeError, ValueError):
        return None


def _srv(record: Any) -> SRVRecord | None:
    try:
        target = _name(record.target) or "."
        if len(target) > MAX_DNS_NAME or not 0 < int(record.port) < 65536 and target != ".":
            return None
        return SRVRecord(int(record.priority), int(record.weight), int(record.port), target)
    except (AttributeError, TypeError, ValueError):
        return None


def _address_text(record: Any) -> str | None:
    """The address of an A or AAAA record as text, None when it is not one."""
    try:
        if isinstance(record, dns.Record_A):
            return str(ipaddress.IPv4Address(record.address))
        if isinstance(record, dns.Record_AAAA):
            return str(ipaddress.IPv6Address(record.address))
    except (TypeError, ValueError):
        pass
    return None


_LOOKUPS: dict[int, tuple[str, Any]] = {
    dns.NAPTR: ("lookupNamingAuthorityPointer", _naptr),
    dns.SRV: ("lookupService", _srv),
    dns.A: ("lookupAddress", _address_text),
    dns.AAAA: ("lookupIPV6Address", _address_text),
}
