"""RFC 3263 end to end on 127.0.0.1: a twisted.names authoritative server (random UDP port)
serves NAPTR, SRV and A records for example.test; SIP stacks send MESSAGE and INVITE to
``sip:bob@example.test`` and the request reaches the listener that SRV (priority) or NAPTR
(TCP) chose. Every query goes to that server (or to a silent one of the test's own): the
resolver is given it — directly, or through ``[sip] dns_servers`` and
``service.build_service`` — and the server records what it was asked. Also: stopping a
resolver (or the service) with a query in flight leaves no timer and no socket behind;
a request to an SRV target that is down (refused, silent) goes on to the next target
itself, and later requests go there first (s.4.3)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.names import authority, dns, server

from msrp_gateway.config import from_dict
from msrp_gateway.service import build_service
from msrp_gateway.sip.dns import DNSLookupError, SIPResolver
from msrp_gateway.sip.peers import Peer
from msrp_gateway.sip.stack import SIPStack, SIPTimeout, SIPTransportError
from msrp_gateway.sip.transaction import TimerSettings
from msrp_gateway.sip.transport import SIPTransport
from tests.integration.test_sip_stack import made_and_closed
from tests.tlscerts import make_certs

TIMEOUT = 30.0  # generous: a loaded CI machine; every step here takes milliseconds


def with_timeout(d: defer.Deferred) -> defer.Deferred:
    return d.addTimeout(TIMEOUT, reactor)


class TestZone(authority.FileAuthority):
    """An in-memory authority for example.test that records every name it is asked."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []
        super().__init__(None)

    def loadFile(self, filename) -> None:  # noqa: N802 - FileAuthority's hook
        soa = dns.Record_SOA(mname=b"ns.example.test", rname=b"root.example.test",
                             serial=1, refresh=3600, retry=600, expire=3600, minimum=5,
                             ttl=5)
        self.soa = (b"example.test", soa)
        self.records = {b"example.test": [soa]}

    def add(self, name: str, record) -> None:
        self.records.setdefault(name.encode(), []).append(record)

    def _lookup(self, name, cls, type, timeout=None):
        self.asked.append((name.decode(), type))
        return super()._lookup(name, cls, type, timeout)


class Node:
    """A SIP transport on 127.0.0.1 (UDP and TCP, and TLS with ``tls_settings``, each on a
    free port) with a stack that answers MESSAGE 200 and accepts INVITEs, recording what
    reached it and how."""

    def __init__(self, tls_settings=None, clock=reactor) -> None:
        self.transport = SIPTransport(reactor, tls_settings)
        self.transport.listen("udp:127.0.0.1:0")
        self.transport.listen("tcp:127.0.0.1:0")
        if tls_settings is not None:
            self.transport.listen("tls:127.0.0.1:0")
        self.stack = SIPStack(clock, self.transport,
                              local_uri_host=f"127.0.0.1:{self.port('udp')}", router=self.route)
        self.seen: list[tuple[str, str]] = []  # (method, Via transport)
        self.dialogs: list = []

    def port(self, kind: str) -> int:
        return next(p.port for p in self.transport.listening if p.transport == kind)

    def route(self, txn) -> None:
        req = txn.request
        self.seen.append((req.method, req.top_via.protocol))
        if req.method == "MESSAGE":
            txn.respond(200)
        elif req.method == "INVITE":
            self.dialogs.append(self.stack.accept(txn, body=b"answer",
                                                  content_type="application/sdp"))
        else:
            txn.respond(405)

    def close(self) -> defer.Deferred:
        self.stack.stop()
        return self.transport.stop()


@pytest.fixture
def zone():
    """The authoritative server on 127.0.0.1 (UDP, a port from the OS)."""
    z = TestZone()
    factory = server.DNSServerFactory(authorities=[z])
    port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    z.address = f"127.0.0.1:{port.getHost().port}"
    yield z
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def nodes():
    """`nodes(tls_settings=None, clock=reactor)` -> a Node, closed after the test."""
    yield from made_and_closed(Node)


def caller_of(nodes, zone, tls_settings=None) -> Node:
    caller = nodes(tls_settings)
    caller.transport.resolver = SIPResolver(reactor, servers=[zone.address])
    return caller


def message_to(caller: Node, ruri: str):
    return caller.stack.new_request("MESSAGE", "sip:alice@127.0.0.1", ruri, ruri,
                                    body=b"hello", content_type="text/plain")


