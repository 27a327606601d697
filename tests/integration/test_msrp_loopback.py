"""Two MSRP endpoints over real TCP and TLS sockets on 127.0.0.1 (ports from the OS).

Each test names the behaviour it proves; TLS certificates come from `tests.tlscerts`
(a CA and a leaf it signed). Raw-socket peers are used where the proof is what is (not) on the wire.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Factory, Protocol

from msrp_gateway.msrp.message import FrameParser, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import MSRPSendError, SessionSettings
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from tests.tlscerts import make_certs

TIMEOUT = 10.0


def make_tls(tmp_path) -> TLSSettings:
    """The shared test CA and a leaf for 127.0.0.1 / ::1 / localhost; the CA verifies peers."""
    certs = make_certs(tmp_path)
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


class Inbox:
    """Whole messages a session received, with a bounded wait for the n-th one."""

    def __init__(self, session) -> None:
        self.items: list[Any] = []
        self._waiters: list[tuple[int, defer.Deferred]] = []
        session.on_message = self.add

    def add(self, msg) -> None:
        self.items.append(msg)
        for n, d in list(self._waiters):
            if len(self.items) >= n:
                self._waiters.remove((n, d))
                d.callback(self.items)

    def wait(self, n: int) -> defer.Deferred:
        if len(self.items) >= n:
            return defer.succeed(self.items)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((n, d))
        return d.addTimeout(TIMEOUT, reactor)


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


class Raw(Protocol):
    """A bare MSRP peer: writes what the test says, parses whatever comes back."""

    def __init__(self) -> None:
        self.parser = FrameParser()
        self.frames: list[Any] = []
        self._waiters: list[tuple[int, defer.Deferred]] = []
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.frames.extend(self.parser.feed(data))
        for n, d in list(self._waiters):
            if len(self.frames) >= n:
                self._waiters.remove((n, d))
                d.callback(self.frames)

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)

    def wait(self, n: int) -> defer.Deferred:
        if len(self.frames) >= n:
            return defer.succeed(self.frames)
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((n, d))
        return d.addTimeout(TIMEOUT, reactor)

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
    ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    return await endpoints.connectProtocol(ep, Raw())


KINDS = ["tcp", "tls"]


# ---- over both transports -------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_send_gets_200_and_body_arrives(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
        sa, sb = await ep.session_pair()
        inbox = Inbox(sb)
        status = await sa.send("text/plain", "grüße".encode())
        [msg] = await inbox.wait(1)
        assert status == 200
        assert (msg.body, msg.content_type) == ("grüße".encode(), "text/plain")
        reply = await sb.send("text/plain", b"back")  # the passive side answers too
        assert reply == 200
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_failure_report_no_completes_without_a_response(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
        sa, sb = await ep.session_pair()
        inbox = Inbox(sb)
        d = sa.send("text/plain", b"fire and forget", failure_report="no")
        assert d.called  # nothing to wait for: it was written
        [msg] = await inbox.wait(1)
        assert msg.failure_report == "no" and msg.body == b"fire and forget"
        assert await sa.send("text/plain", b"next") == 200
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_success_report_comes_back_as_report(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
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
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_one_mib_message_is_chunked_and_reassembled(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
        sa, sb = await ep.session_pair()
        inbox = Inbox(sb)
        body = bytes(i % 251 for i in range(1024 * 1024))
        assert await sa.send("text/plain", body) == 200
        [msg] = await inbox.wait(1)
        assert msg.body == body
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_small_message_overtakes_large_one_on_shared_connection(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
        sa, sb = await ep.session_pair()
        inbox = Inbox(sb)
        big = sa.send("text/plain", b"B" * (512 * 1024))
        small = sa.send("text/plain", b"small")
        await defer.gatherResults([big, small])
        items = await inbox.wait(2)
        assert [m.body[:5] for m in items] == [b"small", b"BBBBB"]
        assert len(items[1].body) == 512 * 1024
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_message_beyond_size_bound_fails_with_413(kind, tmp_path):
    ep = Endpoints(kind, tmp_path, settings_b=SessionSettings(max_message_size=4096))
    try:
        sa, sb = await ep.session_pair()
        inbox = Inbox(sb)
        with pytest.raises(MSRPSendError) as info:
            await sa.send("text/plain", b"y" * 10000)
        assert info.value.code == 413
        assert await sa.send("text/plain", b"fits") == 200  # the session carries on
        assert [m.body for m in await inbox.wait(1)] == [b"fits"]
    finally:
        await ep.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_sessions_to_same_next_hop_share_one_connection(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
        pairs = [await ep.session_pair() for _ in range(3)]
        assert ep.a.connection_count() == 1
        for i, (sa, sb) in enumerate(pairs):
            inbox = Inbox(sb)
            assert await sa.send("text/plain", f"to {i}".encode()) == 200
            assert [m.body for m in await inbox.wait(1)] == [f"to {i}".encode()]
    finally:
        await ep.stop()


# ---- losing connections ------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_sender_sees_lost_connection_mid_message(kind, tmp_path):
    ep = Endpoints(kind, tmp_path)
    try:
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
    finally:
        await ep.stop()


@pytest_twisted.ensureDeferred
async def test_connection_dropped_mid_chunk_is_reported_and_nothing_left(tmp_path):
    ep = Endpoints("tcp", tmp_path)
    try:
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
    finally:
        await ep.stop()


@pytest_twisted.ensureDeferred
async def test_connection_without_sessions_closes_when_idle(tmp_path):
    ep = Endpoints("tcp", tmp_path, settings_b=SessionSettings(idle_timeout=0.2))
    try:
        raw = await raw_peer(ep.port_b)
        await raw.lost.addTimeout(TIMEOUT, reactor)
        assert ep.b.connection_count() == 0
    finally:
        await ep.stop()


# ---- what is (not) on the wire -------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_unknown_session_gets_481(tmp_path):
    ep = Endpoints("tcp", tmp_path)
    try:
        raw = await raw_peer(ep.port_b)
        raw.transport.write(raw_send("msrp://127.0.0.1:%d/nosuchsession;tcp" % ep.port_b,
                                     "tx481abc"))
        [resp] = await raw.wait(1)
        assert isinstance(resp, MSRPResponse)
        assert (resp.transaction_id, resp.status) == ("tx481abc", 481)
        await raw.close()
    finally:
        await ep.stop()


@pytest_twisted.ensureDeferred
async def test_raw_413_and_failure_report_no_on_the_wire(tmp_path):
    ep = Endpoints("tcp", tmp_path, settings_b=SessionSettings(max_message_size=1000))
    try:
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
    finally:
        await ep.stop()


@pytest_twisted.ensureDeferred
async def test_connect_to_a_closed_port_fails_with_503(tmp_path):
    ep = Endpoints("tcp", tmp_path)
    try:
        probe = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        port = probe.getHost().port
        await probe.stopListening()
        sa = ep.a.create_session(["text/plain"])
        sa.set_remote_path([f"msrp://127.0.0.1:{port}/gone1234;tcp"])
        with pytest.raises(MSRPSendError) as info:
            await sa.connect()
        assert info.value.code == 503 and "cannot connect" in info.value.comment
        assert ep.a.connection_count() == 0
    finally:
        await ep.stop()


@pytest_twisted.ensureDeferred
async def test_inbound_connections_beyond_the_bound_are_refused(tmp_path):
    ep = Endpoints("tcp", tmp_path, settings_b=SessionSettings(max_connections=1))
    try:
        first = await raw_peer(ep.port_b)
        second = await raw_peer(ep.port_b)
        await second.lost.addTimeout(TIMEOUT, reactor)  # closed by the server
        assert not first.lost.called and ep.b.connection_count() == 1
        await first.close()
    finally:
        await ep.stop()


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
