"""RFC 3263 end to end on 127.0.0.1: a twisted.names authoritative server (random UDP port)
serves NAPTR, SRV and A records for example.test; SIP stacks send MESSAGE and INVITE to
``sip:bob@example.test`` and the request reaches the listener that SRV (priority) or NAPTR
(TCP) chose. Every query goes to that server: the resolver is given it, and the server
records what it was asked."""

from __future__ import annotations

from dataclasses import replace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.names import authority, dns, server

from msrp_gateway.sip.dns import SIPResolver
from msrp_gateway.sip.stack import SIPStack, SIPTransportError
from msrp_gateway.sip.transport import SIPTransport
from tests.tlscerts import make_certs

TIMEOUT = 15.0  # generous: a loaded CI machine; every step here takes milliseconds


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

    def __init__(self, tls_settings=None) -> None:
        self.transport = SIPTransport(reactor, tls_settings)
        self.transport.listen("udp:127.0.0.1:0")
        self.transport.listen("tcp:127.0.0.1:0")
        if tls_settings is not None:
            self.transport.listen("tls:127.0.0.1:0")
        self.stack = SIPStack(reactor, self.transport,
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
    made: list[Node] = []

    def make(tls_settings=None) -> Node:
        n = Node(tls_settings)
        made.append(n)
        return n

    yield make
    for n in made:
        pytest_twisted.blockon(n.close())


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
