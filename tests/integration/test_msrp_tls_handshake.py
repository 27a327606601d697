"""msrps handshakes that fail, over real sockets on 127.0.0.1: the connect (and the session
set-up or SEND waiting for it) fails at once with a clear error logged once, the connection
is never reused, a handshake that never ends fails exactly at ``connect_timeout`` on the
stack's clock, and inbound failures are dropped and logged (rate-limited) while an
established msrps session keeps working.

Every stack's timers run on a ``task.Clock`` that the test alone moves: a failure that
comes with the clock unmoved came from the handshake, not from a set-up or SEND timer.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl, task
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from msrp_gateway.msrp.tls import HandshakeLog
from msrp_gateway.msrp.transport import MSRPSendError, MSRPStack, TLSSettings
from tests.tlscerts import TLSCerts, make_certs

TIMEOUT = 30.0  # a bound only ever reached when something is broken


async def until(condition: Any, what: str) -> None:
    deadline = reactor.seconds() + TIMEOUT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {TIMEOUT} s: {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


async def outcome(d: defer.Deferred) -> Any:
    """The result or the exception of `d`, waited for at most TIMEOUT s (real time)."""
    box: list[Any] = []
    d.addBoth(box.append)
    await until(lambda: box, "the Deferred to fire")
    result = box[0]
    return result.value if isinstance(result, Failure) else result


class HandshakeLines:
    """The MSRP transport's log events about failed TLS handshakes, while in use."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        text = event.get("log_format", "")
        if event.get("log_namespace") == "msrp_gateway.msrp.transport" and (
                "TLS handshake" in text or "MSRP TLS connection" in text):
            self.events.append(event)

    def __enter__(self) -> HandshakeLines:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    def where(self, **fields: Any) -> list[dict]:
        return [e for e in self.events if "why" in e
                and all(e.get(k) == v for k, v in fields.items())]

    def summaries(self) -> list[dict]:
        return [e for e in self.events if "n" in e]


