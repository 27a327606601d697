"""MSRP through an RFC 4976 relay over TLS (msrps:), real sockets on 127.0.0.1.

The relay here is the test's own: it listens with the shared test certificates
(`tests.tlscerts`, a CA and a leaf naming 127.0.0.1), challenges AUTH with Digest, checks
the answer, refuses lifetimes outside its bounds with 423 Interval Out-of-Bounds, grants a
Use-Path, and forwards SENDs by To-Path. Every wait is on an event with a generous
timeout (no fixed sleeps), so the tests hold on a slow, loaded machine.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Factory, Protocol

from msrp_gateway.msrp.message import FrameParser, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.relay import RelayAuthError
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from tests.tlscerts import make_certs

TIMEOUT = 30.0  # s for any one awaited event: generous for a loaded CI machine
REALM = "relay.test"
USERS = {"alice": "s3cret"}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authority(uri: str) -> tuple[str, int]:
    host, port = uri.split("://", 1)[1].split("/", 1)[0].split(";")[0].rsplit(":", 1)
    return host, int(port)


class Waiters:
    """A count that tests can wait on reaching n, with a bounded wait."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiters: list[tuple[int, defer.Deferred]] = []

    def add(self, item: Any) -> None:
        self.items.append(item)
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


async def until(condition: Any, what: str) -> None:
    """Poll a condition of the client side (it has no event to wait on) within TIMEOUT."""
    deadline = reactor.seconds() + TIMEOUT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"not within {TIMEOUT} s: {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


