"""SIPTransport over real loopback sockets: UDP, TCP and TLS (RFC 3261 s.18, RFC 3581)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, replace

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, ssl
from twisted.internet.task import Clock

from bench.ports import free_port
from msrp_gateway.sip.message import (
    Limits,
    SIPRequest,
    SIPResponse,
    StreamParser,
    make_response,
    parse_message,
)
from msrp_gateway.sip.transport import Peer, SIPTransport, TransportError, parse_listen_string
from tests.tlscerts import make_certs

# a bound only ever waited out when something is broken: generous, so a loaded CI machine
# that stalls for seconds does not fail a working test
TIMEOUT = 30.0


def request(branch: str = "z9hG4bKabc", body: bytes = b"hello", *, via_host: str = "192.0.2.1",
            via_port: int = 5070, rport: bool = True, call_id: str = "c1@test") -> SIPRequest:
    raw = (
        "MESSAGE sip:gw@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:{via_port};branch={branch}{';rport' if rport else ''}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    return parse_message(raw)


def with_timeout(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


class Inbox:
    """Collects what a transport hands up; ``next()`` waits for the next one."""

    def __init__(self, transport: SIPTransport) -> None:
        self.items: list[tuple[object, Peer]] = []
        self._waiting: list[defer.Deferred] = []
        transport.on_message = self.on_message

    def on_message(self, msg, peer) -> None:
        self.items.append((msg, peer))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def next(self, count: int = 1):
        while len(self.items) < count:
            d: defer.Deferred = defer.Deferred()
            self._waiting.append(d)
            await with_timeout(d)
        return self.items[count - 1]


@pytest.fixture
def transports():
    made: list[SIPTransport] = []

    def make(use_reactor=None, **kw) -> SIPTransport:
        t = SIPTransport(use_reactor or reactor, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        pytest_twisted.blockon(t.stop())


def port_of(t: SIPTransport, kind: str) -> int:
    return next(p.port for p in t.listening if p.transport == kind)


# -- raw peers (a plain UDP socket, a plain TCP client) ---------------------------------

class UDPClient(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._waiting: list[defer.Deferred] = []

    def datagramReceived(self, data, addr):  # noqa: N802
        self.received.append(data)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def next(self, count: int = 1) -> bytes:
        while len(self.received) < count:
            d: defer.Deferred = defer.Deferred()
            self._waiting.append(d)
            await with_timeout(d)
        return self.received[count - 1]


@pytest.fixture
def udp_client():
    client = UDPClient()
    port = reactor.listenUDP(0, client, interface="127.0.0.1")
    yield client, port.getHost().port
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


class StreamClient(protocol.Protocol):
    def __init__(self) -> None:
        self.parser = StreamParser()
        self.messages: list = []
        self.raw = b""
        self.closed: defer.Deferred = defer.Deferred()
        self._waiting: list[defer.Deferred] = []

    def dataReceived(self, data):  # noqa: N802
        self.raw += data
        self.messages.extend(self.parser.feed(data))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def connectionLost(self, reason):  # noqa: N802
        self.closed.callback(None)

    async def next(self, count: int = 1):
        while len(self.messages) < count:
            d: defer.Deferred = defer.Deferred()
            self._waiting.append(d)
            await with_timeout(d)
        return self.messages[count - 1]


async def connect_client(port: int, tls: bool = False) -> StreamClient:
    client = StreamClient()
    factory = protocol.Factory.forProtocol(lambda: client)
    from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
    if tls:
        ep = SSL4ClientEndpoint(reactor, "127.0.0.1", port, ssl.CertificateOptions())
    else:
        ep = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await with_timeout(ep.connect(factory))
    return client


async def close_client(client: StreamClient) -> None:
    if not client.closed.called:
        client.transport.loseConnection()
    await with_timeout(client.closed)


# -- tests ------------------------------------------------------------------------------

def test_listen_strings_parse_ipv4_ipv6_and_default_ports():
    assert parse_listen_string("udp:127.0.0.1:5060") == Peer("udp", "127.0.0.1", 5060)
    assert parse_listen_string("TCP:[::1]:5070") == Peer("tcp", "::1", 5070)
    assert parse_listen_string("tls:127.0.0.1") == Peer("tls", "127.0.0.1", 5061)
    for bad in ("sctp:127.0.0.1:5060", "udp:[::1:5060", "udp:127.0.0.1:99999", "udp::5060"):
        with pytest.raises(ValueError):
            parse_listen_string(bad)


@pytest_twisted.ensureDeferred
async def test_udp_request_gets_received_and_rport_and_the_response_goes_back_to_the_source(
        transports, udp_client):
    server = transports()
    server.listen("udp:127.0.0.1:0")
    inbox = Inbox(server)
    client, client_port = udp_client
    client.transport.write(request().to_bytes(), ("127.0.0.1", port_of(server, "udp")))
    msg, source = await inbox.next()
    assert source == Peer("udp", "127.0.0.1", client_port)
    via = msg.top_via
    assert via.received == "127.0.0.1" and via.rport == client_port
    peer = server.response_peer(msg, source)
    assert peer == Peer("udp", "127.0.0.1", client_port)  # rport, not the Via's 5070
    await server.send(make_response(msg, 200, to_tag="t1"), peer)
    resp = parse_message(await client.next())
    assert resp.status == 200 and resp.top_via.rport == client_port


@pytest_twisted.ensureDeferred
async def test_udp_without_rport_answers_received_ip_at_the_via_port(transports):
    server = transports()
    server.listen("udp:127.0.0.1:0")
    msg = request(rport=False, via_host="192.0.2.1", via_port=5090)
    via = msg.top_via
    via.params["received"] = "127.0.0.1"
    msg.set_top_via(via)
    assert server.response_peer(msg, Peer("udp", "127.0.0.1", 40000)) == \
        Peer("udp", "127.0.0.1", 5090)


@pytest_twisted.ensureDeferred
async def test_udp_malformed_request_with_readable_via_gets_400_and_garbage_is_dropped(
        transports, udp_client):
    server = transports(limits=Limits(max_message_size=2000))
    server.listen("udp:127.0.0.1:0")
    inbox = Inbox(server)
    client, client_port = udp_client
    dest = ("127.0.0.1", port_of(server, "udp"))
    broken = request().to_bytes().replace(b"CSeq: 1 MESSAGE", b"CSeq: 1 INVITE")
    client.transport.write(b"\x00\xffnot sip at all\r\n\r\n", dest)
    client.transport.write(broken, dest)
    resp = parse_message(await client.next())
    assert resp.status == 400
    assert "CSeq method" in resp.headers.get("Warning")
    unknown = request().to_bytes().replace(b"MESSAGE sip:gw@127.0.0.1", b"MESSAGE foo:bar")
    client.transport.write(unknown, dest)
    assert parse_message(await client.next(2)).status == 416
    client.transport.write(request(body=b"x" * 3000).to_bytes(), dest)
    assert parse_message(await client.next(3)).status == 513  # over max_message_size
    client.transport.write(request(branch="z9hG4bKok").to_bytes(), dest)
    msg, _ = await inbox.next()
    assert msg.top_via.branch == "z9hG4bKok"
    assert len(inbox.items) == 1 and len(client.received) == 3  # garbage: no answer


def with_headers(req: SIPRequest, count: int, value: str = "y") -> bytes:
    head, body = req.to_bytes().split(b"\r\n\r\n", 1)
    extra = b"".join(b"\r\nX-Filler-%d: %s" % (i, value.encode()) for i in range(count))
    return head + extra + b"\r\n\r\n" + body


@pytest_twisted.ensureDeferred
async def test_udp_too_many_headers_or_a_too_long_line_gets_513_not_silence(
        transports, udp_client):
    """Over UDP these were dropped without a word; where Via, From, To, Call-ID and CSeq
    are readable the sender now hears 513 Message Too Large (s.21.5.9)."""
    server = transports(limits=Limits(max_headers=20, max_line_length=200))
    server.listen("udp:127.0.0.1:0")
    inbox = Inbox(server)
    client, _ = udp_client
    dest = ("127.0.0.1", port_of(server, "udp"))
    client.transport.write(with_headers(request(branch="z9hG4bKmany"), 30), dest)
    resp = parse_message(await client.next())
    assert (resp.status, resp.reason, resp.top_via.branch) == (513, "Message Too Large",
                                                               "z9hG4bKmany")
    assert resp.call_id == "c1@test" and resp.cseq == (1, "MESSAGE")
    assert "too many header lines" in resp.headers.get("Warning")
    client.transport.write(with_headers(request(branch="z9hG4bKlong"), 1, "y" * 300), dest)
    resp = parse_message(await client.next(2))
    assert (resp.status, resp.top_via.branch) == (513, "z9hG4bKlong")
    # the Via itself too long: nothing to answer from; dropped (logged, rate-limited)
    long_via = request(branch="z9hG4bK" + "v" * 300).to_bytes()
    client.transport.write(long_via, dest)
    client.transport.write(request(branch="z9hG4bKfine").to_bytes(), dest)
    msg, _ = await inbox.next()
    assert msg.top_via.branch == "z9hG4bKfine"
    assert len(client.received) == 2 and len(inbox.items) == 1


@pytest.mark.parametrize("how", ["content-length", "endless-headers"])
@pytest_twisted.ensureDeferred
async def test_tcp_message_past_max_size_gets_513_then_the_connection_closes(transports, how):
    """The stream's framing is lost, so the connection closes, but after telling the peer
    why (it used to close with no reply)."""
    server = transports(limits=Limits(max_message_size=2000))
    server.listen("tcp:127.0.0.1:0")
    inbox = Inbox(server)
    client = await connect_client(port_of(server, "tcp"))
    if how == "content-length":
        client.transport.write(request(branch="z9hG4bKbig").to_bytes().replace(
            b"Content-Length: 5", b"Content-Length: 5000"))
    else:
        client.transport.write(with_headers(request(branch="z9hG4bKbig"), 200).split(
            b"\r\n\r\n")[0])
    await with_timeout(client.closed)
    (resp,) = client.messages
    assert (resp.status, resp.top_via.branch, resp.call_id) == (513, "z9hG4bKbig", "c1@test")
    assert inbox.items == [] and server.connection_count == 0


@pytest_twisted.ensureDeferred
async def test_a_request_without_from_or_to_is_dropped_not_answered_with_a_broken_400(
        transports, udp_client):
    """s.8.2.6.2: a response copies From, To, Call-ID and CSeq; without them no well-formed
    400 exists, so the request is dropped; one that has them still gets its 400."""
    server = transports()
    server.listen("udp:127.0.0.1:0")
    client, _ = udp_client
    dest = ("127.0.0.1", port_of(server, "udp"))
    good = request(branch="z9hG4bKnofrom").to_bytes()
    client.transport.write(good.replace(b"From: <sip:alice@example.com>;tag=a1\r\n", b""), dest)
    client.transport.write(good.replace(b"To: <sip:bob@example.com>\r\n", b""), dest)
    broken = request(branch="z9hG4bKanswerable").to_bytes().replace(b"CSeq: 1 MESSAGE",
                                                                     b"CSeq: 1 INVITE")
    client.transport.write(broken, dest)
    resp = parse_message(await client.next())
    assert resp.status == 400 and resp.top_via.branch == "z9hG4bKanswerable"
    assert len(client.received) == 1


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name from a Via: never resolved or sent to from a test
        return False


@pytest_twisted.ensureDeferred
async def test_every_rfc4475_invalid_message_gets_a_well_formed_answer_or_none(
        transports, udp_client):
    """Whatever the broken request, an answer carries one From, To, Call-ID and CSeq
    (echoed as sent, RFC 4475 wants most of these answered 400). Answers go to each
    message's Via, so they are read at ``send``; the last, answerable request (rport: it
    comes back to us) marks the end."""
    from tests.unit.test_sip_torture import INVALID

    server = transports()
    server.listen("udp:127.0.0.1:0")
    sent: list = []
    original_send = server.send

    def recording_send(msg, peer):
        # The corpus' Vias name hosts such as 192.0.2.x: record those answers, but only
        # what goes back to this machine is really sent (tests talk to loopback only).
        sent.append(msg)
        if _is_loopback(peer.host):
            return original_send(msg, peer)
        return defer.succeed(None)

    server.send = recording_send
    client, _ = udp_client
    dest = ("127.0.0.1", port_of(server, "udp"))
    for raw, _code in INVALID.values():
        client.transport.write(raw, dest)
    marker = request(branch="z9hG4bKlast").to_bytes().replace(b"CSeq: 1 MESSAGE",
                                                               b"CSeq: 1 INVITE")
    client.transport.write(marker, dest)
    assert parse_message(await client.next()).top_via.branch == "z9hG4bKlast"
    answers = sent[:-1]
    assert len(INVALID) // 2 < len(answers) < len(INVALID)  # unreadable ones get none
    for answer in answers:
        assert isinstance(answer, SIPResponse) and answer.status in (400, 416, 505)
        assert [answer.headers.count(h) for h in ("From", "To", "Call-ID", "CSeq")] == \
            [1, 1, 1, 1]
        assert answer.top_via.host  # the request's own Via, readable
    repeated = [a for a in answers if a.call_id == "multi01.98asdh@192.0.2.1"]
    assert len(repeated) == 1 and repeated[0].cseq == (5, "INVITE")  # the first ones


@pytest_twisted.ensureDeferred
async def test_tcp_framing_several_messages_per_segment_and_split_and_reply_on_same_connection(
        transports):
    server = transports()
    server.listen("tcp:127.0.0.1:0")
    inbox = Inbox(server)
    client = await connect_client(port_of(server, "tcp"))
    one = request(branch="z9hG4bK1").to_bytes()
    two = request(branch="z9hG4bK2", body=b"x" * 300).to_bytes()
    three = request(branch="z9hG4bK3").to_bytes()
    client.transport.write(b"\r\n\r\n" + one + two[:17])
    client.transport.write(two[17:] + three[:-1])
    client.transport.write(three[-1:])
    await inbox.next(3)
    assert [m.top_via.branch for m, _ in inbox.items] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert inbox.items[1][0].body == b"x" * 300
    msg, source = inbox.items[0]
    assert source.transport == "tcp" and msg.top_via.received == "127.0.0.1"
    peer = server.response_peer(msg, source)
    await server.send(make_response(msg, 200, to_tag="x"), peer)
    resp = await client.next()
    assert isinstance(resp, SIPResponse) and resp.status == 200
    assert client.raw.startswith(b"\r\nSIP/2.0 200")  # the double-CRLF ping got its pong
    assert server.connection_count == 1
    await close_client(client)


@pytest_twisted.ensureDeferred
async def test_tcp_stream_error_closes_only_that_connection(transports):
    server = transports()
    server.listen("tcp:127.0.0.1:0")
    inbox = Inbox(server)
    good = await connect_client(port_of(server, "tcp"))
    bad = await connect_client(port_of(server, "tcp"))
    bad.transport.write(request().to_bytes().replace(b"Content-Length: 5", b"Content-Length: -5"))
    await with_timeout(bad.closed)
    good.transport.write(request(branch="z9hG4bKgood").to_bytes())
    msg, _ = await inbox.next()
    assert msg.top_via.branch == "z9hG4bKgood"
    assert server.connection_count == 1
    await close_client(good)


@pytest_twisted.ensureDeferred
async def test_tcp_framed_malformed_request_gets_400_and_the_connection_stays(transports):
    server = transports()
    server.listen("tcp:127.0.0.1:0")
    inbox = Inbox(server)
    client = await connect_client(port_of(server, "tcp"))
    broken = request().to_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 700")
    client.transport.write(broken + request(branch="z9hG4bKafter").to_bytes())
    resp = await client.next()
    assert resp.status == 400 and resp.top_via.branch == "z9hG4bKabc"
    msg, _ = await inbox.next()
    assert msg.top_via.branch == "z9hG4bKafter"
    await close_client(client)


@pytest_twisted.ensureDeferred
async def test_outbound_tcp_connection_is_opened_once_and_reused_both_ways(transports):
    a = transports()
    a.listen("tcp:127.0.0.1:0")
    b = transports()
    b.listen("tcp:127.0.0.1:0")
    inbox_a, inbox_b = Inbox(a), Inbox(b)
    to_b = Peer("tcp", "127.0.0.1", port_of(b, "tcp"))
    # two sends before the connection is up share one connect
    await defer.gatherResults([a.send(request(branch="z9hG4bKa1"), to_b),
                               a.send(request(branch="z9hG4bKa2"), to_b)])
    await inbox_b.next(2)
    await a.send(request(branch="z9hG4bKa3"), to_b)
    msg, source = await inbox_b.next(3)
    assert a.connection_count == 1 and b.connection_count == 1
    # b answers and sends a new request back over the connection a opened
    await b.send(make_response(msg, 200, to_tag="b"), b.response_peer(msg, source))
    await b.send(request(branch="z9hG4bKb1"), source)
    await inbox_a.next(2)
    kinds = [type(m).__name__ for m, _ in inbox_a.items]
    assert kinds == ["SIPResponse", "SIPRequest"]
    assert a.connection_count == 1 and b.connection_count == 1


@pytest_twisted.ensureDeferred
async def test_connect_failure_errbacks_transport_error(transports):
    a = transports()
    a.listen("tcp:127.0.0.1:0")
    # below the ephemeral range, so no outgoing socket of this machine takes it meanwhile
    free = free_port()
    with pytest.raises(TransportError):
        await a.send(request(), Peer("tcp", "127.0.0.1", free))
    assert a.connection_count == 0


@pytest_twisted.ensureDeferred
async def test_connection_table_bound_refuses_extra_inbound_connections(transports):
    server = transports(max_connections=1)
    server.listen("tcp:127.0.0.1:0")
    inbox = Inbox(server)
    first = await connect_client(port_of(server, "tcp"))
    second = await connect_client(port_of(server, "tcp"))
    await with_timeout(second.closed)
    first.transport.write(request().to_bytes())
    await inbox.next()
    assert server.connection_count == 1
    await close_client(first)


def test_idle_connections_are_closed_after_idle_timeout_on_the_injected_clock():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    clock = MemoryReactorClock()
    t = SIPTransport(clock, idle_timeout=30.0)
    t.listen("tcp:127.0.0.1:5060")
    factory = clock.tcpServers[0][1]
    addr = IPv4Address("TCP", "127.0.0.1", 40000)
    conn = factory.buildProtocol(addr)
    wire = StringTransport(peerAddress=addr)
    conn.makeConnection(wire)
    assert t.connection_count == 1
    clock.advance(29)
    conn.dataReceived(b"\r\n\r\n")  # activity (a ping) restarts the idle timer
    assert wire.value() == b"\r\n"
    clock.advance(29)
    assert not wire.disconnecting
    clock.advance(1.5)
    assert wire.disconnecting
    conn.connectionLost(None)
    assert t.connection_count == 0 and clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_resolve_follows_s18_1_1(transports):
    t = transports()
    t.listen("udp:127.0.0.1:0")  # names resolve to an address family we can send from
    assert await t.resolve("sip:bob@127.0.0.1") == Peer("udp", "127.0.0.1", 5060)
    # without a TCP listener our Via could not name TCP: a large request stays on UDP
    assert await t.resolve("sip:bob@127.0.0.1", 1301) == Peer("udp", "127.0.0.1", 5060)
    with pytest.raises(TransportError, match="does not fit a UDP datagram"):
        await t.resolve("sip:bob@127.0.0.1", 70000)
    t.listen("tcp:127.0.0.1:0")
    assert await t.resolve("sip:bob@127.0.0.1", 1301) == Peer("tcp", "127.0.0.1", 5060)
    assert await t.resolve("sip:bob@127.0.0.1:5070;transport=TCP") == Peer("tcp", "127.0.0.1", 5070)
    assert await t.resolve("sips:bob@[::1]") == Peer("tls", "::1", 5061)
    assert await t.resolve("<sip:x@192.0.2.9;maddr=127.0.0.2;lr>") == Peer("udp", "127.0.0.2", 5060)
    assert await t.resolve("sip:bob@localhost:5099") == Peer("udp", "127.0.0.1", 5099)
    with pytest.raises(TransportError):
        await t.resolve("tel:+123")


@pytest_twisted.ensureDeferred
async def test_local_via_names_the_listener_for_that_transport(transports):
    t = transports()
    t.listen("udp:127.0.0.1:0")
    t.listen("tcp:127.0.0.1:0")
    assert t.local_via(Peer("udp", "127.0.0.1", 5060)) == ("UDP", "127.0.0.1", port_of(t, "udp"))
    assert t.local_via(Peer("tcp", "127.0.0.1", 5060)) == ("TCP", "127.0.0.1", port_of(t, "tcp"))
    with pytest.raises(TransportError):
        t.local_via(Peer("tls", "127.0.0.1", 5061))


@pytest_twisted.ensureDeferred
async def test_ipv6_udp_round_trip(transports):
    a = transports()
    try:
        a.listen("udp:[::1]:0")
    except Exception as e:  # pragma: no cover - host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {e}")
    b = transports()
    b.listen("udp:[::1]:0")
    inbox = Inbox(b)
    proto, host, port = a.local_via(Peer("udp", "::1", 1))
    msg = request(via_host="[::1]", via_port=port)
    await a.send(msg, Peer("udp", "::1", port_of(b, "udp")))
    got, source = await inbox.next()
    assert source.host == "::1" and got.top_via.rport == port


# -- TLS ---------------------------------------------------------------------------------

@dataclass
class TLSFiles:
    certificate: str
    private_key: str
    ca_certificates: str = ""
    verify_peers: bool = False


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest_twisted.ensureDeferred
async def test_tls_listener_accepts_a_client_and_answers_over_the_same_connection(
        transports, tls_files):
    server = transports(tls_settings=tls_files)
    server.listen("tls:127.0.0.1:0")
    inbox = Inbox(server)
    client = await connect_client(port_of(server, "tls"), tls=True)
    client.transport.write(request().to_bytes())
    msg, source = await inbox.next()
    assert source.transport == "tls"
    await server.send(make_response(msg, 202), server.response_peer(msg, source))
    resp = await client.next()
    assert resp.status == 202
    await close_client(client)


@pytest_twisted.ensureDeferred
async def test_tls_between_two_transports_with_peer_verification(transports, tls_files):
    verifying = replace(tls_files, verify_peers=True)
    a = transports(tls_settings=verifying)
    a.listen("tls:127.0.0.1:0")
    b = transports(tls_settings=verifying)
    b.listen("tls:127.0.0.1:0")
    inbox = Inbox(b)
    a.send(request(), Peer("tls", "127.0.0.1", port_of(b, "tls")))
    msg, source = await inbox.next()
    assert source.transport == "tls" and msg.body == b"hello"


@pytest_twisted.ensureDeferred
async def test_tls_over_ipv6_verifies_a_certificate_naming_the_address(transports, tls_files):
    verifying = replace(tls_files, verify_peers=True)
    a = transports(tls_settings=verifying)
    try:
        a.listen("tls:[::1]:0")
    except Exception as e:  # pragma: no cover - host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {e}")
    b = transports(tls_settings=verifying)
    b.listen("tls:[::1]:0")
    inbox = Inbox(b)
    peer = await a.resolve(f"sips:bob@[::1]:{port_of(b, 'tls')}")
    a.send(request(branch="z9hG4bKv6", via_host="[::1]"), peer)
    msg, source = await inbox.next()
    assert source == Peer("tls", "::1", source.port) and msg.top_via.branch == "z9hG4bKv6"


def test_tls_listener_without_usable_certificate_fails_with_a_clear_error(transports, tmp_path,
                                                                          tls_files):
    from twisted.internet.error import CannotListenError

    t = transports()
    with pytest.raises(CannotListenError, match="certificate"):
        t.listen("tls:127.0.0.1:0")
    broken = tmp_path / "broken.pem"
    broken.write_text("not a key")
    t2 = transports(tls_settings=TLSFiles(tls_files.certificate, str(broken)))
    with pytest.raises(CannotListenError, match="certificate or key"):
        t2.listen("tls:127.0.0.1:0")
    t3 = transports(tls_settings=TLSFiles(tls_files.certificate, str(tmp_path / "missing.pem")))
    with pytest.raises(CannotListenError, match="cannot read"):
        t3.listen("tls:127.0.0.1:0")


@pytest.mark.parametrize("sock,why", [
    ("udp:localhost:5060", "not an IP address"),
    ("udp:1.2.3", "not an IP address"),
    ("tcp:localhost:0", "not an IP address"),
    ("sctp:127.0.0.1:5060", "expected udp:HOST:PORT"),
    ("udp:127.0.0.1:70000", "port 0..65535"),
    ("udp:192.0.2.55:0", "assign requested address"),  # not an address of this machine
])
def test_every_listen_failure_is_one_cannotlistenerror_naming_the_socket(transports, sock, why):
    """A ``udp:localhost:5060`` socket crashed start-up with InvalidAddressError; now every
    failure is what the service turns into its one-line StartupError."""
    from twisted.internet.error import CannotListenError

    from msrp_gateway.service import ListenerService, StartupError
    from msrp_gateway.sip.transport import ListenError

    t = transports()
    with pytest.raises(CannotListenError) as info:
        t.listen(sock)
    assert isinstance(info.value, ListenError) and isinstance(info.value, ValueError)
    assert sock in str(info.value) and why in str(info.value)
    service = ListenerService(sock, lambda: t.listen(sock), stack_owned=True)
    with pytest.raises(StartupError) as start:
        service.startService()
    line = str(start.value)
    assert sock in line and why in line and "\n" not in line
    assert t.listening == []


def test_a_taken_port_names_the_socket_too(transports):
    from msrp_gateway.sip.transport import ListenError

    t = transports()
    t.listen("udp:127.0.0.1:0")
    sock = f"udp:127.0.0.1:{port_of(t, 'udp')}"
    with pytest.raises(ListenError, match="already in use") as info:
        transports().listen(sock)
    assert info.value.socket_string == sock


def test_a_peer_that_stops_reading_is_cut_off_past_the_write_backlog():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    clock = MemoryReactorClock()
    t = SIPTransport(clock, max_write_backlog=10_000)
    t.listen("tcp:127.0.0.1:5060")
    addr = IPv4Address("TCP", "127.0.0.1", 40000)
    conn = clock.tcpServers[0][1].buildProtocol(addr)
    wire = StringTransport(peerAddress=addr)
    conn.makeConnection(wire)
    assert wire.producer is conn  # Twisted will tell us when its buffer fills
    peer = Peer("tcp", "127.0.0.1", 40000)
    msg = request(body=b"y" * 3000)
    assert t.send(msg, peer).called
    conn.pauseProducing()  # the peer stopped reading
    for _ in range(3):
        t.send(msg, peer)
    failed = t.send(msg, peer)
    failures = []
    failed.addErrback(failures.append)
    assert failures and failures[0].check(TransportError)
    assert wire.disconnecting
    conn.connectionLost(None)
    assert t.connection_count == 0


async def until(check, seconds: float = TIMEOUT) -> None:
    """Wait for a condition the reactor will make true, bounded by wall-clock time (a count
    of loop turns stretches without bound on a slow machine)."""
    from twisted.internet import task
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= end:
            raise AssertionError(f"condition not reached in {seconds} s")
        await task.deferLater(reactor, 0.02, lambda: None)


@pytest_twisted.ensureDeferred
async def test_tls_verification_checks_the_name_we_resolved(transports, tls_files):
    verifying = replace(tls_files, verify_peers=True)
    a = transports(tls_settings=verifying)
    a.listen("tls:127.0.0.1:0")
    good = transports(tls_settings=tls_files)
    good.listen("tls:127.0.0.1:0")
    inbox = Inbox(good)
    peer = await a.resolve(f"sips:bob@localhost:{port_of(good, 'tls')}")
    assert peer == Peer("tls", "127.0.0.1", port_of(good, "tls"))
    # (delivery is the proof; the send itself is reported at the TLS 1.3 window's end)
    a.send(request(branch="z9hG4bKnamed"), peer)  # certificate names localhost
    msg, _ = await inbox.next()
    assert msg.top_via.branch == "z9hG4bKnamed"
    # the same certificate served on 127.0.0.2 does not name that address: no delivery
    other = transports(tls_settings=tls_files)
    other.listen("tls:127.0.0.2:0")
    other_inbox = Inbox(other)
    with pytest.raises(TransportError, match="certificate does not name 127.0.0.2"):
        await with_timeout(a.send(request(branch="z9hG4bKwrong"),
                                  Peer("tls", "127.0.0.2", port_of(other, "tls"))))
    assert a.connection_count == 1  # the failed handshake dropped that one at once
    assert other_inbox.items == []


def test_malformed_input_logging_is_rate_limited(transports):
    from twisted.logger import globalLogPublisher

    from msrp_gateway.sip import transport as transport_module

    clock = Clock()
    t = transports(use_reactor=ClockedReactor(clock))  # real UDP sockets, the test's clock
    port = t.listen("udp:127.0.0.1:0")
    proto = port.protocol
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        for _ in range(transport_module.MALFORMED_LOG_PER_MINUTE + 50):
            proto.datagramReceived(b"garbage\r\n\r\n", ("127.0.0.1", 40000))
        clock.advance(61)
        proto.datagramReceived(b"garbage\r\n\r\n", ("127.0.0.1", 40000))
    finally:
        globalLogPublisher.removeObserver(seen.append)
    ours = [e for e in seen if e.get("log_namespace") == "msrp_gateway.sip.transport"]
    dropped = [e for e in ours if "dropped malformed" in e["log_format"]]
    summaries = [e for e in ours if "not logged" in e["log_format"]]
    assert len(dropped) == transport_module.MALFORMED_LOG_PER_MINUTE + 1
    assert [e["n"] for e in summaries] == [50]


def test_malformed_input_reaches_the_stacks_error_counters(transports):
    """core:err_requests / core:err_replies count what the transport could not parse, whether
    it answered it (400), dropped it (garbage, a broken response) or closed a stream over it."""
    from msrp_gateway.sip.stack import SIPStack

    clock = Clock()
    t = transports(use_reactor=ClockedReactor(clock))  # real UDP sockets, the test's clock
    proto = t.listen("udp:127.0.0.1:0").protocol
    stack = SIPStack(clock, t, local_uri_host="127.0.0.1", router=lambda txn: None)
    source = ("127.0.0.1", 40000)
    proto.datagramReceived(b"garbage\r\n\r\n", source)
    proto.datagramReceived(b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n"
                           b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKbad\r\n"
                           b"CSeq: one OPTIONS\r\n\r\n", source)
    proto.datagramReceived(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n"
                           b"CSeq: x INVITE\r\nContent-Length: 0\r\n\r\n", source)
    assert (stack.stats.err_requests, stack.stats.err_replies) == (2, 1)
    assert stack.stats.rcv_requests == 0 and stack.stats.rcv_replies == 0


@pytest_twisted.ensureDeferred
async def test_with_two_udp_listeners_each_peer_is_answered_from_the_one_it_used(
        transports, udp_client):
    server = transports()
    first = server.listen("udp:127.0.0.1:0").getHost().port
    second = server.listen("udp:127.0.0.2:0").getHost().port
    inbox = Inbox(server)
    client, _ = udp_client
    responses_from: list = []
    original = client.datagramReceived

    def remember(data, addr):
        responses_from.append(addr)
        original(data, addr)

    client.datagramReceived = remember
    for n, (host, port) in enumerate([("127.0.0.2", second), ("127.0.0.1", first)], 1):
        client.transport.write(request(branch=f"z9hG4bKl{n}").to_bytes(), (host, port))
        msg, source = await inbox.next(n)
        await server.send(make_response(msg, 200), server.response_peer(msg, source))
        await client.next(n)
    assert responses_from == [("127.0.0.2", second), ("127.0.0.1", first)]


# -- TLS handshakes that fail -------------------------------------------------------------

class ClockedReactor:
    """Real sockets of the global reactor, timers from a ``task.Clock``: what happens
    without the test advancing the clock happened without any timer (Timer F, connect or
    handshake deadlines)."""

    def __init__(self, clock) -> None:
        self.clock = clock

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, *args, **kw):  # noqa: N802 - IReactorTime
        return self.clock.callLater(*args, **kw)

    def getDelayedCalls(self):  # noqa: N802
        return self.clock.getDelayedCalls()

    def __getattr__(self, name):
        return getattr(reactor, name)


def stack_and_message(clock, transport, ruri: str):
    """A SIP stack on `transport` (timers on `clock`, routing nothing) and a MESSAGE to
    `ruri` it made: what the gateway would send."""
    from msrp_gateway.sip.stack import SIPStack

    stack = SIPStack(clock, transport, local_uri_host="127.0.0.1", router=lambda txn: None)
    msg = stack.new_request("MESSAGE", "sip:alice@127.0.0.1", ruri, ruri, body=b"hi",
                            content_type="text/plain")
    return stack, msg


def verifying_tls_pair(transports, tls_settings):
    """A TLS server with `tls_settings` (its Inbox) and a client verifying peers with the
    same files, whose timers run on a Clock: (server, inbox, clock, client, peer)."""
    server = transports(tls_settings=tls_settings)
    server.listen("tls:127.0.0.1:0")
    clock = Clock()
    client = transports(use_reactor=ClockedReactor(clock),
                        tls_settings=replace(tls_settings, verify_peers=True))
    return server, Inbox(server), clock, client, Peer("tls", "127.0.0.1", port_of(server, "tls"))


class TransportLog:
    """The transport's log events whose format contains ``text``, while in use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        if event.get("log_namespace") == "msrp_gateway.sip.transport" and \
                self.text in event.get("log_format", ""):
            self.events.append(event)

    def __enter__(self) -> TransportLog:
        from twisted.logger import globalLogPublisher
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc) -> None:
        from twisted.logger import globalLogPublisher
        globalLogPublisher.removeObserver(self)

    def where(self, **fields) -> list[dict]:
        return [e for e in self.events if all(e.get(k) == v for k, v in fields.items())]