@pytest_twisted.ensureDeferred
async def test_message_and_invite_reach_the_listener_srv_priority_chose(nodes, zone):
    chosen, other = nodes(), nodes()
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 100, other.port("udp"),
                                                      b"other.example.test", ttl=60))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 1, chosen.port("udp"),
                                                      b"chosen.example.test", ttl=60))
    zone.add("chosen.example.test", dns.Record_A("127.0.0.1", ttl=60))
    zone.add("other.example.test", dns.Record_A("127.0.0.1", ttl=60))
    caller = caller_of(nodes, zone)

    resp = await with_timeout(caller.stack.send_request(message_to(caller,
                                                                   "sip:bob@example.test")))
    assert resp.status == 200
    assert chosen.seen == [("MESSAGE", "UDP")] and other.seen == []
    assert ("example.test", dns.NAPTR) in zone.asked  # s.4.1 asked NAPTR first
    assert ("_sip._udp.example.test", dns.SRV) in zone.asked

    invite = caller.stack.new_request("INVITE", "sip:alice@127.0.0.1", "sip:bob@example.test",
                                      "sip:bob@example.test", body=b"offer",
                                      content_type="application/sdp")
    dialog = await with_timeout(caller.stack.invite(invite).deferred)
    assert dialog.remote_sdp == b"answer"
    assert chosen.seen[-1] == ("INVITE", "UDP") and other.seen == []
    (uas,) = chosen.dialogs
    await with_timeout(uas.confirmed)
    assert (await with_timeout(dialog.bye())).status == 200

    asked = len(zone.asked)  # answers are cached within their TTL: no new query
    resp = await with_timeout(caller.stack.send_request(message_to(caller,
                                                                   "sip:bob@example.test")))
    assert resp.status == 200 and len(zone.asked) == asked
    assert all(name.endswith("example.test") for name, _ in zone.asked)


@pytest_twisted.ensureDeferred
async def test_naptr_chooses_tcp_and_its_srv_target(nodes, zone):
    tcp_target, udp_target = nodes(), nodes()
    zone.add("chat.example.test", dns.Record_NAPTR(
        10, 10, b"s", b"SIP+D2T", b"", b"_sip._tcp.chat.example.test", ttl=60))
    zone.add("chat.example.test", dns.Record_NAPTR(
        20, 10, b"s", b"SIP+D2U", b"", b"_sip._udp.chat.example.test", ttl=60))
    zone.add("_sip._tcp.chat.example.test", dns.Record_SRV(
        10, 0, tcp_target.port("tcp"), b"t.chat.example.test", ttl=60))
    zone.add("_sip._udp.chat.example.test", dns.Record_SRV(
        10, 0, udp_target.port("udp"), b"u.chat.example.test", ttl=60))
    zone.add("t.chat.example.test", dns.Record_A("127.0.0.1", ttl=60))
    zone.add("u.chat.example.test", dns.Record_A("127.0.0.1", ttl=60))
    caller = caller_of(nodes, zone)

    resp = await with_timeout(caller.stack.send_request(message_to(
        caller, "sip:bob@chat.example.test")))
    assert resp.status == 200
    assert tcp_target.seen == [("MESSAGE", "TCP")] and udp_target.seen == []
    assert caller.transport.connection_count == 1
    assert ("_sip._udp.chat.example.test", dns.SRV) not in zone.asked


@pytest_twisted.ensureDeferred
async def test_no_records_means_the_domain_address_and_unknown_names_fail(nodes, zone):
    """Without NAPTR or SRV, s.4.2 falls back to the domain's own A record on the default
    port (5060 is nobody's here, so the resolver's answer is checked, not a send); a name
    with no records at all makes the request fail as a transport error (503 upstream)."""
    zone.add("plain.example.test", dns.Record_A("127.0.0.1", ttl=60))
    caller = caller_of(nodes, zone)
    located = await with_timeout(caller.transport.resolve("sip:bob@plain.example.test"))
    assert (located.transport, located.host, located.port) == ("udp", "127.0.0.1", 5060)
    assert {("_sip._udp.plain.example.test", dns.SRV),
            ("_sip._tcp.plain.example.test", dns.SRV)} <= set(zone.asked)

    with pytest.raises(SIPTransportError, match="nowhere.example.test"):
        await with_timeout(caller.stack.send_request(message_to(
            caller, "sip:bob@nowhere.example.test")))
    assert ("nowhere.example.test", dns.A) in zone.asked