class RelayConn(Protocol):
    def __init__(self, relay: TLSRelay) -> None:
        self.relay = relay
        self.parser = FrameParser()
        self.lost: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.relay.conns.add(self)

    def dataReceived(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            self.relay.handle(self, frame)

    def connectionLost(self, reason: Any = None) -> None:
        self.relay.conns.discard(self)
        self.lost.callback(None)

    def send(self, frame: MSRPRequest | MSRPResponse) -> None:
        self.transport.write(frame.to_bytes())


class TLSRelay:
    """An RFC 4976 relay on msrps://127.0.0.1:PORT: Digest AUTH, 423 for a requested
    lifetime outside [min_expires, max_expires], Use-Path, SEND/REPORT forwarding."""

    def __init__(self, tls: TLSSettings, *, expires: int = 600, min_expires: int | None = None,
                 max_expires: int | None = None) -> None:
        self.tls = tls
        self.expires = expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.conns: set[RelayConn] = set()
        self.clients: dict[str, RelayConn] = {}  # Use-Path session-id -> its client
        self.nonces: set[str] = set()
        self.auth_requests = Waiters()  # every AUTH received
        self.granted = Waiters()  # lifetimes granted in a 200
        self.forwarded = Waiters()  # (method, To-Path it went out with)
        self._out: dict[tuple[str, int], defer.Deferred] = {}
        self.port = reactor.listenSSL(0, Factory.forProtocol(lambda: RelayConn(self)),
                                      tls.server_options(), interface="127.0.0.1")
        self.uri = f"msrps://127.0.0.1:{self.port.getHost().port};tcp"

    def handle(self, conn: RelayConn, frame: Any) -> None:
        if isinstance(frame, MSRPRequest) and frame.method == "AUTH":
            self.auth(conn, frame)
        elif isinstance(frame, MSRPRequest):
            self.forward(conn, frame)
        # responses to what we forwarded: hop by hop, the sender was answered already

    def answer(self, conn: RelayConn, req: MSRPRequest, status: int,
               headers: list[tuple[str, str]] | tuple[()] = ()) -> None:
        conn.send(MSRPResponse(req.transaction_id, status, None,
                               [("To-Path", req.from_path[0]), ("From-Path", self.uri),
                                *headers]))

    def _credentials_ok(self, req: MSRPRequest) -> bool:
        value = req.headers.get("Authorization")
        if value is None:
            return False
        p = dict(re.findall(r'(\w+)="?([^",]*)"?', value))
        password = USERS.get(p.get("username", ""))
        if password is None or p.get("nonce") not in self.nonces:
            return False
        if not p.get("uri") == req.to_path[0] == self.uri:
            return False
        ha1 = md5(f"{p['username']}:{REALM}:{password}")
        expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:"
                       f"{md5('AUTH:' + p['uri'])}")
        return p.get("response") == expected

    def auth(self, conn: RelayConn, req: MSRPRequest) -> None:
        self.auth_requests.add(req)
        if not self._credentials_ok(req):
            nonce = secrets.token_hex(8)
            self.nonces.add(nonce)
            self.answer(conn, req, 401, [("WWW-Authenticate",
                                          f'Digest realm="{REALM}", nonce="{nonce}", '
                                          'qop="auth", algorithm=MD5')])
            return
        asked = req.expires
        if asked is not None and self.min_expires is not None and asked < self.min_expires:
            self.answer(conn, req, 423, [("Min-Expires", str(self.min_expires))])
            return
        if asked is not None and self.max_expires is not None and asked > self.max_expires:
            self.answer(conn, req, 423, [("Max-Expires", str(self.max_expires))])
            return
        lifetime = self.expires if asked is None else asked
        token = secrets.token_hex(6)
        self.clients[token] = conn
        use_path = f"msrps://127.0.0.1:{self.port.getHost().port}/{token};tcp"
        self.answer(conn, req, 200, [("Use-Path", use_path), ("Expires", str(lifetime))])
        self.granted.add(lifetime)

    def forward(self, conn: RelayConn, req: MSRPRequest) -> None:
        mine, rest = req.to_path[0], req.to_path[1:]
        owner = self.clients.get(mine.rsplit("/", 1)[-1].split(";")[0])
        if owner is None or not rest:
            if req.method == "SEND":
                self.answer(conn, req, 481)
            return
        headers = [(n, v) for n, v in req.headers.items() if n not in ("To-Path", "From-Path")]
        headers = [("To-Path", " ".join(rest)),
                   ("From-Path", " ".join([mine, *req.from_path])), *headers]
        # A relay starts a transaction of its own on the next hop (RFC 4976 s.6.1).
        out = MSRPRequest(secrets.token_hex(8), req.method, headers, req.body, req.flag)
        if req.method == "SEND" and req.failure_report != "no":
            self.answer(conn, req, 200)
        self.forwarded.add((req.method, " ".join(rest)))
        if conn is not owner:
            # A peer that connected to us is reached back over its own connection.
            self._out.setdefault(authority(req.from_path[0]), defer.succeed(conn))
            owner.send(out)
            return
        key = authority(rest[0])
        if key not in self._out:
            ep = endpoints.wrapClientTLS(
                self.tls.client_options(key[0]),
                endpoints.TCP4ClientEndpoint(reactor, key[0], key[1], timeout=10))
            self._out[key] = endpoints.connectProtocol(ep, RelayConn(self))
        self._out[key].addCallback(lambda c: (c.send(out), c)[1])

    async def stop(self) -> None:
        await self.port.stopListening()
        conns = list(self.conns)
        for c in conns:
            c.transport.abortConnection()
        await defer.gatherResults([c.lost for c in conns])


def tls_files(tmp_path, name: str, names: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
              ) -> TLSSettings:
    certs = make_certs(tmp_path / name, names)
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


@pytest_twisted.async_yield_fixture
async def relayed(tmp_path):
    """`relayed(**relay_options)` -> (relay, A behind it, B reached directly), all msrps.

    A listens nowhere (behind a relay nothing needs to reach it): its URI is given, so
    every byte of A goes over its one TLS connection to the relay.
    """
    made: list[Any] = []

    def make(*, client_tls: TLSSettings | None = None, relay_tls: TLSSettings | None = None,
             expires: int | None = None, **relay_options: Any):
        tls = tls_files(tmp_path, "shared")
        relay = TLSRelay(relay_tls or tls, **relay_options)
        made.append(relay)
        a = MSRPStack(reactor, "msrps://127.0.0.1:9;tcp", relay_uri=relay.uri,
                      tls=client_tls or tls, relay_username="alice", relay_password="s3cret")
        made.insert(0, a)
        assert a.relay is not None
        a.relay.requested_expires = expires
        b = MSRPStack(reactor, tls=tls)
        made.insert(0, b)
        b.listen("msrps:127.0.0.1:0")
        return relay, a, b

    yield make
    for thing in made:  # stacks first, then the relays they were connected to
        await thing.stop()


class Inbox:
    def __init__(self, session: Any) -> None:
        self.got = Waiters()
        session.on_message = self.got.add


