"""Two MSRP user agents over real sockets on 127.0.0.1: one offers, one answers.

Each party is a whole stack (SIP transport + SIP stack + MSRP stack + UA) on OS-chosen ports.
Messages go both ways over MSRP on TCP and on TLS; sessions end by BYE from either side and by
MSRP connection loss, each side hearing exactly one ending.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol

from bench.ports import free_port
from msrp_gateway import sdp
from msrp_gateway.msrp.session import SessionSettings
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from tests.tlscerts import make_certs
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transaction import TimerSettings
from msrp_gateway.sip.transport import SIPTransport
from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings
from tests.unit.test_ua_real_stacks import Env

# Waits only bound a failure; a loaded CI box may be several times slower than a laptop.
TIMEOUT = 30.0
# RFC 3261's timers: with a short T1, Timer B/F/H (64*T1) could expire while a loaded machine
# stalls for a moment, failing an INVITE, BYE or ACK wait. Teardown waits on the condition
# (clean_reactor.settle), not on the timers being short; `sip.stop()` cancels the stack's own.
TIMERS = TimerSettings()


def make_tls(tmp_path) -> TLSSettings:
    """The shared test CA and a leaf for 127.0.0.1 / ::1 / localhost; the CA verifies peers."""
    certs = make_certs(tmp_path)
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


class Handler:
    """Records UA notifications; `wait(kind)` fires when one of that kind has come."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.events: list[tuple] = []
        self._waiters: list[tuple[str, int, defer.Deferred]] = []

    def _add(self, *event: Any) -> None:
        self.events.append(event)
        for kind, n, d in list(self._waiters):
            if len(self.of(kind)) >= n:
                self._waiters.remove((kind, n, d))
                d.callback(self.of(kind))

    def of(self, *kinds: str) -> list[tuple]:
        return [e for e in self.events if e[0] in kinds]

    def wait(self, kind: str, n: int = 1) -> defer.Deferred:
        if len(self.of(kind)) >= n:
            return defer.succeed(self.of(kind))
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((kind, n, d))
        return d.addTimeout(self.timeout, reactor)

    def endings(self) -> list[tuple]:
        return self.of("failed", "terminated")

    def established(self, sid):
        self._add("established", sid)

    def failed(self, sid, code, reason):
        self._add("failed", sid, code, reason)

    def terminated(self, sid, why):
        self._add("terminated", sid, why)

    def message_received(self, sid, msg):
        self._add("message", sid, msg.content_type, msg.body)

    def report_received(self, sid, report):
        self._add("report", sid, report)