@pytest_twisted.ensureDeferred
async def test_sips_uri_goes_to_the_sips_srv_target_verified_against_the_uri_domain(
        nodes, zone, tmp_path):
    """RFC 5922 s.4: the certificate of a server found through SRV must name the domain
    of the URI (example.test), not the SRV target (whose name and address this
    certificate does not hold, so verification against either would fail)."""
    certs = make_certs(tmp_path, names=("example.test",))
    callee = nodes(certs)
    zone.add("_sips._tcp.example.test", dns.Record_SRV(10, 0, callee.port("tls"),
                                                       b"tls-target.example.test", ttl=60))
    zone.add("tls-target.example.test", dns.Record_A("127.0.0.1", ttl=60))
    caller = caller_of(nodes, zone, replace(certs, verify_peers=True))
    resp = await with_timeout(caller.stack.send_request(message_to(caller,
                                                                   "sips:bob@example.test")))
    assert resp.status == 200
    assert callee.seen == [("MESSAGE", "TLS")]


# -- helpers of the tests below -----------------------------------------------------------

class Silent(protocol.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that reads and never answers: a dead DNS server or a
    dead SIP target. ``first`` fires on the first datagram."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.first: defer.Deferred = defer.Deferred()

    def datagramReceived(self, data, addr) -> None:  # noqa: N802 - Twisted's name
        self.received.append(data)
        if not self.first.called:
            self.first.callback(data)


@pytest.fixture
def silent():
    s = Silent()
    port = reactor.listenUDP(0, s, interface="127.0.0.1")
    s.port = port.getHost().port
    s.address = f"127.0.0.1:{s.port}"
    yield s
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest.fixture
def refusing_tcp_port():
    """A TCP port of 127.0.0.1 that refuses connections: bound (so nobody else gets it
    during the test) but not listening, so a connect gets a reset."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def until(condition, limit: float = TIMEOUT) -> None:
    """Wait for ``condition()`` (polls every 10 ms), bounded by ``limit`` s of wall-clock
    time: a count of polls stretches on a loaded machine."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= end:
            pytest.fail(f"still not true after {limit} s")
        await task.deferLater(reactor, 0.01, lambda: None)


def pending_calls() -> set:
    """The reactor's timers still to come (a call already due finishes a close)."""
    now = reactor.seconds()
    return {c for c in reactor.getDelayedCalls() if c.active() and c.getTime() > now}


def open_sockets() -> set:
    return {s for s in reactor.getReaders() if not getattr(s, "disconnecting", False)
            and getattr(s, "connected", True) and hasattr(s, "getHost")}


def service_settings(dns_servers, **sip):
    """A gateway on 127.0.0.1 (ports from the OS) asking ``dns_servers``; no MI, GC left
    alone (the test process is not the gateway's)."""
    return from_dict({
        "sip": {"socket": ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], "dns_servers": dns_servers,
                **sip},
        "msrp": {"socket": ["msrp:127.0.0.1:0"]}, "mi": {"http": ""},
        "process": {"gc_freeze": False, "gc_thresholds": []}})


async def stopped(svc) -> None:
    await with_timeout(defer.maybeDeferred(svc.stopService))


# -- shutdown ------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_resolver_stop_fails_a_pending_lookup_and_leaves_no_timer_or_socket(silent):
    calls_before, sockets_before = pending_calls(), open_sockets()
    resolver = SIPResolver(reactor, servers=[silent.address])
    located = resolver.locate("sip:bob@example.test")
    query = dns.Message()
    query.fromStr(await with_timeout(silent.first))  # the NAPTR query is in flight
    assert [(q.name.name, q.type) for q in query.queries] == [(b"example.test", dns.NAPTR)]
    assert not located.called
    assert pending_calls() - calls_before, "twisted.names' retry timer is pending"
    assert len(open_sockets() - sockets_before) == 1, "the query's own UDP socket"

    closing = resolver.stop()
    with pytest.raises(DNSLookupError, match="stopped"):  # a TransportError: 503
        await with_timeout(located)
    await with_timeout(closing)
    assert pending_calls() - calls_before == set()
    assert open_sockets() - sockets_before == set()

    # stopped for good: a new lookup fails at once and asks nobody
    asked = len(silent.received)
    later = resolver.locate("sip:carol@other.test")
    assert later.called
    with pytest.raises(DNSLookupError, match="stopped"):
        await later
    assert len(silent.received) == asked