async def pair(a: MSRPStack, b: MSRPStack, *, a_active: bool) -> tuple[Any, Any]:
    sa = a.create_session(["text/plain"])
    sb = b.create_session(["text/plain"])
    sa.set_remote_path(sb.local_path)
    sb.set_remote_path(sa.local_path)
    active, passive = (sa, sb) if a_active else (sb, sa)
    bound = passive.wait_bound(TIMEOUT)
    await active.connect()
    await bound
    return sa, sb


@pytest.mark.parametrize("a_active", [True, False], ids=["we-connect", "peer-connects"])
@pytest_twisted.ensureDeferred
async def test_messages_both_ways_through_a_tls_relay(relayed, a_active):
    relay, a, b = relayed()
    await a.start()
    assert a.relay.use_path[0].startswith(relay.uri.split(";")[0] + "/")
    assert relay.granted.items == [600]
    sa, sb = await pair(a, b, a_active=a_active)
    assert sa.local_path == [*a.relay.use_path, sa.local_uri]  # Use-Path before our URI
    assert all(uri.startswith("msrps://") for uri in sa.local_path + sb.local_path)
    inbox_a, inbox_b = Inbox(sa), Inbox(sb)
    assert await sa.send("text/plain", b"over TLS via the relay") == 200
    big = bytes(range(256)) * 40  # several chunks, each forwarded over TLS
    assert await sb.send("text/plain", big) == 200
    [to_b] = await inbox_b.got.wait(1)
    [to_a] = await inbox_a.got.wait(1)
    assert (to_b.body, to_a.body) == (b"over TLS via the relay", big)
    assert a.connection_count() == 1  # A's one TLS connection is the relay's
    sent_by_a = [path for _, path in relay.forwarded.items if path == sb.local_uri]
    assert len(sent_by_a) == (2 if a_active else 1)  # (binding SEND when A connected)


@pytest_twisted.ensureDeferred
async def test_relay_423_min_expires_is_asked_again_over_tls(relayed):
    relay, a, _ = relayed(expires=30, min_expires=120)
    await a.start()
    asked = [r.expires for r in relay.auth_requests.items]
    # challenge, credentials asking 30 s (423), credentials asking the relay's minimum
    assert asked == [30, 30, 120]
    assert relay.granted.items == [120] and a.relay.ready
    assert a.relay.expires_at is not None
    assert 90 < a.relay.expires_at - reactor.seconds() <= 120


@pytest_twisted.ensureDeferred
async def test_relay_423_max_expires_lowers_the_lifetime_over_tls(relayed):
    relay, a, _ = relayed(expires=86400, max_expires=1800)
    await a.start()
    assert [r.expires for r in relay.auth_requests.items][-1] == 1800
    assert relay.granted.items == [1800] and a.relay.requested_expires == 1800


@pytest_twisted.ensureDeferred
async def test_tls_relay_is_re_authenticated_before_expiry(relayed):
    relay, a, b = relayed(expires=2)  # the relay grants 2 s: refresh after 1.6 s
    await a.start()
    sa, sb = await pair(a, b, a_active=True)
    await relay.granted.wait(2)  # the refresh AUTH, on the same TLS connection
    await until(lambda: a.relay.auth_count >= 2, "the client took the refresh's 200")
    assert relay.granted.items[:2] == [2, 2] and a.relay.ready
    inbox = Inbox(sb)
    assert await sa.send("text/plain", b"still through") == 200
    [got] = await inbox.got.wait(1)
    assert got.body == b"still through" and a.connection_count() == 1


@pytest_twisted.ensureDeferred
async def test_a_relay_certificate_for_another_name_is_refused_before_any_auth(relayed,
                                                                                tmp_path):
    """Peer verification: a relay whose certificate (from a CA we trust) does not name
    127.0.0.1 never sees an AUTH, so our credentials never reach it."""
    wrong = tls_files(tmp_path, "wrong", names=("relay.invalid",))
    ours = tls_files(tmp_path, "ours")
    trusting = TLSSettings(ours.certificate, ours.private_key, wrong.ca_certificates)
    relay, a, _ = relayed(relay_tls=wrong, client_tls=trusting)
    with pytest.raises(RelayAuthError) as err:
        await a.start()
    assert err.value.code == 503 and relay.auth_requests.items == []
    assert not a.relay.ready
