"""Two MSRP endpoints over real TCP and TLS sockets on 127.0.0.1 (ports from the OS).

Each test names the behaviour it proves; TLS certificates come from `tests.tlscerts`
(a CA and a leaf it signed). Raw-socket peers are used where the proof is what is (not) on the wire.
Every wait is on an event with a generous bound (no fixed sleeps); where the proof is about
time (relay refreshes), the stack's timers run on a `task.Clock` over the real sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Protocol

from bench.ports import free_port
from msrp_gateway.msrp.message import FrameParser, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import MSRPSendError, SessionSettings
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from tests.msrp_relay_fixture import (
    Inbox,
    MiniRelay,
    Waiters,
    relayed_pair,
    stop_in_order,
)
from tests.tlscerts import make_certs

TIMEOUT = 30.0  # s for any one awaited event: generous for a loaded CI machine


def make_tls(tmp_path) -> TLSSettings:
    """The shared test CA and a leaf for 127.0.0.1 / ::1 / localhost; the CA verifies peers."""
    certs = make_certs(tmp_path)
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


class Endpoints:
    """Stack A (active) and stack B (passive) with one connected session pair."""

    def __init__(self, kind: str, tmp_path, settings_a=None, settings_b=None) -> None:
        self.tls = make_tls(tmp_path) if kind == "tls" else None
        scheme = "msrps" if self.tls else "msrp"
        self.a = MSRPStack(reactor, tls=self.tls, settings=settings_a)
        self.b = MSRPStack(reactor, tls=self.tls, settings=settings_b)
        self.a.listen(f"{scheme}:127.0.0.1:0")
        self.port_b = self.b.listen(f"{scheme}:127.0.0.1:0").getHost().port

    async def session_pair(self, accept=("text/plain",)):
        sa = self.a.create_session(list(accept))
        sb = self.b.create_session(list(accept))
        sa.set_remote_path([sb.local_uri])
        sb.set_remote_path([sa.local_uri])
        bound = sb.wait_bound(TIMEOUT)
        await sa.connect()
        await bound
        return sa, sb

    async def stop(self) -> None:
        await defer.gatherResults([self.a.stop(), self.b.stop()])


@pytest_twisted.async_yield_fixture
async def stacks(tmp_path):
    """`stacks(kind, **settings)` -> an `Endpoints` pair, stopped after the test."""
    made: list[Endpoints] = []

    def make(kind: str, **kw: Any) -> Endpoints:
        made.append(Endpoints(kind, tmp_path, **kw))
        return made[-1]

    yield make
    for ep in made:
        await ep.stop()


class Raw(Waiters, Protocol):
    """A bare MSRP peer: writes what the test says, parses whatever comes back
    (`frames`, with a bounded `wait(n)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.parser = FrameParser()
        self.lost: defer.Deferred = defer.Deferred()

    @property
    def frames(self) -> list[Any]:
        return self.items

    def dataReceived(self, data: bytes) -> None:
        self.add_all(self.parser.feed(data))

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)

    async def close(self) -> None:
        self.transport.loseConnection()
        await self.lost


RAW_URI = "msrp://127.0.0.1:9/rawpeer1;tcp"


def raw_send(to: str, tid: str, body: bytes = b"hi", *, mid: str = "msg1",
             byte_range: str | None = None, flag: str = "$",
             extra: tuple[str, ...] = ()) -> bytes:
    headers = [("To-Path", to), ("From-Path", RAW_URI), ("Message-ID", mid),
               ("Byte-Range", byte_range or f"1-{len(body)}/{len(body)}")]
    headers += [tuple(h.split(": ", 1)) for h in extra]
    if body:
        headers.append(("Content-Type", "text/plain"))
    return MSRPRequest(tid, "SEND", headers, body, flag).to_bytes()


async def raw_peer(port: int) -> Raw:
    ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=TIMEOUT)
    return await endpoints.connectProtocol(ep, Raw())


KINDS = ["tcp", "tls"]


# ---- over both transports -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_send_gets_200_and_body_arrives(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    inbox = Inbox(sb)
    status = await sa.send("text/plain", "grüße".encode())
    [msg] = await inbox.wait(1)
    assert status == 200
    assert (msg.body, msg.content_type) == ("grüße".encode(), "text/plain")
    reply = await sb.send("text/plain", b"back")  # the passive side answers too
    assert reply == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_failure_report_no_completes_without_a_response(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    inbox = Inbox(sb)
    d = sa.send("text/plain", b"fire and forget", failure_report="no")
    assert d.called  # nothing to wait for: it was written
    [msg] = await inbox.wait(1)
    assert msg.failure_report == "no" and msg.body == b"fire and forget"
    assert await sa.send("text/plain", b"next") == 200


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_success_report_comes_back_as_report(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    got: defer.Deferred = defer.Deferred()
    sa.on_report = got.callback
    Inbox(sb)
    assert await sa.send("text/plain", b"x" * 5000, success_report="yes") == 200
    report = await got.addTimeout(TIMEOUT, reactor)
    assert report.method == "REPORT"
    assert report.status.code == 200
    br = report.byte_range
    assert (br.start, br.end, br.total) == (1, 5000, 5000)


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_one_mib_message_is_chunked_and_reassembled(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    inbox = Inbox(sb)
    body = bytes(i % 251 for i in range(1024 * 1024))
    assert await sa.send("text/plain", body) == 200
    [msg] = await inbox.wait(1)
    assert msg.body == body


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_small_message_overtakes_large_one_on_shared_connection(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    inbox = Inbox(sb)
    big = sa.send("text/plain", b"B" * (512 * 1024))
    small = sa.send("text/plain", b"small")
    await defer.gatherResults([big, small])
    items = await inbox.wait(2)
    assert [m.body[:5] for m in items] == [b"small", b"BBBBB"]
    assert len(items[1].body) == 512 * 1024


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_message_beyond_size_bound_fails_with_413(kind, stacks):
    ep = stacks(kind, settings_b=SessionSettings(max_message_size=4096))
    sa, sb = await ep.session_pair()
    inbox = Inbox(sb)
    with pytest.raises(MSRPSendError) as info:
        await sa.send("text/plain", b"y" * 10000)
    assert info.value.code == 413
    assert await sa.send("text/plain", b"fits") == 200  # the session carries on
    assert [m.body for m in await inbox.wait(1)] == [b"fits"]


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_sessions_to_same_next_hop_share_one_connection(kind, stacks):
    ep = stacks(kind)
    pairs = [await ep.session_pair() for _ in range(3)]
    assert ep.a.connection_count() == 1
    for i, (sa, sb) in enumerate(pairs):
        inbox = Inbox(sb)
        assert await sa.send("text/plain", f"to {i}".encode()) == 200
        assert [m.body for m in await inbox.wait(1)] == [f"to {i}".encode()]


# ---- losing connections ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_sender_sees_lost_connection_mid_message(kind, stacks):
    ep = stacks(kind)
    sa, sb = await ep.session_pair()
    closed: defer.Deferred = defer.Deferred()
    sa.on_closed = closed.callback
    d = sa.send("text/plain", b"z" * (1024 * 1024))
    for proto in list(ep.b._protocols):
        proto.transport.abortConnection()
    with pytest.raises(MSRPSendError) as info:
        await d
    assert info.value.code == 503
    assert isinstance(await closed.addTimeout(TIMEOUT, reactor), str)
    assert ep.a.get_session(sa.session_id) is None


@pytest_twisted.ensureDeferred
async def test_connection_dropped_mid_chunk_is_reported_and_nothing_left(stacks):
    ep = stacks("tcp")
    sb = ep.b.create_session(["text/plain"])
    sb.set_remote_path([RAW_URI])
    inbox = Inbox(sb)
    closed: defer.Deferred = defer.Deferred()
    sb.on_closed = closed.callback
    raw = await raw_peer(ep.port_b)
    raw.transport.write(raw_send(sb.local_uri, "chunk001", b"a" * 1000, mid="big1",
                                 byte_range="1-1000/3000", flag="+"))
    [resp] = await raw.wait(1)
    assert resp.status == 200
    frame = raw_send(sb.local_uri, "chunk002", b"b" * 1000, mid="big1",
                     byte_range="1001-2000/3000", flag="+")
    raw.transport.write(frame[: len(frame) // 2])
    raw.transport.abortConnection()
    await raw.lost
    why = await closed.addTimeout(TIMEOUT, reactor)
    assert isinstance(why, str) and why
    assert inbox.items == []
    assert ep.b.get_session(sb.session_id) is None
    assert ep.b.connection_count() == 0


@pytest_twisted.ensureDeferred
async def test_connection_without_sessions_closes_when_idle(stacks):
    ep = stacks("tcp", settings_b=SessionSettings(idle_timeout=0.2))
    raw = await raw_peer(ep.port_b)
    await raw.lost.addTimeout(TIMEOUT, reactor)
    assert ep.b.connection_count() == 0


# ---- what is (not) on the wire -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unknown_session_gets_481(stacks):
    ep = stacks("tcp")
    raw = await raw_peer(ep.port_b)
    raw.transport.write(raw_send("msrp://127.0.0.1:%d/nosuchsession;tcp" % ep.port_b,
                                 "tx481abc"))
    [resp] = await raw.wait(1)
    assert isinstance(resp, MSRPResponse)
    assert (resp.transaction_id, resp.status) == ("tx481abc", 481)
    await raw.close()


@pytest_twisted.ensureDeferred
async def test_garbage_to_path_gets_400_naming_us_and_the_connection_survives(stacks):
    ep = stacks("tcp")
    raw = await raw_peer(ep.port_b)
    raw.transport.write(
        b"MSRP bad00001 SEND\r\nTo-Path: msrp://[not-a-host/x;tcp\r\nFrom-Path: " +
        RAW_URI.encode() + b"\r\nMessage-ID: m1\r\nByte-Range: 1-2/2\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n-------bad00001$\r\n" +
        raw_send("msrp://127.0.0.1:%d/nosuchsession;tcp" % ep.port_b, "after001"))
    first, second = await raw.wait(2)
    assert (first.transaction_id, first.status) == ("bad00001", 400)
    assert first.to_path == [RAW_URI] and first.from_path == [str(ep.b.my_uri)]
    assert (second.transaction_id, second.status) == ("after001", 481)
    assert ep.b.counters.unanswerable == 0
    await raw.close()


@pytest_twisted.ensureDeferred
async def test_reassembly_budget_is_shared_by_every_session_of_a_stack(stacks):
    ep = stacks("tcp", settings_b=SessionSettings(max_reassembly_bytes=1000))
    one, two = ep.b.create_session(["text/plain"]), ep.b.create_session(["text/plain"])
    for s in (one, two):
        s.set_remote_path([RAW_URI])
    raw = await raw_peer(ep.port_b)
    raw.transport.write(
        raw_send(one.local_uri, "part0001", b"a" * 600, mid="msgA",
                 byte_range="1-600/2000", flag="+")
        + raw_send(two.local_uri, "part0002", b"b" * 600, mid="msgB",
                   byte_range="1-600/2000", flag="+"))
    a, b = await raw.wait(2)
    assert [(a.transaction_id, a.status), (b.transaction_id, b.status)] == [
        ("part0001", 200), ("part0002", 413)]
    assert ep.b.reassembly_budget.used == 600
    one.close()  # a closing session gives its bytes back
    assert ep.b.reassembly_budget.used == 0
    await raw.close()


@pytest_twisted.ensureDeferred
async def test_raw_413_and_failure_report_no_on_the_wire(stacks):
    ep = stacks("tcp", settings_b=SessionSettings(max_message_size=1000))
    sb = ep.b.create_session(["text/plain"])
    sb.set_remote_path([RAW_URI])
    inbox = Inbox(sb)
    raw = await raw_peer(ep.port_b)
    raw.transport.write(
        raw_send(sb.local_uri, "quiet001", b"no answer wanted",
                 extra=("Failure-Report: no",))
        + raw_send(sb.local_uri, "huge0001", b"h" * 500, mid="msg2",
                   byte_range="1-500/5000", flag="+"))
    [resp] = await raw.wait(1)
    assert (resp.transaction_id, resp.status) == ("huge0001", 413)
    assert [m.body for m in inbox.items] == [b"no answer wanted"]
    await raw.close()


@pytest_twisted.ensureDeferred
async def test_connect_to_a_closed_port_fails_with_503(stacks):
    ep = stacks("tcp")
    port = free_port()  # below the ephemeral range and checked free: nothing listens there
    sa = ep.a.create_session(["text/plain"])
    sa.set_remote_path([f"msrp://127.0.0.1:{port}/gone1234;tcp"])
    with pytest.raises(MSRPSendError) as info:
        await sa.connect()
    assert info.value.code == 503 and "cannot connect" in info.value.comment
    assert ep.a.connection_count() == 0


@pytest_twisted.ensureDeferred
async def test_inbound_connections_beyond_the_bound_are_refused(stacks):
    ep = stacks("tcp", settings_b=SessionSettings(max_connections=1))
    first = await raw_peer(ep.port_b)
    second = await raw_peer(ep.port_b)
    await second.lost.addTimeout(TIMEOUT, reactor)  # closed by the server
    assert not first.lost.called and ep.b.connection_count() == 1
    await first.close()


@pytest_twisted.ensureDeferred
async def test_stop_cancels_a_connection_being_opened(tmp_path):
    ep = Endpoints("tcp", tmp_path)
    sa = ep.a.create_session(["text/plain"])
    sb = ep.b.create_session(["text/plain"])
    sa.set_remote_path([sb.local_uri])
    connecting = sa.connect()
    errors = []
    connecting.addErrback(errors.append)
    await ep.stop()
    assert errors and errors[0].value.code == 503
    assert ep.a.connection_count() == 0 and ep.b.connection_count() == 0


def test_unreadable_tls_files_fail_at_construction(tmp_path):
    with pytest.raises(OSError):
        MSRPStack(reactor, "msrps://127.0.0.1:2855;tcp",
                  tls=TLSSettings(str(tmp_path / "no-cert.pem"), str(tmp_path / "no-key.pem")))


# ---- through an RFC 4976 relay --------------------------------------------------------

@pytest_twisted.async_yield_fixture
async def relayed(clean_reactor):
    """(relay, stack A behind it with alice's credentials, stack B reached directly).

    `relay_expires` is A's `MSRPStack(relay_expires=)`; with `clock`, A's timers and the
    relay's record of times run on that clock (sockets stay on the reactor).
    """
    to_stop: list[Any] = []  # stacks first, then the relays they connect to

    def make(password: str = "s3cret", expires: int = 600, *,
             relay_expires: int | None = None, clock: Any = None):
        relay = MiniRelay({"alice": "s3cret"}, expires, clock)
        a = MSRPStack(reactor, relay_uri=relay.uri, relay_username="alice",
                      relay_password=password, relay_expires=relay_expires, clock=clock)
        b = MSRPStack(reactor)
        to_stop.extend([b, a, relay])
        a.listen("msrp:127.0.0.1:0")  # our own URI (the last of our a=path)
        b.listen("msrp:127.0.0.1:0")
        return relay, a, b

    yield make
    await stop_in_order(to_stop, clean_reactor)


@pytest.mark.parametrize("a_active", [True, False], ids=["we-connect", "peer-connects"])
@pytest_twisted.ensureDeferred
async def test_relay_auth_use_path_and_messages_both_ways_through_it(relayed, a_active):
    relay, a, b = relayed()
    await a.start()
    assert relay.auths == 1 and a.relay.use_path[0].startswith(relay.uri.split(";")[0] + "/")
    sa, sb = await relayed_pair(a, b, a_active=a_active)
    assert sa.local_path == [*a.relay.use_path, sa.local_uri]  # Use-Path before our URI
    inbox_a, inbox_b = Inbox(sa), Inbox(sb)
    assert await sa.send("text/plain", b"via the relay") == 200
    big = bytes(range(256)) * 40  # several chunks, each forwarded
    assert await sb.send("text/plain", big) == 200
    [to_b] = await inbox_b.wait(1)
    [to_a] = await inbox_a.wait(1)
    assert (to_b.body, to_a.body) == (b"via the relay", big)
    assert a.connection_count() == 1  # everything of A went over its relay connection
    sent_by_a = [path for _, path in relay.forwarded if path == sb.local_uri]
    assert len(sent_by_a) == (2 if a_active else 1)  # (binding SEND when A connected)


@pytest_twisted.ensureDeferred
async def test_relay_refusing_our_credentials_fails_start_and_sessions_get_503(relayed):
    from msrp_gateway.msrp.relay import RelayAuthError
    from msrp_gateway.msrp.session import SessionError

    relay, a, _ = relayed(password="wrong")
    with pytest.raises(RelayAuthError) as err:
        await a.start()
    assert err.value.code == 401 and relay.auths == 0
    with pytest.raises(SessionError) as refused:
        a.create_session(["text/plain"])
    assert refused.value.code == 503


@pytest_twisted.ensureDeferred
async def test_stack_relay_expires_is_the_expires_of_every_auth(relayed):
    relay, a, _ = relayed(expires=600, relay_expires=900)
    await a.start()
    # the challenged AUTH and the one with credentials both ask for 900 s
    assert [(expires, creds) for _, expires, creds in relay.auth_requests.items] == [
        ("900", False), ("900", True)]
    assert relay.granted.items == [900]
    assert 880 < a.relay.expires_at - reactor.seconds() <= 900


@pytest_twisted.ensureDeferred
async def test_stack_without_relay_expires_sends_no_expires_and_takes_the_relays(relayed):
    relay, a, _ = relayed(expires=600, relay_expires=0)  # 0 (config's default) = None
    await a.start()
    assert [expires for _, expires, _ in relay.auth_requests.items] == [None, None]
    assert relay.granted.items == [600]
    assert 580 < a.relay.expires_at - reactor.seconds() <= 600


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_stack_refuses_a_relay_expires_outside_rfc_4976s_range(bad):
    with pytest.raises(ValueError) as err:
        MSRPStack(reactor, relay_uri="msrp://127.0.0.1:9;tcp", relay_expires=bad)
    assert str(err.value) == (f"[msrp] relay_expires {bad}: expected 1..4294967295 s, "
                              "or 0 to let the relay choose")


@pytest_twisted.ensureDeferred
async def test_service_passes_config_relay_expires_to_the_relay_auth():
    """[msrp] relay_expires from the configuration reaches the wire through
    service.build_service (its relay starter, as at start-up)."""
    from msrp_gateway.config import from_dict
    from msrp_gateway.service import build_service

    relay = MiniRelay({"alice": "s3cret"}, expires=600)
    settings = from_dict({
        "sip": {"socket": ["udp:127.0.0.1:0"]},
        "msrp": {"socket": [], "relay_uri": relay.uri, "relay_expires": 1200,
                 "relay_username": "alice", "relay_password": "s3cret"},
        "mi": {"http": ""}})
    svc = build_service(settings, reactor)
    try:
        svc.getServiceNamed("msrp-relay").startService()
        await relay.granted.wait(1)
        assert [expires for _, expires, _ in relay.auth_requests.items] == ["1200", "1200"]
        assert relay.granted.items == [1200]
    finally:
        await svc.msrp.stop()
        await relay.stop()


@pytest_twisted.ensureDeferred
async def test_relay_is_re_authenticated_before_expiry(relayed):
    """The refresh AUTH goes out at 80 % of the granted lifetime, on the same connection,
    asking the same lifetime. A's timers run on a task.Clock (the sockets are real), so the
    relay's record of when each AUTH arrived is exact: no tolerance to get wrong."""
    clock = task.Clock()
    relay, a, b = relayed(relay_expires=300, clock=clock)
    await a.start().addTimeout(TIMEOUT, reactor)
    granted_at, expiry = clock.seconds(), clock.seconds() + 300
    sa, sb = await relayed_pair(a, b)
    inbox = Inbox(sb)

    clock.advance(300 * 0.8 - 1)  # a second before the refresh is due: none yet
    # An AUTH written before this SEND would reach the relay first (one ordered connection).
    assert await sa.send("text/plain", b"before").addTimeout(TIMEOUT, reactor) == 200
    await inbox.wait(1)
    assert len(relay.auth_requests.items) == 2 and a.relay.auth_count == 1

    clock.advance(1)  # 80 % of 300 s: the refresh is due now
    await relay.granted.wait(2)
    # The relay answered the refresh before the next SEND, so its 200 reached A first.
    assert await sa.send("text/plain", b"after").addTimeout(TIMEOUT, reactor) == 200
    await inbox.wait(2)
    refresh = relay.auth_requests.items[2:]
    assert [(at, expires) for at, expires, _ in refresh] == [
        (granted_at + 240, "300"), (granted_at + 240, "300")]  # challenge, credentials
    assert all(at < expiry for at, _, _ in refresh)  # re-AUTHed before the relay forgot us
    assert relay.granted.items == [300, 300] and a.relay.auth_count == 2
    assert a.relay.ready and a.relay.expires_at == granted_at + 240 + 300
    assert [m.body for m in inbox.items] == [b"before", b"after"]
    assert a.connection_count() == 1 and len(relay.clients) == 2  # one connection, 2 AUTHs