@pytest_twisted.ensureDeferred
async def test_stopping_the_service_with_a_message_waiting_for_dns_leaves_no_timer(silent):
    """[sip] dns_servers names a server that never answers: the MESSAGE waits for DNS
    (twisted.names would retry it for 9 s); stopping the service fails it at once as a
    transport error (the gateway's 503) and leaves no DelayedCall and no query socket."""
    calls_before, sockets_before = pending_calls(), open_sockets()
    svc = build_service(service_settings([silent.address]), reactor)
    svc.startService()
    try:
        answer = svc.gateway.send_message("sip:alice@127.0.0.1", "sip:bob@example.test",
                                          "sip:bob@example.test", b"hello")
        await with_timeout(silent.first)
        assert not answer.called
        assert pending_calls() - calls_before
    finally:
        await stopped(svc)
    assert answer.called, "failed by the stop, not by DNS timeouts seconds later"
    status, reason = await answer
    assert status == 503
    assert pending_calls() - calls_before == set()
    assert open_sockets() - sockets_before == set()


# -- configuration ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_service_resolves_through_the_configured_dns_servers(nodes, zone):
    target = nodes()
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, target.port("udp"),
                                                      b"gw-target.example.test", ttl=60))
    zone.add("gw-target.example.test", dns.Record_A("127.0.0.1", ttl=60))
    svc = build_service(service_settings([zone.address], dns_cache_size=16), reactor)
    assert svc.sip.transport.resolver.servers == [("127.0.0.1", int(zone.address[10:]))]
    assert svc.sip.transport.resolver.cache.max_entries == 16
    svc.startService()
    try:
        status, _ = await with_timeout(svc.gateway.send_message(
            "sip:alice@127.0.0.1", "sip:bob@example.test", "sip:bob@example.test", b"hi"))
    finally:
        await stopped(svc)
    assert status == 200
    assert target.seen == [("MESSAGE", "UDP")]
    assert ("_sip._udp.example.test", dns.SRV) in zone.asked
    assert ("gw-target.example.test", dns.A) in zone.asked


# -- failover (RFC 3263 s.4.3) ----------------------------------------------------------------

def two_targets(zone, service: str, first_port: int, second_port: int) -> None:
    """``service`` (an SRV name under failover.example.test) with a preferred first
    target and a second one, both 127.0.0.1."""
    zone.add(service, dns.Record_SRV(10, 0, first_port, b"first.example.test", ttl=60))
    zone.add(service, dns.Record_SRV(20, 0, second_port, b"second.example.test", ttl=60))
    zone.add("first.example.test", dns.Record_A("127.0.0.1", ttl=60))
    zone.add("second.example.test", dns.Record_A("127.0.0.1", ttl=60))


@pytest_twisted.ensureDeferred
async def test_a_message_to_a_refused_srv_target_is_sent_again_to_the_next_target(
        nodes, zone, refusing_tcp_port):
    """The first target refuses TCP: the first MESSAGE itself reaches the second target
    (the gateway reports 200, not 503); the refused target is marked, so the next
    MESSAGEs go straight to the second — from the cached SRV answer, no new SRV query."""
    second = nodes()
    two_targets(zone, "_sip._tcp.failover.example.test", refusing_tcp_port,
                second.port("tcp"))
    svc = build_service(service_settings([zone.address]), reactor)
    svc.startService()
    ruri = "sip:bob@failover.example.test;transport=tcp"
    try:
        answers = [await with_timeout(svc.gateway.send_message(
            "sip:alice@127.0.0.1", "sip:bob@failover.example.test", ruri, text))
            for text in (b"one", b"two", b"three")]
    finally:
        await stopped(svc)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert second.seen == [("MESSAGE", "TCP")] * 3
    assert zone.asked.count(("_sip._tcp.failover.example.test", dns.SRV)) == 1
    assert svc.sip.transport.resolver.is_unreachable(
        Peer("tcp", "127.0.0.1", refusing_tcp_port))


@pytest_twisted.ensureDeferred
async def test_an_invite_to_a_refused_srv_target_is_sent_again_to_the_next_target(
        nodes, zone, refusing_tcp_port):
    """The same INVITE (a new branch) reaches the second target and its dialog is set up;
    the refused target is marked."""
    second = nodes()
    two_targets(zone, "_sip._tcp.failover.example.test", refusing_tcp_port,
                second.port("tcp"))
    caller = caller_of(nodes, zone)
    ruri = "sip:bob@failover.example.test;transport=tcp"
    invite = caller.stack.new_request("INVITE", "sip:alice@127.0.0.1", ruri, ruri,
                                      body=b"offer", content_type="application/sdp")
    dialog = await with_timeout(caller.stack.invite(invite).deferred)
    assert dialog.remote_sdp == b"answer"
    assert second.seen == [("INVITE", "TCP")] and len(second.dialogs) == 1
    assert caller.transport.resolver.is_unreachable(
        Peer("tcp", "127.0.0.1", refusing_tcp_port))