def bundle(tmp_path, *certs) -> str:
    """One CA file trusting the CAs of every ``certs``."""
    path = tmp_path / "cas.pem"
    path.write_bytes(b"".join(open(c.ca_certificates, "rb").read() for c in certs))
    return str(path)


@pytest.fixture
def elsewhere(tmp_path):
    """TLS files whose certificate names only elsewhere.example.test (not 127.0.0.1)."""
    return make_certs(tmp_path / "elsewhere", names=("elsewhere.example.test",))


@pytest_twisted.ensureDeferred
async def test_a_handshake_failing_verification_errbacks_every_waiting_send_at_once(
        transports, elsewhere):
    """[tls] verify_peers and a server certificate that does not name the host: the three
    sends waiting for that connection errback TransportError as soon as the handshake
    fails (no timer runs), the connection is not kept for reuse — the next send opens a
    new one and fails the same way — and each failed connection is logged once."""
    server, inbox, clock, client, peer = verifying_tls_pair(transports, elsewhere)
    with TransportLog("TLS connection") as logged:
        sends = [client.send(request(branch=f"z9hG4bKhs{n}"), peer) for n in range(3)]
        results = await with_timeout(defer.DeferredList(sends, consumeErrors=True))
        assert [ok for ok, _ in results] == [False] * 3
        assert all(f.check(TransportError) for _, f in results)
        assert "certificate does not name 127.0.0.1" in results[0][1].getErrorMessage()
        assert client.connection_count == 0
        with pytest.raises(TransportError, match="does not name 127.0.0.1"):
            await with_timeout(client.send(request(branch="z9hG4bKhs3"), peer))
        assert client.connection_count == 0
        await until(lambda: server.connection_count == 0)
    assert clock.seconds() == 0 and inbox.items == []
    assert len(logged.where(direction="to")) == 2  # two connections, one line each


