"""msrps pinned by SDP fingerprints (RFC 4975 s.14.4, RFC 8122) over real sockets on 127.0.0.1.

Each party has its own certificate signed by its own CA, and neither trusts the other's CA:
only the fingerprints in the SDP make the TLS peer acceptable, as between RCS clients with
self-signed certificates. A "liar" advertises the fingerprint of another certificate than
the one its TLS side presents (what a man in the middle looks like): the session must fail
set-up and no message may cross, whichever side connects and whichever side offered.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, ssl, task
from twisted.internet.protocol import ClientFactory, Factory, Protocol

from msrp_gateway import sdp
from msrp_gateway.msrp.fingerprint import Fingerprint, fingerprint_of, pem_to_der
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from msrp_gateway.sip.transaction import SIPFinalResponse
from tests.integration.test_ua_loopback import Party
from tests.msrp_relay_fixture import stop_in_order
from tests.tlscerts import make_certs

TIMEOUT = 30.0


def tls_in(directory, ca_from=None) -> TLSSettings:
    """A certificate of its own CA; `ca_from` (another directory's certs) is what it trusts."""
    own = make_certs(directory)
    trusted = ca_from.ca_certificates if ca_from is not None else own.ca_certificates
    return TLSSettings(own.certificate, own.private_key, trusted)


def cert_fingerprint(settings: TLSSettings) -> Fingerprint:
    with open(settings.certificate, "rb") as f:
        return fingerprint_of(pem_to_der(f.read()))


@pytest_twisted.async_yield_fixture
async def pair(tmp_path, clean_reactor):
    """`pair(...)` -> (alice, bob): test_ua_loopback's parties, each with a certificate of
    its own CA that the other does not trust. Teardown stops them, then waits (bounded)
    for their connections and timers to wind down instead of a fixed sleep."""
    made: list[Party] = []

    def make(a_answer: str = "passive", b_answer: str = "passive",
             a_tls: TLSSettings | None = None) -> tuple[Party, Party]:
        made.append(Party("alice", a_tls or tls_in(tmp_path / "a"), actpass_answer=a_answer))
        made.append(Party("bob", tls_in(tmp_path / "b"), actpass_answer=b_answer))
        return made[-2], made[-1]

    yield make
    await stop_in_order(made, clean_reactor)


def lie(party: Party, tmp_path) -> Fingerprint:
    """Make `party` advertise the fingerprint of a certificate it does not present."""
    other = make_certs(tmp_path / f"other-{party.name}")
    with open(other.certificate, "rb") as f:
        fake = fingerprint_of(pem_to_der(f.read()))
    party.msrp.local_fingerprint = lambda: fake  # what its SDP will carry
    return fake


def start(offerer: Party, answerer: Party) -> str:
    return offerer.ua.start("text/plain", offerer.uri, answerer.uri, answerer.uri, offerer.h)


# (offerer's actpass answer, answerer's) -> who connects: the answerer's a=setup decides.
ROLES = {"offerer connects": "passive", "answerer connects": "active"}


@pytest.mark.parametrize("who", sorted(ROLES))
@pytest_twisted.ensureDeferred
async def test_matching_fingerprints_let_messages_flow_without_ca_trust(pair, who):
    a, b = pair(b_answer=ROLES[who])
    sid_a = start(a, b)
    await a.h.wait("established")
    await b.h.wait("established")
    sid_b = b.h.of("established")[0][1]
    # each side's SDP named the certificate its TLS side presents
    (dialog_a,) = a.sip.dialogs()
    (dialog_b,) = b.sip.dialogs()
    assert f"a=fingerprint:{cert_fingerprint(b.msrp.tls)}\r\n".encode() in dialog_a.remote_sdp
    assert f"a=fingerprint:{cert_fingerprint(a.msrp.tls)}\r\n".encode() in dialog_b.remote_sdp
    assert await a.ua.send(sid_a, "text/plain", b"hello bob") == 200
    assert await b.ua.send(sid_b, "text/plain", b"hello alice") == 200
    await b.h.wait("message")
    await a.h.wait("message")
    assert b.h.of("message") == [("message", sid_b, "text/plain", b"hello bob")]
    assert a.h.of("message") == [("message", sid_a, "text/plain", b"hello alice")]


@pytest.mark.parametrize("who", sorted(ROLES))
@pytest.mark.parametrize("liar", ["answerer", "offerer"])
@pytest_twisted.ensureDeferred
async def test_wrong_fingerprint_fails_setup_and_no_message_crosses(pair, tmp_path, who, liar):
    a, b = pair(b_answer=ROLES[who])  # a offers, b answers
    fake = lie(b if liar == "answerer" else a, tmp_path)
    checker, cheat = (a, b) if liar == "answerer" else (b, a)
    sid_a = start(a, b)
    queued = a.ua.send(sid_a, "text/plain", b"must not arrive")  # waits for the binding
    outcome: list[Any] = []
    queued.addBoth(outcome.append)
    await checker.h.wait("failed" if checker is a else "terminated")
    # the side that checked ended the set-up and says why
    (ending,) = checker.h.endings()
    if checker is a:
        assert ending[2:] == (None, None)  # failed(sid, None, None): no final reply caused it
    else:
        assert "does not match the SDP fingerprint" in ending[2]
    # the other side hears of it too (BYE, or its own binding refused): one ending each
    await cheat.h.wait("failed" if cheat is a else "terminated")
    await task.deferLater(reactor, 0.2, lambda: None)
    assert len(a.h.endings()) == 1 and len(b.h.endings()) == 1
    assert a.h.of("established", "message") == [] and b.h.of("established", "message") == []
    assert outcome and outcome[0].value.code == 481  # the queued SEND failed, never sent
    assert a.ua.sessions() == [] and b.ua.sessions() == []
    assert str(fake) not in str(cert_fingerprint(cheat.msrp.tls))


@pytest.mark.parametrize("trusted", [True, False])
@pytest_twisted.ensureDeferred
async def test_without_fingerprint_an_outbound_connection_keeps_ca_verification(
        pair, tmp_path, trusted):
    """A peer offering msrps with no a=fingerprint: we verify it against ca_certificates."""
    b_certs = make_certs(tmp_path / "b-ca")
    a_tls = tls_in(tmp_path / "a", ca_from=b_certs if trusted else None)
    a, b = pair(a_tls=a_tls)
    b.msrp.tls = TLSSettings(b_certs.certificate, b_certs.private_key, b_certs.ca_certificates)
    b.msrp.local_fingerprint = lambda: None  # bob's SDP carries no a=fingerprint
    b_port = b.msrp_ports["msrps"]
    await b.msrp.stop()  # listen again with the CA-signed certificate alice may trust
    b.msrp.listen(f"msrps:127.0.0.1:{b_port}")
    sid_a = start(a, b)  # bob is passive: alice connects and verifies
    if trusted:
        await a.h.wait("established")
        assert await a.ua.send(sid_a, "text/plain", b"verified") == 200
        await b.h.wait("message")
    else:
        await a.h.wait("failed")
        assert a.h.endings() == [("failed", sid_a, None, None)]
        assert b.h.of("message") == []


@pytest.mark.parametrize("lines, refused", [
    (["a=fingerprint:sha-256 ZZ:ZZ", "a=fingerprint:sha-1 12:34"], True),
    (["a=fingerprint:sha-256 12:34", "a=fingerprint:md5 " + ":".join(["00"] * 16)], True),
    (["a=fingerprint:md5 " + ":".join(["00"] * 16)], False),  # unknown hash: ignored
])
@pytest_twisted.ensureDeferred
async def test_offer_whose_only_fingerprints_are_malformed_gets_488(pair, lines, refused):
    a, b = pair()
    offer = sdp.build_offer([f"msrps://127.0.0.1:{a.msrp_ports['msrps']}/hand01;tcp"],
                            ["text/plain"])
    offer += "".join(f"{line}\r\n" for line in lines).encode()
    req = a.sip.new_request("INVITE", a.uri, b.uri, b.uri, body=offer,
                            content_type="application/sdp")
    invite = a.sip.invite(req)
    if not refused:
        # no usable fingerprint and none malformed: accepted as a fingerprint-less peer
        dialog = await invite.deferred
        assert b"a=fingerprint:" in dialog.remote_sdp  # bob's own, in his answer
        await dialog.bye()
        return
    with pytest.raises(SIPFinalResponse) as e:
        await invite.deferred
    assert e.value.code == 488
    warning = e.value.response.headers.get("Warning")
    assert warning.startswith("305 msrpgw ") and "a=fingerprint" in warning
    assert [x.code for x in b.refused] == [488] and b.ua.sessions() == []


# ---------------------------------------------------------------- the stack alone


class RawClient(Protocol):
    """A TLS client that writes one frame and collects what comes back."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.data = b""
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.frame)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.lost.callback(None)


def binding_send(to_uri: str, from_uri: str) -> bytes:
    return (f"MSRP bnd01 SEND\r\nTo-Path: {to_uri}\r\nFrom-Path: {from_uri}\r\n"
            "Message-ID: m1\r\nByte-Range: 1-0/0\r\n-------bnd01$\r\n").encode()


def raw_connect(port: int, frame: bytes, client_tls: TLSSettings | None) -> RawClient:
    """Connect to our msrps listener (with or without a client certificate), write `frame`."""
    proto = RawClient(frame)
    # no client certificate at all, or the one of `client_tls`; the server is not verified
    options = ssl.CertificateOptions() if client_tls is None else \
        client_tls.pinned_client_options()
    reactor.connectSSL("127.0.0.1", port, ClientFactory.forProtocol(lambda: proto), options)
    return proto


@pytest_twisted.async_yield_fixture
async def stack(tmp_path, clean_reactor):
    s = MSRPStack(reactor, tls=tls_in(tmp_path / "gw"))
    port = s.listen("msrps:127.0.0.1:0").getHost().port
    yield s, port
    await stop_in_order([s], clean_reactor)


PEER = "msrps://127.0.0.1:9/peer01;tcp"


def session_of(s: MSRPStack):
    session = s.create_session(["text/plain"])
    session.set_remote_path([PEER])
    got: list[bytes] = []
    session.on_message = lambda msg: got.append(msg.body)
    return session, got


def text_send(to_uri: str) -> bytes:
    return (f"MSRP txt02 SEND\r\nTo-Path: {to_uri}\r\nFrom-Path: {PEER}\r\n"
            "Message-ID: m2\r\nByte-Range: 1-6/6\r\nContent-Type: text/plain\r\n\r\n"
            "secret\r\n-------txt02$\r\n").encode()


@pytest_twisted.ensureDeferred
async def test_listener_binds_an_unpinned_session_from_a_client_without_certificate(stack):
    """The listener asks for a client certificate but does not require one."""
    s, port = stack
    session, got = session_of(s)
    bound = session.wait_bound(TIMEOUT)
    client = raw_connect(port, binding_send(session.local_uri, PEER) +
                         text_send(session.local_uri), None)
    await bound
    await wait_for(lambda: got, "the message")
    assert got == [b"secret"]
    assert client.data.startswith(b"MSRP bnd01 200 OK\r\n")
    client.transport.loseConnection()
    await client.lost.addTimeout(TIMEOUT, reactor)


@pytest.mark.parametrize("client", ["pinned certificate", "other certificate", "none"])
@pytest_twisted.ensureDeferred
async def test_pinned_session_binds_only_a_client_with_the_pinned_certificate(
        stack, tmp_path, client):
    s, port = stack
    peer_tls = tls_in(tmp_path / "peer")
    other_tls = tls_in(tmp_path / "other")
    session, got = session_of(s)
    why: list[str] = []
    assert s.expect_certificate(session, [Fingerprint("sha-1", bytes(20)),
                                          cert_fingerprint(peer_tls)], why.append)
    outcome: list[Any] = []
    session.wait_bound(TIMEOUT).addBoth(outcome.append)
    tls = {"pinned certificate": peer_tls, "other certificate": other_tls, "none": None}[client]
    conn = raw_connect(port, binding_send(session.local_uri, PEER) +
                       text_send(session.local_uri), tls)
    if client == "pinned certificate":
        await wait_for(lambda: got, "the message")
        assert outcome == [None] and got == [b"secret"] and why == []
        assert conn.data.startswith(b"MSRP bnd01 200 OK\r\n")
        conn.transport.loseConnection()
        await conn.lost.addTimeout(TIMEOUT, reactor)
        return
    await conn.lost.addTimeout(TIMEOUT, reactor)  # we closed the connection
    assert got == []  # the SEND behind the refused binding was not delivered
    assert b" 200 " not in conn.data
    assert len(why) == 1 and "does not match the SDP fingerprint" in why[0]
    assert ("no certificate" in why[0]) is (client == "none")
    if client == "other certificate":
        assert str(cert_fingerprint(other_tls)) in why[0]  # the digest it presented
    assert outcome and outcome[0].value.code == 503  # wait_bound failed: session closed
    assert s.get_session(session.session_id) is None


@pytest_twisted.ensureDeferred
async def test_pins_do_not_apply_through_relays_in_the_peer_path(stack):
    s, _port = stack
    session = s.create_session(["text/plain"])
    session.set_remote_path(["msrps://192.0.2.1:2855/relay;tcp", PEER])
    assert not s.expect_certificate(session, [Fingerprint("sha-256", bytes(32))])
    assert not s.expect_certificate(s.create_session(["text/plain"]), [])
    session.close()


async def wait_for(cond, what: str) -> None:
    """Poll `cond` until true, bounded by TIMEOUT of wall-clock time (not loop turns)."""
    end = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() >= end:
            raise AssertionError(f"not within {TIMEOUT} s: {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


class PeerServer(Protocol):
    """A TLS peer that answers every SEND 200 and keeps what it received."""

    def __init__(self, received: list[bytes]) -> None:
        self.received = received

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        head = data.split(b"\r\n")
        tid = head[0].split()[1]
        paths = dict(line.split(b": ", 1) for line in head[1:3])
        self.transport.write(b"MSRP %s 200 OK\r\nTo-Path: %s\r\nFrom-Path: %s\r\n-------%s$\r\n"
                             % (tid, paths[b"From-Path"], paths[b"To-Path"], tid))


@pytest_twisted.async_yield_fixture
async def peer_server(tmp_path):
    peer_tls = tls_in(tmp_path / "srv")
    received: list[bytes] = []
    factory = Factory.forProtocol(lambda: PeerServer(received))
    port = reactor.listenSSL(0, factory, peer_tls.pinned_client_options(), interface="127.0.0.1")
    yield peer_tls, port.getHost().port, received
    await port.stopListening()


@pytest.mark.parametrize("pinned", ["its certificate", "another certificate", "a copied URI"])
@pytest_twisted.ensureDeferred
async def test_we_connect_to_a_pinned_peer_only_if_its_certificate_matches(
        stack, peer_server, tmp_path, pinned):
    s, _ = stack
    peer_tls, port, received = peer_server
    uri = f"msrps://127.0.0.1:{port}/peer02;tcp"
    session = s.create_session(["text/plain"])
    session.set_remote_path([uri])
    why: list[str] = []
    right, wrong = cert_fingerprint(peer_tls), cert_fingerprint(tls_in(tmp_path / "x"))
    s.expect_certificate(session, [right if pinned == "its certificate" else wrong],
                         why.append)
    copier = None
    if pinned == "a copied URI":
        # a later offer copies our session's peer URI and pins the certificate that a man
        # in the middle at that address presents: it must not unlock our session
        copier = s.create_session(["text/plain"])
        copier.set_remote_path([uri])
        s.expect_certificate(copier, [right])
    outcome: list[Any] = []
    session.connect().addBoth(outcome.append)
    await wait_for(lambda: outcome, "connect() to fire")
    if pinned == "its certificate":
        assert outcome == [None] and why == []
        assert b" SEND\r\n" in b"".join(received)  # the binding SEND went out after the check
        assert await session.send("text/plain", b"hi") == 200
        session.close()
        return
    assert outcome[0].value.code == 403  # connect() failed before anything was sent
    assert received == []
    assert len(why) == 1 and str(right) in why[0]  # the digest it presented is named
    assert s.get_session(session.session_id) is None  # refused: the session is gone
    if copier is not None:
        copier.close()
    await wait_for(lambda: s.connection_count() == 0, "the refused connection to close")


@pytest_twisted.ensureDeferred
async def test_a_pinned_session_never_binds_over_plain_tcp(stack, tmp_path):
    """A pin cannot be met without TLS: connect() fails at once, nothing is sent."""
    s, _ = stack
    received: list[bytes] = []
    listener = reactor.listenTCP(0, Factory.forProtocol(lambda: PeerServer(received)),
                                 interface="127.0.0.1")
    uri = f"msrp://127.0.0.1:{listener.getHost().port}/plain01;tcp"
    session = s.create_session(["text/plain"])
    session.set_remote_path([uri])
    why: list[str] = []
    assert s.expect_certificate(session, [cert_fingerprint(tls_in(tmp_path / "p"))], why.append)
    outcome: list[Any] = []
    session.connect().addBoth(outcome.append)
    await wait_for(lambda: outcome, "connect() to fire")
    assert outcome[0].value.code == 403 and received == []
    assert len(why) == 1 and "no certificate" in why[0]
    await wait_for(lambda: s.connection_count() == 0, "the connection to close")
    await listener.stopListening()