@pytest_twisted.ensureDeferred
async def test_a_sips_message_moves_to_the_next_tls_target_still_verified_against_the_domain(
        nodes, zone, tmp_path, refusing_tcp_port):
    """The first _sips._tcp target refuses: the same MESSAGE goes to the second over TLS,
    whose certificate is checked against the URI's domain as for the first target (the
    next target comes through the transport's own resolve, which keeps that name)."""
    certs = make_certs(tmp_path, names=("secure.example.test",))
    callee = nodes(certs)
    two_targets(zone, "_sips._tcp.secure.example.test", refusing_tcp_port,
                callee.port("tls"))
    caller = caller_of(nodes, zone, replace(certs, verify_peers=True))
    resp = await with_timeout(caller.stack.send_request(
        message_to(caller, "sips:bob@secure.example.test")))
    assert resp.status == 200 and callee.seen == [("MESSAGE", "TLS")]
    assert caller.transport.resolver.is_unreachable(
        Peer("tls", "127.0.0.1", refusing_tcp_port))


@pytest.fixture
def silent2():
    s = Silent()
    port = reactor.listenUDP(0, s, interface="127.0.0.1")
    s.port = port.getHost().port
    yield s
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def silent_caller(nodes, zone):
    """A caller whose stack's timers run on a task.Clock (sockets and DNS are real), so
    T1 multiples pass when the test says."""
    clock = task.Clock()
    caller = nodes(clock=clock)
    caller.transport.resolver = SIPResolver(reactor, servers=[zone.address])
    return caller, clock


@pytest_twisted.ensureDeferred
async def test_a_message_to_a_silent_srv_target_moves_to_the_next_after_16_t1(
        nodes, zone, silent):
    """The first target (UDP) never answers: after 16*T1 (8 s) of silence the same
    MESSAGE goes to the second target, which answers 200; the silent one is marked."""
    second = nodes()
    two_targets(zone, "_sip._udp.failover.example.test", silent.port, second.port("udp"))
    caller, clock = silent_caller(nodes, zone)
    ruri = "sip:bob@failover.example.test;transport=udp"
    t1 = TimerSettings().t1

    first = caller.stack.send_request(message_to(caller, ruri))
    await with_timeout(silent.first)  # it went to the silent target
    clock.advance(16 * t1 - 0.01)
    assert not first.called and second.seen == []
    clock.advance(0.01)
    resp = await with_timeout(first)
    assert resp.status == 200 and second.seen == [("MESSAGE", "UDP")]
    assert caller.transport.resolver.is_unreachable(Peer("udp", "127.0.0.1", silent.port))
    branches = {line for data in silent.received for line in data.split(b"\r\n")
                if line.startswith(b"Via:")}
    assert len(branches) == 1  # retransmissions of one try, not new tries


@pytest_twisted.ensureDeferred
async def test_a_message_whose_srv_targets_are_all_silent_gets_408_at_64_t1_in_all(
        nodes, zone, silent, silent2):
    """Both targets are silent: the MESSAGE moves to the second after 16*T1 and is given
    up (SIPTimeout, the gateway's 408) 64*T1 after its first send, not 64*T1 after the
    second try began."""
    two_targets(zone, "_sip._udp.failover.example.test", silent.port, silent2.port)
    caller, clock = silent_caller(nodes, zone)
    ruri = "sip:bob@failover.example.test;transport=udp"
    t1 = TimerSettings().t1

    d = caller.stack.send_request(message_to(caller, ruri))
    await with_timeout(silent.first)
    clock.advance(16 * t1)
    await with_timeout(silent2.first)  # the same request, at the second target
    clock.advance(48 * t1 - 0.01)
    assert not d.called
    clock.advance(0.01)
    with pytest.raises(SIPTimeout):
        await with_timeout(d)
    assert clock.getDelayedCalls() == []  # no try's timer outlives the request
    assert caller.stack.transaction_count == 0