@pytest_twisted.ensureDeferred
async def test_a_message_to_a_tls_peer_whose_certificate_fails_gets_503_before_timer_f(
        transports, elsewhere):
    """Through the SIP stack (its timers on a clock that never moves): the MESSAGE fails
    with SIPTransportError, the stack's 503 (s.8.1.3.1), and no transaction is left."""
    from msrp_gateway.sip.stack import SIPTransportError

    server = transports(tls_settings=elsewhere)
    server.listen("tls:127.0.0.1:0")
    inbox = Inbox(server)
    clock = Clock()
    client = transports(tls_settings=replace(elsewhere, verify_peers=True))
    client.listen("tls:127.0.0.1:0")
    stack, msg = stack_and_message(clock, client, f"sips:bob@127.0.0.1:{port_of(server, 'tls')}")
    with pytest.raises(SIPTransportError, match="does not name 127.0.0.1") as failed:
        await with_timeout(stack.send_request(msg))
    assert failed.value.code == 503
    assert clock.seconds() == 0 and stack.transaction_count == 0 and inbox.items == []
    stack.stop()


@pytest_twisted.ensureDeferred
async def test_the_gateway_answers_503_at_once_for_a_message_to_a_peer_failing_tls(
        transports, elsewhere):
    """The whole service (build_service, [tls] verify_peers): send_message to a sips: peer
    whose certificate names another host reports 503 within seconds, not after Timer F's
    32 s."""
    from msrp_gateway.config import from_dict
    from msrp_gateway.service import build_service

    server = transports(tls_settings=elsewhere)
    server.listen("tls:127.0.0.1:0")
    inbox = Inbox(server)
    settings = from_dict({
        "sip": {"socket": ["udp:127.0.0.1:0", "tls:127.0.0.1:0"]},
        "msrp": {"socket": ["msrp:127.0.0.1:0"]}, "mi": {"http": ""},
        "tls": {"certificate": elsewhere.certificate, "private_key": elsewhere.private_key,
                "ca_certificates": elsewhere.ca_certificates, "verify_peers": True},
        "process": {"gc_freeze": False, "gc_thresholds": []}})
    svc = build_service(settings, reactor)
    svc.startService()
    try:
        ruri = f"sips:bob@127.0.0.1:{port_of(server, 'tls')}"
        started = reactor.seconds()
        answered: defer.Deferred = defer.Deferred()  # a timeout must not cancel the
        svc.gateway.send_message(  # MESSAGE itself: send_message reports that as 503 too
            "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", ruri, b"hello").addBoth(
            answered.callback)
        status, _ = await with_timeout(answered)
        elapsed = reactor.seconds() - started
    finally:
        await with_timeout(defer.maybeDeferred(svc.stopService))
    assert status == 503 and inbox.items == []
    assert elapsed < 2.0  # the handshake's failure, not a timer


