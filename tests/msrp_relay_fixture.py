"""The tests' own RFC 4976 MSRP relay on 127.0.0.1, over TCP (msrp:) or TLS (msrps:), and the
small waiting helpers the relay tests share.

One relay for every test that needs one (tests/integration/test_msrp_loopback.py,
test_msrp_relay_tls.py, test_ua_loopback.py), so a fix to how it challenges, bounds lifetimes
or forwards reaches them all. It is deliberately small and strict: Digest AUTH (401 challenge,
checked response), 423 for a requested lifetime outside [min_expires, max_expires], a 200 with
Use-Path and Expires, and SEND/REPORT forwarding by To-Path (it removes itself from To-Path,
puts itself in front of From-Path, answers SENDs hop by hop and opens a transaction of its own
on the next hop, RFC 4976 s.6.1).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any, NamedTuple

from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Factory, Protocol

from msrp_gateway.msrp.message import FrameParser, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.transport import TLSSettings

TIMEOUT = 30.0  # s for any one awaited event: a bound only waited out when something is broken


class Waiters:
    """Things seen in order; `wait(n)` fires (bounded by TIMEOUT) once there are n."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._waiters: list[tuple[int, defer.Deferred]] = []

    def add(self, item: Any) -> None:
        self.add_all([item])

    def add_all(self, items: Iterable[Any]) -> None:
        """Several at once (the frames of one read): waiters see them all."""
        self.items.extend(items)
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