def pem(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def settings_of(certs: TLSCerts, trusted: TLSCerts | None = None) -> TLSSettings:
    """Our certificate; `trusted` is the party whose CA we trust (default: our own)."""
    return TLSSettings(certs.certificate, certs.private_key,
                       (trusted or certs).ca_certificates)


class Stacks:
    """MSRP stacks on real sockets, each with its own Clock; stopped at teardown."""

    def __init__(self) -> None:
        self.made: list[MSRPStack] = []

    def make(self, tls: TLSSettings, *, listen: bool = True, **kw: Any) -> MSRPStack:
        clock = task.Clock()
        stack = MSRPStack(reactor, "msrps://127.0.0.1:1;tcp" if not listen else None,
                          tls=tls, clock=clock, **kw)
        if listen:
            stack.listen("msrps:127.0.0.1:0")
        self.made.append(stack)
        return stack


@pytest_twisted.async_yield_fixture
async def stacks(clean_reactor):
    made = Stacks()
    yield made
    for stack in made.made:
        await stack.stop()
    if clean_reactor is not None:
        await clean_reactor.settle()


@pytest.fixture
def certs(tmp_path):
    """Three parties' files, each signed by its own CA: server, client, stranger."""
    return {name: make_certs(tmp_path / name) for name in ("server", "client", "stranger")}


def clock_of(stack: MSRPStack) -> task.Clock:
    clock = stack.clock
    assert isinstance(clock, task.Clock)
    return clock


def open_session(server: MSRPStack, client: MSRPStack) -> tuple[Any, Any]:
    """A server session waiting for its peer and a client session aimed at it."""
    theirs = server.create_session(["text/plain"])
    ours = client.create_session(["text/plain"])
    ours.set_remote_path([theirs.local_uri])
    theirs.set_remote_path([ours.local_uri])
    return theirs, ours


@pytest_twisted.ensureDeferred
async def test_an_untrusted_server_certificate_fails_the_connect_at_once_and_is_not_reused(
        stacks, certs):
    """The server's certificate is from a CA the client does not trust: both sessions
    waiting for that one connection fail with 503 naming the verification failure as soon
    as the handshake does (the client's clock never moved: no set-up or SEND timer), the
    server never sees a request, one line is logged for the connection, and the next
    connect opens a new connection (nothing failed is reused), failing the same way."""
    server = stacks.make(settings_of(certs["server"]))
    client = stacks.make(settings_of(certs["client"]))  # trusts only its own CA
    theirs, ours = open_session(server, client)
    also = client.create_session(["text/plain"])
    also.set_remote_path([theirs.local_uri])
    with HandshakeLines() as lines:
        waiting = [ours.connect(), also.connect()]  # both wait for the one connection
        first, second = await outcome(waiting[0]), await outcome(waiting[1])
        for failed in (first, second):
            assert isinstance(failed, MSRPSendError) and failed.code == 503
            assert "certificate verify failed" in failed.comment
            assert f"127.0.0.1:{server.listening()[0].port}" in failed.comment
        assert client.connection_count() == 0
        third = client.create_session(["text/plain"])
        third.set_remote_path([theirs.local_uri])
        again = await outcome(third.connect())
        assert isinstance(again, MSRPSendError) and "certificate verify failed" in again.comment
        await until(lambda: server.connection_count() == 0, "the server to drop them")
    assert clock_of(client).seconds() == 0
    assert len(lines.where(direction="to")) == 2  # two connections, one line each
    assert client.handshake_log.failures == 2
    assert theirs.link is None  # nothing bound the server's session


@pytest_twisted.ensureDeferred
async def test_a_server_certificate_not_naming_the_host_fails_the_connect_at_once(
        stacks, tmp_path, certs):
    """A trusted CA, but the certificate names elsewhere.example.test, not 127.0.0.1:
    the connect fails naming the mismatch, on a clock that never moved."""
    elsewhere = make_certs(tmp_path / "elsewhere", names=("elsewhere.example.test",))
    server = stacks.make(settings_of(elsewhere))
    client = stacks.make(settings_of(certs["client"], trusted=elsewhere))
    _, ours = open_session(server, client)
    with HandshakeLines() as lines:
        failed = await outcome(ours.connect())
    assert isinstance(failed, MSRPSendError) and failed.code == 503
    assert "does not name 127.0.0.1" in failed.comment
    assert clock_of(client).seconds() == 0 and client.connection_count() == 0
    assert len(lines.where(direction="to")) == 1


class Mute(Protocol):
    """Accepts TCP and never says a word (no TLS handshake)."""

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.gone: defer.Deferred[None] = defer.Deferred()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.gone.callback(None)


@pytest_twisted.ensureDeferred
async def test_a_peer_that_never_handshakes_fails_the_connect_exactly_at_connect_timeout(
        stacks, certs):
    """A TCP server that accepts and never speaks TLS: the connect is still waiting at
    2.9 s of the stack's clock and fails at 3 s (connect_timeout), in that very call; the
    connection is then gone on both sides."""
    accepted: list[Mute] = []

    def build() -> Mute:
        proto = Mute()
        accepted.append(proto)
        return proto

    port = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
    try:
        client = stacks.make(settings_of(certs["client"]), listen=False, connect_timeout=3.0)
        session = client.create_session(["text/plain"])
        session.set_remote_path([f"msrps://127.0.0.1:{port.getHost().port}/s1;tcp"])
        with HandshakeLines() as lines:
            connected = session.connect()
            await until(lambda: accepted and client.connection_count() == 1, "TCP connect")
            clock_of(client).advance(2.9)
            assert not connected.called
            clock_of(client).advance(0.1)
            assert connected.called  # at the deadline, not a reactor turn later
            failed = await outcome(connected)
            await with_timeout(accepted[0].gone)
        assert isinstance(failed, MSRPSendError) and failed.code == 503
        assert "no TLS handshake within 3 s" in failed.comment
        assert client.connection_count() == 0
        assert [e["why"] for e in lines.where(direction="to")] == \
            ["no TLS handshake within 3 s"]
    finally:
        await port.stopListening()


async def with_timeout(d: defer.Deferred) -> Any:
    result = await outcome(d)
    if isinstance(result, BaseException):
        raise result
    return result


class Client(Protocol):
    """A raw client: what it receives, and when it is closed."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.closed.callback(None)


async def connect_raw(port: int, options: Any = None) -> Client:
    client = Client()
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port) if options is None \
        else SSL4ClientEndpoint(reactor, "127.0.0.1", port, options)
    await with_timeout(endpoint.connect(Factory.forProtocol(lambda: client)))
    return client


PLAIN_SEND = (b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://127.0.0.1:2855/s1;tcp\r\n"
              b"From-Path: msrp://127.0.0.1:9/s2;tcp\r\nMessage-ID: m1\r\n"
              b"Byte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
              b"-------a786hjs2$\r\n")


@pytest_twisted.ensureDeferred
async def test_inbound_handshake_failures_are_dropped_and_logged_while_a_session_works(
        stacks, certs):
    """Our msrps listener meets plain MSRP over TCP, binary garbage, a TLS client that
    refuses our certificate (its alert) and one that never speaks past connect_timeout:
    each connection is dropped and logged once, none gets an MSRP answer, and a session
    established over TLS before them still carries a message both ways afterwards."""
    server = stacks.make(settings_of(certs["server"]), connect_timeout=5.0)
    client = stacks.make(settings_of(certs["client"], trusted=certs["server"]))
    theirs, ours = open_session(server, client)
    got: dict[str, list[bytes]] = {"server": [], "client": []}
    theirs.on_message = lambda m: got["server"].append(m.body)
    ours.on_message = lambda m: got["client"].append(m.body)
    await with_timeout(ours.connect())
    port = server.listening()[0].port
    with HandshakeLines() as lines:
        plain = await connect_raw(port)
        plain.transport.write(PLAIN_SEND)
        await with_timeout(plain.closed)

        garbage = await connect_raw(port)
        garbage.transport.write(bytes(range(256)) * 4)
        await with_timeout(garbage.closed)

        stranger_ca = ssl.Certificate.loadPEM(pem(certs["stranger"].ca_certificates))
        distrustful = await connect_raw(port, ssl.optionsForClientTLS(
            "127.0.0.1", trustRoot=stranger_ca))
        await with_timeout(distrustful.closed)

        mute = await connect_raw(port)
        await until(lambda: server.connection_count() == 2, "the mute connection")
        clock_of(server).advance(5.0)
        await with_timeout(mute.closed)
        await until(lambda: len(lines.where(direction="from")) == 4, "four lines")

        assert await with_timeout(ours.send("text/plain", b"still here")) == 200
        assert await with_timeout(theirs.send("text/plain", b"and back")) == 200
        await until(lambda: got["client"], "the answer message")
    whys = [e["why"] for e in lines.where(direction="from")]
    assert "no TLS handshake within 5 s" in whys[3]
    assert all(w.startswith("TLS handshake failed") for w in whys[:3])
    assert plain.received == b"" and garbage.received[:4] != b"MSRP"
    assert b"MSRP" not in mute.received
    assert got == {"server": [b"still here"], "client": [b"and back"]}
    assert server.connection_count() == 1 and server.handshake_log.failures == 4
    assert lines.where(direction="to") == []


@pytest_twisted.ensureDeferred
async def test_failed_inbound_handshakes_are_logged_at_a_bounded_rate(stacks, certs):
    """With a budget of 2 lines a minute, three garbage connections give two lines (all
    three counted); the first failure of the next minute logs the count of the unlogged."""
    server = stacks.make(settings_of(certs["server"]))
    server.handshake_log = HandshakeLog(per_minute=2)
    port = server.listening()[0].port
    with HandshakeLines() as lines:
        for n in range(3):
            conn = await connect_raw(port)
            conn.transport.write(b"GET / HTTP/1.0\r\n\r\n")
            await with_timeout(conn.closed)
            await until(lambda n=n: server.handshake_log.failures == n + 1, "counted")
        assert len(lines.where(direction="from")) == 2 and lines.summaries() == []
        clock_of(server).advance(60.0)
        conn = await connect_raw(port)
        conn.transport.write(b"\x00" * 64)
        await with_timeout(conn.closed)
        await until(lambda: server.handshake_log.failures == 4, "the fourth")
    assert len(lines.where(direction="from")) == 3
    assert [e["n"] for e in lines.summaries()] == [1]


@pytest_twisted.ensureDeferred
async def test_a_tls13_peer_refusing_our_certificate_fails_the_binding_at_once(
        stacks, certs):
    """The peer (a plain TLS 1.3 server) requires a client certificate from the stranger's
    CA: our handshake completes, then its alert arrives. The binding SEND fails at once
    with 503 saying our certificate was refused (clock unmoved), logged once; no MSRP
    bytes were read by the peer."""
    received: list[bytes] = []

    class Peer(Protocol):
        def dataReceived(self, data: bytes) -> None:  # noqa: N802
            received.append(data)

    server_files = certs["server"]
    own = ssl.PrivateCertificate.loadPEM(pem(server_files.certificate)
                                         + pem(server_files.private_key))
    stranger_ca = ssl.Certificate.loadPEM(pem(certs["stranger"].ca_certificates))
    options = ssl.CertificateOptions(
        privateKey=own.privateKey.original, certificate=own.original, verify=True,
        requireCertificate=True, caCerts=[stranger_ca.original],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_3)
    port = reactor.listenSSL(0, Factory.forProtocol(Peer), options, interface="127.0.0.1")
    try:
        client = stacks.make(settings_of(certs["client"], trusted=server_files),
                             listen=False)
        session = client.create_session(["text/plain"])
        session.set_remote_path([f"msrps://127.0.0.1:{port.getHost().port}/s1;tcp"])
        with HandshakeLines() as lines:
            failed = await outcome(session.connect())
            await until(lambda: client.connection_count() == 0, "the connection to go")
        assert isinstance(failed, MSRPSendError) and failed.code == 503
        assert "our certificate refused" in failed.comment
        assert clock_of(client).seconds() == 0 and received == []
        assert len(lines.where(direction="to")) == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_ua_session_set_up_fails_at_connect_timeout_not_at_its_setup_timeout(
        tmp_path, clean_reactor):
    """Two whole user agents (SIP + MSRP + UA); the answerer's SDP path points at a TCP
    server that never handshakes. The offerer's set-up fails once its MSRP stack's
    connect_timeout (1 s here) has passed — well before the UA's setup_timeout (20 s) —
    with the handshake deadline logged as the reason."""
    from msrp_gateway.msrp.uri import MSRPURI
    from tests.integration.test_ua_loopback import Party

    files = make_certs(tmp_path / "ua")
    tls = TLSSettings(files.certificate, files.private_key, files.ca_certificates)
    mute: list[Mute] = []

    def build() -> Mute:
        proto = Mute()
        mute.append(proto)
        return proto

    port = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
    a, b = Party("alice", tls), Party("bob", tls)
    try:
        a.msrp.connect_timeout = 1.0
        b.msrp.my_uri = MSRPURI("msrps", "127.0.0.1", port.getHost().port)
        with HandshakeLines() as lines:
            started = reactor.seconds()
            sid = a.ua.start("text/plain", a.uri, b.uri, b.uri, a.h)
            await a.h.wait("failed")
            elapsed = reactor.seconds() - started
            await until(lambda: not a.msrp.connection_count(), "the connection to go")
        assert a.h.endings() == [("failed", sid, None, None)]
        assert 1.0 <= elapsed < 10.0
        assert [e["why"] for e in lines.where(direction="to")] == \
            ["no TLS handshake within 1 s"]
        assert mute and a.h.of("established") == []
    finally:
        for party in (a, b):
            await party.stop()
        await port.stopListening()
        if clean_reactor is not None:
            await clean_reactor.settle()