@pytest_twisted.ensureDeferred
async def test_a_peer_that_never_completes_the_handshake_fails_the_send_at_connect_timeout(
        transports):
    """A TCP server that accepts and never speaks TLS: the send errbacks once
    ``connect_timeout`` has passed on the transport's clock, not before."""
    accepted: list[protocol.Protocol] = []

    class Mute(protocol.Protocol):
        def connectionMade(self):  # noqa: N802
            self.gone = defer.Deferred()
            accepted.append(self)

        def connectionLost(self, reason):  # noqa: N802
            self.gone.callback(None)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Mute), interface="127.0.0.1")
    try:
        clock = Clock()
        client = transports(use_reactor=ClockedReactor(clock), connect_timeout=3.0,
                            tls_settings=TLSFiles("", ""))
        sent = client.send(request(), Peer("tls", "127.0.0.1", port.getHost().port))
        await until(lambda: accepted)
        clock.advance(2.9)
        assert not sent.called
        clock.advance(0.1)
        with pytest.raises(TransportError, match="no TLS handshake within 3 s"):
            await with_timeout(sent)
        assert client.connection_count == 0
        await with_timeout(accepted[0].gone)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_inbound_handshake_failures_drop_only_that_connection_logged_once_each(
        transports, tls_files, elsewhere, tmp_path):
    """Our tls: listener meets a client that refuses our certificate (its alert), one that
    speaks plain SIP, and one that says nothing past ``connect_timeout``: each connection
    is closed and logged once, while an established TLS client is served throughout."""
    from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint

    clock = Clock()
    server = transports(use_reactor=ClockedReactor(clock), tls_settings=tls_files,
                        connect_timeout=5.0)
    server.listen("tls:127.0.0.1:0")
    port = port_of(server, "tls")
    inbox = Inbox(server)
    with TransportLog("TLS connection") as logged:
        good = await connect_client(port, tls=True)
        good.transport.write(request(branch="z9hG4bKin1").to_bytes())
        await inbox.next(1)

        distrustful = StreamClient()  # trusts another CA only: aborts with an alert
        other_ca = ssl.Certificate.loadPEM(open(elsewhere.ca_certificates, "rb").read())
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=other_ca)
        await with_timeout(SSL4ClientEndpoint(reactor, "127.0.0.1", port, options).connect(
            protocol.Factory.forProtocol(lambda: distrustful)))
        await with_timeout(distrustful.closed)

        plain = StreamClient()
        await with_timeout(TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            protocol.Factory.forProtocol(lambda: plain)))
        plain.transport.write(request(branch="z9hG4bKplain").to_bytes())
        await with_timeout(plain.closed)

        mute = StreamClient()
        await with_timeout(TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            protocol.Factory.forProtocol(lambda: mute)))
        await until(lambda: server.connection_count == 2)
        clock.advance(5.0)
        await with_timeout(mute.closed)

        await until(lambda: len(logged.where(direction="from")) == 3)
        good.transport.write(request(branch="z9hG4bKin2").to_bytes())
        msg, source = await inbox.next(2)
        await server.send(make_response(msg, 200), server.response_peer(msg, source))
        assert (await good.next()).status == 200
        assert server.connection_count == 1
        assert [m.top_via.branch for m, _ in inbox.items] == ["z9hG4bKin1", "z9hG4bKin2"]
        whys = [e["why"] for e in logged.where(direction="from")]
    assert len(whys) == 3 and "no TLS handshake within 5 s" in whys[2]
    assert plain.messages == [] and mute.messages == []
    await close_client(good)