@pytest_twisted.ensureDeferred
async def test_a_lone_silent_srv_target_keeps_the_message_until_timer_f(nodes, zone, silent):
    """With no other target, silence past 16*T1 changes nothing: Timer F (64*T1) ends it."""
    zone.add("_sip._udp.lone.example.test",
             dns.Record_SRV(10, 0, silent.port, b"first.example.test", ttl=60))
    zone.add("first.example.test", dns.Record_A("127.0.0.1", ttl=60))
    caller, clock = silent_caller(nodes, zone)
    ruri = "sip:bob@lone.example.test;transport=udp"
    t1 = TimerSettings().t1

    d = caller.stack.send_request(message_to(caller, ruri))
    await with_timeout(silent.first)
    clock.advance(16 * t1)
    await task.deferLater(reactor, 0.05, lambda: None)  # a DNS answer would be read here
    assert not d.called
    clock.advance(48 * t1)
    with pytest.raises(SIPTimeout):
        await with_timeout(d)
    assert caller.transport.resolver.is_unreachable(Peer("udp", "127.0.0.1", silent.port))


@pytest_twisted.ensureDeferred
async def test_a_failure_to_a_target_not_from_srv_marks_nothing(nodes, zone,
                                                               refusing_tcp_port):
    """s.4.3 failover is for SRV targets: a request to an IP (or a name's A record) that
    fails leaves the resolver's marks alone."""
    caller = caller_of(nodes, zone)
    ruri = f"sip:bob@127.0.0.1:{refusing_tcp_port};transport=tcp"
    with pytest.raises(SIPTransportError):
        await with_timeout(caller.stack.send_request(message_to(caller, ruri)))
    assert not caller.transport.resolver.is_unreachable(
        Peer("tcp", "127.0.0.1", refusing_tcp_port))


class Truncating(protocol.DatagramProtocol):
    """A DNS server whose UDP answers are all truncated (TC set, nothing in them), so
    the client asks again over TCP — where a listener on the same port accepts and never
    answers."""

    def datagramReceived(self, data, addr) -> None:  # noqa: N802 - Twisted's name
        query = dns.Message()
        query.fromStr(data)
        answer = dns.Message(id=query.id, answer=1, trunc=1)
        answer.queries = query.queries
        self.transport.write(answer.toStr(), addr)


class MuteTCP(protocol.Protocol):
    """Reads DNS queries over TCP and never answers; ``factory.first`` fires on the
    first bytes of a query (the client's query is then in flight, its timer running)."""

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.factory.accepted.append(self)

    def dataReceived(self, data) -> None:  # noqa: N802
        if not self.factory.first.called:
            self.factory.first.callback(data)

    def connectionLost(self, reason=None) -> None:  # noqa: N802
        self.factory.lost.append(self)


@pytest.fixture
def truncating():
    """(address, TCP server factory): UDP and TCP on one port of 127.0.0.1."""
    factory = protocol.ServerFactory.forProtocol(MuteTCP)
    factory.accepted, factory.lost, factory.first = [], [], defer.Deferred()
    for _ in range(50):  # the UDP port from the OS; TCP on the same number if free
        udp = reactor.listenUDP(0, Truncating(), interface="127.0.0.1")
        number = udp.getHost().port
        try:
            tcp = reactor.listenTCP(number, factory, interface="127.0.0.1")
        except Exception:
            pytest_twisted.blockon(defer.maybeDeferred(udp.stopListening))
            continue
        break
    else:
        pytest.fail("no port free for both UDP and TCP on 127.0.0.1")
    yield f"127.0.0.1:{number}", factory
    for conn in factory.accepted:
        conn.transport.abortConnection()
    pytest_twisted.blockon(defer.gatherResults([defer.maybeDeferred(udp.stopListening),
                                                defer.maybeDeferred(tcp.stopListening)]))


@pytest_twisted.ensureDeferred
async def test_resolver_stop_also_ends_a_query_gone_to_tcp_after_a_truncated_answer(
        truncating):
    address, server_side = truncating
    calls_before, sockets_before = pending_calls(), open_sockets()
    resolver = SIPResolver(reactor, servers=[address])
    located = resolver.locate("sip:bob@example.test")
    await with_timeout(server_side.first)  # the truncated answer sent it to TCP
    assert not located.called
    assert pending_calls() - calls_before, "the TCP query's timeout is pending"

    await with_timeout(resolver.stop())
    with pytest.raises(DNSLookupError, match="stopped"):
        await with_timeout(located)
    assert pending_calls() - calls_before == set()
    await until(lambda: len(server_side.lost) == len(server_side.accepted))  # we closed it
    assert open_sockets() - sockets_before == set()