class Party:
    """One user agent with its own SIP and MSRP listeners."""

    def __init__(self, name: str, tls: TLSSettings | None, types: str = "text/plain",
                 actpass_answer: str = "passive", host: str = "127.0.0.1",
                 msrp_settings: SessionSettings | None = None,
                 schemes: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.host = host
        bracketed = f"[{host}]" if ":" in host else host
        self.types = types
        self.ringing: list[Any] = []  # with hold=True INVITEs get 180 and wait here
        self.hold = False
        self.transport = SIPTransport(reactor)
        self.sip_port = self.transport.listen(f"tcp:{bracketed}:0").getHost().port
        self.sip = SIPStack(reactor, self.transport, local_uri_host=f"{bracketed}:{self.sip_port}",
                            router=self.route, timers=TIMERS)
        self.msrp = MSRPStack(reactor, tls=tls, settings=msrp_settings)
        # the first listener gives my_uri; with `schemes` one listener per scheme
        self.msrp_ports: dict[str, int] = {}
        for scheme in schemes or (("msrps",) if tls else ("msrp",)):
            port = self.msrp.listen(f"{scheme}:{bracketed}:0")
            self.msrp_ports[scheme] = port.getHost().port
        self.ua = MSRPUserAgent(reactor, self.sip, self.msrp,
                                UASettings(setup_timeout=20, actpass_answer=actpass_answer))
        self.h = Handler()
        self.refused: list[UAError] = []

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{self.name}@{host}:{self.sip_port};transport=tcp"

    def route(self, txn) -> None:
        if txn.request.method != "INVITE":
            txn.respond(405)
            return
        if self.hold:
            txn.respond(180)
            self.ringing.append(txn)
            return
        try:
            self.ua.answer(txn, self.types, self.h)
        except UAError as e:
            self.refused.append(e)
            txn.respond(e.code, e.reason, headers=e.headers)

    async def stop(self) -> None:
        await self.ua.stop()
        await self.msrp.stop()
        self.sip.stop()  # cancels the stack's own timers
        await self.transport.stop()


@pytest_twisted.async_yield_fixture
async def parties(tmp_path, clean_reactor):
    made: list[Party] = []

    def make(kind: str = "tcp", types_b: str = "text/plain",
             answer_b: str = "passive",
             msrp_settings_a: SessionSettings | None = None,
             schemes_b: tuple[str, ...] | None = None) -> tuple[Party, Party]:
        tls = make_tls(tmp_path) if kind == "tls" or schemes_b else None
        host = "::1" if kind == "tcp6" else "127.0.0.1"
        a = Party("alice", tls, host=host, msrp_settings=msrp_settings_a,
                  schemes=("msrps",) if kind == "tls" else ("msrp",))
        b = Party("bob", tls, types_b, answer_b, host=host, schemes=schemes_b)
        made.extend([a, b])
        return a, b

    yield make
    for p in made:
        await p.stop()
    # let closed connections and timers wind down (bounded; the clean-reactor check follows)
    if clean_reactor is not None:
        await clean_reactor.settle()


async def establish(a: Party, b: Party) -> tuple[str, str]:
    sid_a = a.ua.start("text/plain", a.uri, b.uri, b.uri, a.h)
    await a.h.wait("established")
    await b.h.wait("established")
    sid_b = b.h.of("established")[0][1]
    return sid_a, sid_b


async def exchange(a: Party, b: Party, sid_a: str, sid_b: str) -> None:
    assert await a.ua.send(sid_a, "text/plain", "héllo from alice".encode()) == 200
    await b.h.wait("message")
    assert b.h.of("message") == [("message", sid_b, "text/plain", "héllo from alice".encode())]
    big = bytes(range(256)) * 40  # 10 KiB: several chunks, reassembled before delivery
    assert await b.ua.send(sid_b, "text/plain", big, success_report="no") == 200
    await a.h.wait("message")
    assert a.h.of("message") == [("message", sid_a, "text/plain", big)]


@pytest.mark.parametrize("kind", ["tcp", "tls", "tcp6"])
@pytest_twisted.ensureDeferred
async def test_messages_both_ways_then_bye_from_the_offerer(parties, kind):
    a, b = parties(kind)
    sid_a, sid_b = await establish(a, b)
    info_a, info_b = a.ua.sessions()[0], b.ua.sessions()[0]
    assert info_a.remote_path == info_b.local_path and info_b.remote_path == info_a.local_path
    prefix = {"tls": "msrps://127.0.0.1:", "tcp": "msrp://127.0.0.1:", "tcp6": "msrp://[::1]:"}[kind]
    assert info_a.local_path[0].startswith(prefix)
    (dialog,) = a.sip.dialogs()
    assert (b"c=IN IP6 ::1\r\n" in dialog.remote_sdp) is (kind == "tcp6")
    await exchange(a, b, sid_a, sid_b)
    assert a.ua.end(sid_a)
    await b.h.wait("terminated")
    assert a.h.endings() == [("terminated", sid_a, "ended locally")]
    assert b.h.endings() == [("terminated", sid_b, "BYE from peer")]
    assert a.ua.sessions() == [] and b.ua.sessions() == []


@pytest_twisted.ensureDeferred
async def test_send_beyond_the_connection_queue_fails_at_once_and_the_rest_arrive(parties):
    """The gateway answers a MESSAGE 503 instead of 202 only if ua.send fails on the spot."""
    a, b = parties(msrp_settings_a=SessionSettings(max_inflight=1, max_queued_messages=2))
    sid_a, sid_b = await establish(a, b)
    # one in flight, two waiting in the connection's queue, the fourth refused
    d1 = a.ua.send(sid_a, "text/plain", b"one")
    d2 = a.ua.send(sid_a, "text/plain", b"two")
    d3 = a.ua.send(sid_a, "text/plain", b"three")
    d4 = a.ua.send(sid_a, "text/plain", b"four")
    assert not d3.called and d4.called  # d4 already failed when returned (no exception)
    failures: list[Any] = []
    d4.addErrback(failures.append)
    assert failures[0].value.code == 503 and "max_queued_messages" in failures[0].value.comment
    assert [await d1, await d2, await d3] == [200, 200, 200]
    await b.h.wait("message", 3)
    assert [e[3] for e in b.h.of("message")] == [b"one", b"two", b"three"]


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_bye_from_the_answerer_ends_both(parties, kind):
    a, b = parties(kind)
    sid_a, sid_b = await establish(a, b)
    await exchange(a, b, sid_a, sid_b)
    assert b.ua.end(sid_b)
    await a.h.wait("terminated")
    assert a.h.endings() == [("terminated", sid_a, "BYE from peer")]
    assert b.h.endings() == [("terminated", sid_b, "ended locally")]


@pytest_twisted.ensureDeferred
async def test_msrp_connection_loss_ends_the_dialog_on_both_sides(parties):
    a, b = parties("tcp")
    sid_a, sid_b = await establish(a, b)
    await b.msrp.stop()  # every MSRP connection of bob's drops
    await a.h.wait("terminated")
    await b.h.wait("terminated")
    await task.deferLater(reactor, 0.2, lambda: None)
    assert len(a.h.endings()) == 1 and len(b.h.endings()) == 1
    assert b.h.endings()[0][2].startswith("MSRP connection lost")
    assert a.ua.sessions() == [] and b.ua.sessions() == []


@pytest_twisted.ensureDeferred
async def test_offer_without_common_type_is_refused_488_and_fails_the_offerer(parties):
    a, b = parties("tcp", types_b="image/png")
    sid_a = a.ua.start("text/plain", a.uri, b.uri, b.uri, a.h)
    await a.h.wait("failed")
    assert a.h.endings() == [("failed", sid_a, 488, "Not Acceptable Here")]
    assert [e.code for e in b.refused] == [488]
    assert b.h.events == [] and a.ua.sessions() == [] and b.ua.sessions() == []


@pytest.mark.parametrize("offer_kind, answer_b", [
    ("tcp", "passive"), ("tls", "passive"), ("tcp", "active"), ("tls", "active")])
@pytest_twisted.ensureDeferred
async def test_answerer_on_both_transports_answers_each_offer_on_the_transport_it_asks_for(
        parties, offer_kind, answer_b):
    """Bob listens on msrp: (his my_uri) and msrps:; each offer is answered on its kind."""
    a, b = parties(offer_kind, answer_b=answer_b, schemes_b=("msrp", "msrps"))
    assert str(b.msrp.my_uri).startswith("msrp://")  # the first listener: TCP
    sid_a, sid_b = await establish(a, b)
    (info_b,) = b.ua.sessions()
    scheme = "msrps" if offer_kind == "tls" else "msrp"
    # bob's URI names his listener of the offered kind, so a connecting peer reaches it
    assert info_b.local_path[-1].startswith(f"{scheme}://127.0.0.1:{b.msrp_ports[scheme]}/")
    (dialog,) = a.sip.dialogs()
    proto = b"TCP/TLS/MSRP" if offer_kind == "tls" else b"TCP/MSRP"
    assert f"a=path:{info_b.local_path[-1]}\r\n".encode() in dialog.remote_sdp
    assert b" " + proto + b" *\r\n" in dialog.remote_sdp
    await exchange(a, b, sid_a, sid_b)  # the bytes really flowed over that transport
    assert a.ua.end(sid_a)
    await b.h.wait("terminated")
    assert b.h.endings() == [("terminated", sid_b, "BYE from peer")]


@pytest.mark.parametrize("offer_kind, schemes_b", [("tls", ("msrp",)), ("tcp", ("msrps",))])
@pytest_twisted.ensureDeferred
async def test_offer_on_a_transport_we_do_not_listen_on_is_refused_488(
        parties, offer_kind, schemes_b):
    a, b = parties(offer_kind, schemes_b=schemes_b)
    sid_a = a.ua.start("text/plain", a.uri, b.uri, b.uri, a.h)
    await a.h.wait("failed")
    assert a.h.endings() == [("failed", sid_a, 488, "Not Acceptable Here")]
    [refused] = b.refused
    warning = dict(refused.headers)["Warning"]
    offered = "TCP/TLS/MSRP" if offer_kind == "tls" else "TCP/MSRP"
    assert warning.startswith("304 ") and f"MSRP over {offered} is not offered here" in warning
    assert b.h.events == [] and len(b.msrp.table) == 0 and b.ua.sessions() == []


@pytest_twisted.ensureDeferred
async def test_invite_to_a_closed_port_fails_with_a_code(parties):
    a, b = parties("tcp")
    port = b.sip_port
    await b.transport.stop()
    sid_a = a.ua.start("text/plain", a.uri, b.uri, f"sip:bob@127.0.0.1:{port};transport=tcp", a.h)
    await a.h.wait("failed")
    assert a.h.endings() == [("failed", sid_a, 503, "Service Unavailable")]


@pytest.mark.parametrize("kind", ["tcp", "tls"])
@pytest_twisted.ensureDeferred
async def test_answerer_connects_when_config_takes_the_active_role(parties, kind):
    a, b = parties(kind, answer_b="active")
    sid_a, sid_b = await establish(a, b)
    # bob's answer took the active role (so bob connected and bound), over one connection
    (dialog,) = a.sip.dialogs()
    assert b"a=setup:active\r\n" in dialog.remote_sdp
    assert b.msrp.connection_count() == 1 and a.msrp.connection_count() == 1
    await exchange(a, b, sid_a, sid_b)
    assert a.ua.end(sid_a)
    await b.h.wait("terminated")
    assert b.h.endings() == [("terminated", sid_b, "BYE from peer")]


@pytest_twisted.ensureDeferred
async def test_ending_a_ringing_session_cancels_the_invite(parties):
    a, b = parties("tcp")
    b.hold = True
    cancelled = defer.Deferred()
    sid_a = a.ua.start("text/plain", a.uri, b.uri, b.uri, a.h)
    await _until(lambda: bool(b.ringing))
    b.ringing[0].on_cancel = lambda: cancelled.callback(None)
    # ended whether or not the 180 reached alice yet: the CANCEL waits for it (s.9.1)
    assert a.ua.end(sid_a)
    await cancelled.addTimeout(TIMEOUT, reactor)  # bob's stack got the CANCEL
    await _until(lambda: a.sip.transaction_count == 0)  # the 487 and the CANCEL's 200 came
    assert a.h.events == [("terminated", sid_a, "ended locally")]
    assert a.ua.sessions() == [] and b.h.events == []


@pytest.mark.parametrize("offerer", ["behind-relay", "direct"])
@pytest_twisted.ensureDeferred
async def test_ua_behind_an_msrp_relay_advertises_its_use_path_and_talks_through_it(
        parties, offerer):
    """RFC 4976: a=path is the relay's Use-Path then our URI; MSRP goes via the relay."""
    from tests.integration.test_msrp_loopback import MiniRelay

    relay = MiniRelay({"alice": "s3cret"})
    a, b = parties()
    try:
        await a.msrp.stop()
        a.msrp = MSRPStack(reactor, relay_uri=relay.uri, relay_username="alice",
                           relay_password="s3cret")
        a.msrp.listen("msrp:127.0.0.1:0")
        a.ua = MSRPUserAgent(reactor, a.sip, a.msrp, UASettings(setup_timeout=20))
        await a.msrp.start()
        (use_path,) = a.msrp.relay.use_path
        first, second = (a, b) if offerer == "behind-relay" else (b, a)
        sid_1, sid_2 = await establish(first, second)
        (info_a,) = a.ua.sessions()
        assert info_a.local_path[0] == use_path and len(info_a.local_path) == 2
        (info_b,) = b.ua.sessions()
        assert info_b.remote_path == info_a.local_path  # what b read from a's SDP
        await exchange(first, second, sid_1, sid_2)
        assert a.msrp.connection_count() == 1 and relay.forwarded
        assert a.ua.end(info_a.session_id)
        await b.h.wait("terminated")
    finally:
        await relay.stop()


# ---- failure paths that need a socket, checked against the real stacks' tables ---------------
# The rest of these paths run on task.Clock in tests/unit/test_ua_real_stacks.py; here the
# MSRP stack of the same `Env` runs on the real reactor (SIP stays on the clock).

class _Silent(Protocol):
    """An MSRP peer that accepts the connection and never answers anything."""


async def _until(check, timeout: float = TIMEOUT) -> None:
    """Poll (bounded) until `check()` holds: a connection closing takes a reactor turn."""
    waited = 0.0
    while not check():
        assert waited < timeout, "condition not reached in time"
        await task.deferLater(reactor, 0.02, lambda: None)
        waited += 0.02


def _failed_waiter(env) -> defer.Deferred:
    done: defer.Deferred = defer.Deferred()
    record = env.h.failed

    def failed(sid, code, reason):
        record(sid, code, reason)
        done.callback(None)

    env.h.failed = failed
    return done.addTimeout(TIMEOUT, reactor)


@pytest_twisted.ensureDeferred
async def test_our_msrp_connect_refused_gets_bye_and_leaves_nothing_in_the_real_stacks():
    closed_port = free_port()  # below the ephemeral range and checked free: refused
    env = Env(msrp_reactor=reactor)
    failed = _failed_waiter(env)
    sid, invite = env.start()
    env.answer(invite, 200, body=sdp.build_offer(
        [f"msrp://127.0.0.1:{closed_port}/peerSess01;tcp"], ["text/plain"], setup="passive",
        sess_id=9))  # the peer is passive: we connect, and are refused
    await failed
    assert env.h.events == [("failed", sid, None, None)]
    assert env.answer_byes() == 1
    env.drain()
    env.assert_no_leftovers()
    await env.msrp.stop()


@pytest_twisted.ensureDeferred
async def test_binding_send_never_answered_gets_bye_and_leaves_nothing_in_the_real_stacks():
    silent = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
    port = silent.getHost().port
    env = Env(msrp_reactor=reactor,
              msrp_settings=SessionSettings(response_timeout=0.3, idle_timeout=0.1))
    failed = _failed_waiter(env)
    sid, invite = env.start()
    env.answer(invite, 200, body=sdp.build_offer(
        [f"msrp://127.0.0.1:{port}/peerSess01;tcp"], ["text/plain"], setup="passive",
        sess_id=9))
    await failed  # our binding SEND got no 200 within the response timeout
    assert env.h.events == [("failed", sid, None, None)]
    assert env.answer_byes() == 1
    env.drain()
    await _until(lambda: env.msrp.connection_count() == 0)  # closed once idle
    env.assert_no_leftovers()
    await env.msrp.stop()
    await silent.stopListening()


# ---- late offer: an INVITE without SDP from a hand-written SIP peer ---------------------------

class _RawSIP(Protocol):
    """A SIP peer written by hand over one TCP connection: our stack's UAC always offers."""

    def __init__(self) -> None:
        from msrp_gateway.sip.message import StreamParser

        self.parser = StreamParser()
        self.inbox: defer.DeferredQueue = defer.DeferredQueue()
        self.gone: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        for msg in self.parser.feed(data):
            self.inbox.put(msg)

    def connectionLost(self, reason: Any = None) -> None:
        self.gone.callback(None)

    async def next(self, want: Any) -> Any:
        """The next message for which `want(msg)` holds (others, e.g. 100 Trying, skipped)."""
        while True:
            msg = await self.inbox.get().addTimeout(TIMEOUT, reactor)
            if want(msg):
                return msg

    def send(self, text: str, body: bytes = b"") -> None:
        self.transport.write(text.replace("\n", "\r\n").encode()
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


class LatePeer:
    """Carol: raw SIP over TCP to bob's stack, a real MSRP stack for her side of the session."""

    def __init__(self, b: Party) -> None:
        self.b = b
        self.msrp = MSRPStack(reactor)
        self.msrp.listen("msrp:127.0.0.1:0")
        self.session = self.msrp.create_session(["text/plain"])
        self.received: list[bytes] = []
        self.session.on_message = lambda msg: self.received.append(msg.body)
        self.sip: _RawSIP | None = None
        self.port = 0
        self.ok: Any = None

    async def connect(self) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint

        ep = TCP4ClientEndpoint(reactor, "127.0.0.1", self.b.sip_port, timeout=TIMEOUT)
        self.sip = await ep.connect(Factory.forProtocol(_RawSIP))
        self.port = self.sip.transport.getHost().port

    def _head(self, method: str, cseq: int, branch: str) -> str:
        to = self.ok.headers.get("To") if self.ok is not None else f"<{self.b.uri}>"
        return (f"{method} {self.b.uri} SIP/2.0\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{self.port};branch=z9hG4bK{branch};alias\n"
                "Max-Forwards: 70\nFrom: <sip:carol@127.0.0.1>;tag=carol1\n"
                f"To: {to}\nCall-ID: late-offer-1@127.0.0.1\nCSeq: {cseq} {method}\n"
                f"Contact: <sip:carol@127.0.0.1:{self.port};transport=tcp>\n")

    async def invite(self) -> bytes:
        """INVITE without a body; returns the offer bob's 200 carries."""
        self.sip.send(self._head("INVITE", 1, "inv1"))
        self.ok = await self.sip.next(lambda m: getattr(m, "status", 0) >= 200)
        assert self.ok.status == 200 and self.ok.content_type == "application/sdp"
        return self.ok.body

    def ack(self, body: bytes) -> None:
        ctype = "Content-Type: application/sdp\n" if body else ""
        self.sip.send(self._head("ACK", 1, "ack1") + ctype, body)

    async def close(self) -> None:
        if self.sip is not None and self.sip.transport is not None:
            self.sip.transport.loseConnection()
            await self.sip.gone
        await self.msrp.stop()


@pytest.mark.parametrize("carol_connects", [True, False])
@pytest_twisted.ensureDeferred
async def test_late_offer_our_200_offers_the_ack_answers_and_messages_flow(parties,
                                                                           carol_connects):
    _, b = parties("tcp")
    carol = LatePeer(b)
    try:
        await carol.connect()
        offer = await carol.invite()
        (info_b,) = b.ua.sessions()
        assert sdp.find_msrp_media(sdp.parse_sdp(offer)).path == info_b.local_path
        # our offer is actpass: carol picks who connects (RFC 6135)
        answer = sdp.build_answer(offer, carol.session.local_path, ["text/plain"],
                                  prefer_active=carol_connects)
        carol.session.set_remote_path(answer.peer.path)
        carol.ack(answer.body)
        if carol_connects:
            await carol.session.connect().addTimeout(TIMEOUT, reactor)
        else:
            await carol.session.wait_bound(TIMEOUT)
        [(_, sid_b)] = await b.h.wait("established")
        assert b.ua.sessions()[0].remote_path == carol.session.local_path
        assert await b.ua.send(sid_b, "text/plain", b"to carol") == 200
        assert carol.received == [b"to carol"]
        assert await carol.session.send("text/plain", b"to bob") == 200
        await b.h.wait("message")
        assert b.h.of("message") == [("message", sid_b, "text/plain", b"to bob")]
        carol.sip.send(carol._head("BYE", 2, "bye1"))
        bye_ok = await carol.sip.next(lambda m: getattr(m, "status", 0) >= 200)
        assert bye_ok.status == 200
        await b.h.wait("terminated")
        assert b.h.endings() == [("terminated", sid_b, "BYE from peer")]
    finally:
        await carol.close()


@pytest_twisted.ensureDeferred
async def test_late_offer_whose_ack_has_no_answer_gets_a_bye(parties):
    _, b = parties("tcp")
    carol = LatePeer(b)
    try:
        await carol.connect()
        await carol.invite()
        carol.ack(b"")
        bye = await carol.sip.next(lambda m: getattr(m, "method", "") == "BYE")
        carol.sip.send(f"SIP/2.0 200 OK\nVia: {bye.headers.get('Via')}\n"
                       f"From: {bye.headers.get('From')}\nTo: {bye.headers.get('To')}\n"
                       f"Call-ID: {bye.call_id}\nCSeq: {bye.cseq[0]} BYE\n")
        [(_, sid_b, why)] = await b.h.wait("terminated")
        assert "no SDP answer" in why and b.ua.sessions() == []
        assert b.h.of("established") == []
    finally:
        await carol.close()