@pytest_twisted.ensureDeferred
async def test_a_message_whose_first_srv_target_fails_tls_verification_reaches_the_next(
        transports, elsewhere, tmp_path):
    """RFC 3263 s.4.3 over TLS: the first _sips._tcp target's certificate does not name
    the URI's domain; the handshake failure fails that try at once and the same MESSAGE
    goes to the second target, whose certificate does, on a stack clock that never moved.
    The first target is marked unreachable."""
    from twisted.names import dns

    from msrp_gateway.sip.dns import SIPResolver
    from msrp_gateway.sip.stack import SIPStack
    from tests.unit.test_sip_resolution import Zone

    names = make_certs(tmp_path / "secure", names=("secure.example.test",))
    wrong = transports(tls_settings=elsewhere)
    wrong.listen("tls:127.0.0.1:0")
    wrong_inbox = Inbox(wrong)
    right = transports(tls_settings=names)
    right.listen("tls:127.0.0.1:0")
    callee = SIPStack(reactor, right, local_uri_host="127.0.0.1",
                      router=lambda txn: txn.respond(200))
    zone = Zone()
    zone.add("_sips._tcp.secure.example.test",
             dns.Record_SRV(10, 0, port_of(wrong, "tls"), b"first.example.test"))
    zone.add("_sips._tcp.secure.example.test",
             dns.Record_SRV(20, 0, port_of(right, "tls"), b"second.example.test"))
    zone.add("first.example.test", dns.Record_A("127.0.0.1"))
    zone.add("second.example.test", dns.Record_A("127.0.0.1"))
    clock = Clock()
    caller = transports(tls_settings=TLSFiles(names.certificate, names.private_key,
                                              bundle(tmp_path, names, elsewhere), True))
    caller.listen("tls:127.0.0.1:0")
    caller.resolver = SIPResolver(clock, dns_client=zone)
    stack = SIPStack(clock, caller, local_uri_host="127.0.0.1", router=lambda txn: None)
    ruri = "sips:bob@secure.example.test"
    msg = stack.new_request("MESSAGE", "sip:alice@127.0.0.1", ruri, ruri, body=b"hi",
                            content_type="text/plain")
    try:
        resp = await with_timeout(stack.send_request(msg))
    finally:
        stack.stop()
        callee.stop()
    assert resp.status == 200 and clock.seconds() == 0 and wrong_inbox.items == []
    assert caller.resolver.is_unreachable(Peer("tls", "127.0.0.1", port_of(wrong, "tls")))