class Inbox(Waiters):
    """Whole messages an MSRP session received, in order."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        session.on_message = self.add


async def stop_in_order(things: Iterable[Any], clean_reactor: Any = None) -> None:
    """Fixture teardown: `await thing.stop()` for each in turn (stacks before the relays they
    were connected to), then let closed connections and timers wind down (bounded, with the
    clean-reactor check's `settle`) instead of sleeping a fixed time."""
    for thing in things:
        await thing.stop()
    if clean_reactor is not None:
        await clean_reactor.settle()


def authority(uri: str) -> tuple[str, int]:
    """(host, port) of an msrp(s) URI."""
    host, port = uri.split("://", 1)[1].split("/", 1)[0].split(";")[0].rsplit(":", 1)
    return host, int(port)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class SeenAuth(NamedTuple):
    """One AUTH the relay read: when (on the relay's clock), its Expires header as sent
    (None without one) and whether it carried credentials."""

    at: float
    expires: str | None
    credentials: bool


class RelayConn(Protocol):
    """One connection of the test relay; frames it reads go to the relay."""

    def __init__(self, relay: MiniRelay) -> None:
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


class MiniRelay:
    """An RFC 4976 relay listening on 127.0.0.1 (TLS with `tls`, else TCP).

    `auth_requests` holds a `SeenAuth` per AUTH read, its time from `clock` (the test's, so a
    task.Clock gives exact times; sockets stay on the reactor); `granted` the lifetime of
    each 200; `forwarded` (method, To-Path it went out with) per request forwarded;
    `auths` how many AUTHs were granted.
    """

    realm = "relay.test"

    def __init__(self, users: dict[str, str], expires: int = 600, clock: Any = None, *,
                 tls: TLSSettings | None = None, min_expires: int | None = None,
                 max_expires: int | None = None) -> None:
        self.users = users
        self.expires = expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.clock = clock if clock is not None else reactor
        self.tls = tls
        self.conns: set[RelayConn] = set()
        self.clients: dict[str, RelayConn] = {}  # Use-Path session-id -> its client
        self.nonces: set[str] = set()
        self.auth_requests = Waiters()
        self.granted = Waiters()
        self.forwarded: list[tuple[str, str]] = []
        self._out: dict[tuple[str, int], defer.Deferred] = {}
        factory = Factory.forProtocol(lambda: RelayConn(self))
        if tls is None:
            self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        else:
            self.port = reactor.listenSSL(0, factory, tls.server_options(),
                                          interface="127.0.0.1")
        self.scheme = "msrp" if tls is None else "msrps"
        self.uri = f"{self.scheme}://127.0.0.1:{self.port.getHost().port};tcp"

    @property
    def auths(self) -> int:
        return len(self.granted.items)

    def handle(self, conn: RelayConn, frame: Any) -> None:
        if isinstance(frame, MSRPRequest) and frame.method == "AUTH":
            self.auth(conn, frame)
        elif isinstance(frame, MSRPRequest):
            self.forward(conn, frame)
        # responses to what we forwarded: hop by hop, the sender was answered already

    def answer(self, conn: RelayConn, req: MSRPRequest, status: int,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        conn.send(MSRPResponse(req.transaction_id, status, None,
                               [("To-Path", req.from_path[0]), ("From-Path", self.uri),
                                *headers]))

    def _credentials_ok(self, req: MSRPRequest) -> bool:
        value = req.headers.get("Authorization")
        if value is None:
            return False
        p = dict(re.findall(r'(\w+)="?([^",]*)"?', value))
        password = self.users.get(p.get("username", ""))
        if password is None or p.get("nonce") not in self.nonces:
            return False
        if not p.get("uri") == req.to_path[0] == self.uri:
            return False
        ha1 = md5(f"{p['username']}:{self.realm}:{password}")
        expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:"
                       f"{md5('AUTH:' + p['uri'])}")
        return p.get("response") == expected

    def auth(self, conn: RelayConn, req: MSRPRequest) -> None:
        self.auth_requests.add(SeenAuth(self.clock.seconds(), req.headers.get("Expires"),
                                        req.headers.get("Authorization") is not None))
        if not self._credentials_ok(req):
            nonce = secrets.token_hex(8)
            self.nonces.add(nonce)
            challenge = (f'Digest realm="{self.realm}", nonce="{nonce}", '
                         'qop="auth", algorithm=MD5')
            self.answer(conn, req, 401, [("WWW-Authenticate", challenge)])
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
        use_path = f"{self.scheme}://127.0.0.1:{self.port.getHost().port}/{token};tcp"
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
        self.forwarded.append((req.method, " ".join(rest)))
        if conn is not owner:
            # A peer that connected to us is reached back over its own connection.
            self._out.setdefault(authority(req.from_path[0]), defer.succeed(conn))
            owner.send(out)  # towards our client
            return
        key = authority(rest[0])  # away from it: reuse a connection to that hop
        if key not in self._out:
            ep: Any = endpoints.TCP4ClientEndpoint(reactor, key[0], key[1], timeout=TIMEOUT)
            if self.tls is not None:
                ep = endpoints.wrapClientTLS(self.tls.client_options(key[0]), ep)
            self._out[key] = endpoints.connectProtocol(ep, RelayConn(self))
        self._out[key].addCallback(lambda c: (c.send(out), c)[1])

    async def stop(self) -> None:
        """Close the port and every connection; fires when all are gone (no fixed wait)."""
        await self.port.stopListening()
        conns = list(self.conns)
        for c in conns:
            c.transport.abortConnection()
        await defer.gatherResults([c.lost for c in conns])


async def relayed_pair(a: Any, b: Any, *, a_active: bool = True) -> tuple[Any, Any]:
    """A session on stack `a` and one on `b`, each with the other's a=path (Use-Path
    included); the active side connects and both are bound (each wait bounded)."""
    sa = a.create_session(["text/plain"])
    sb = b.create_session(["text/plain"])
    sa.set_remote_path(sb.local_path)
    sb.set_remote_path(sa.local_path)
    active, passive = (sa, sb) if a_active else (sb, sa)
    bound = passive.wait_bound(TIMEOUT)
    await active.connect().addTimeout(TIMEOUT, reactor)
    await bound.addTimeout(TIMEOUT, reactor)  # (a bound on the reactor's time too)
    return sa, sb