@pytest_twisted.ensureDeferred
async def test_a_peer_refusing_our_certificate_after_a_tls13_handshake_fails_the_send_at_once(
        transports, tls_files, elsewhere):
    """The server verifies clients ([tls] verify_peers) and our certificate is not from
    its CA: in TLS 1.3 our handshake completes before its refusal arrives, yet the send
    errbacks as soon as that alert does (no timer ran), the stack's MESSAGE fails with
    503, and one line is logged per connection."""
    from msrp_gateway.sip.connections import TLS_CONFIRM_WINDOW
    from msrp_gateway.sip.stack import SIPTransportError

    server = transports(tls_settings=replace(tls_files, verify_peers=True))
    server.listen("tls:127.0.0.1:0")
    inbox = Inbox(server)
    clock = Clock()
    ours = TLSFiles(elsewhere.certificate, elsewhere.private_key, tls_files.ca_certificates,
                    True)  # trusts the server; its own certificate is from another CA
    client = transports(use_reactor=ClockedReactor(clock), tls_settings=ours)
    client.listen("tls:127.0.0.1:0")
    peer = Peer("tls", "127.0.0.1", port_of(server, "tls"))
    with TransportLog("TLS connection") as logged:
        with pytest.raises(TransportError, match="alert"):
            await with_timeout(client.send(request(branch="z9hG4bKcr1"), peer))
        stack, msg = stack_and_message(clock, client, f"sips:bob@127.0.0.1:{peer.port}")
        with pytest.raises(SIPTransportError, match="alert") as failed:
            await with_timeout(stack.send_request(msg))
        stack.stop()
    assert failed.value.code == 503 and clock.seconds() < TLS_CONFIRM_WINDOW
    assert client.connection_count == 0 and inbox.items == []
    assert len(logged.where(direction="to")) == 2


@pytest_twisted.ensureDeferred
async def test_a_send_on_a_new_tls13_connection_is_reported_when_the_peer_speaks_or_in_time(
        transports, tls_files):
    """Outbound TLS 1.3: a send is reported written once the peer has sent something (its
    answer) or, from a peer that accepts us and stays silent, after TLS_CONFIRM_WINDOW on
    the transport's clock; from then on sends on that connection are reported at once."""
    from msrp_gateway.sip.connections import TLS_CONFIRM_WINDOW

    server, inbox, clock, client, peer = verifying_tls_pair(transports, tls_files)
    first: list = []
    client.send(request(branch="z9hG4bKw1"), peer).addBoth(first.append)
    msg, source = await inbox.next(1)
    assert first == []  # delivered, but the peer has said nothing yet
    clock.advance(TLS_CONFIRM_WINDOW - 0.1)
    assert first == []
    clock.advance(0.1)
    assert first == [None]
    second: list = []
    client.send(request(branch="z9hG4bKw2"), peer).addBoth(second.append)
    assert second == [None]  # a confirmed connection: at once

    other = transports(use_reactor=ClockedReactor(clock),
                       tls_settings=replace(tls_files, verify_peers=True))
    answered = other.send(request(branch="z9hG4bKw3"), peer)
    msg, source = await inbox.next(3)
    await server.send(make_response(msg, 200), server.response_peer(msg, source))
    await with_timeout(answered)  # the peer spoke: no need for the window
    assert clock.seconds() == TLS_CONFIRM_WINDOW
