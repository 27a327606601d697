"""MSRP over TCP and TLS: listeners, outbound connections shared per next hop.

The protocol objects only move bytes between a socket and a `session.LinkCore`; all
MSRP logic lives there. `MSRPStack` is what the UA uses: it creates sessions, listens on
`msrp:HOST:PORT` / `msrps:HOST:PORT` and opens (or reuses, RFC 4975 s.6) connections.

A session pinned by the peer's SDP fingerprints (`MSRPStack.expect_certificate`, RFC 4975
s.14.4) binds only to a TLS connection whose peer certificate has one of those digests,
whichever side connects; a mismatch refuses the binding and fails the session.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..sockets import SocketStringError, parse_socket_string
from .chunks import ReassemblyBudget
from .connections import InboundFactory, Key, MSRPProtocol, OutboundFactory
from .fingerprint import Fingerprint
from .message import DEFAULT_LIMITS, MSRPParseError
from .pinning import Pin, PinningTable, PinSet
from .relay import MAX_INTERVAL, RelayAuthError, RelayClient
from .rules import MSRPCounters
from .session import (
    CONNECTION_LOST,
    Clock,
    LinkCore,
    MSRPSendError,
    MSRPSession,
    SessionError,
    SessionHost,
    SessionSettings,
    SessionTable,
    new_id,
)
from .tls import HandshakeLog, TLSSettings
from .uri import DEFAULT_PORT, MSRPURI, parse_msrp_uri

__all__ = ["MSRPListener", "MSRPStack", "TLSSettings", "parse_socket", "MSRPSendError",
           "CERTIFICATE_MISMATCH"]

log = Logger()

# Seconds an outbound connection may take to connect, and any msrps connection (ours or a
# peer's) to complete its TLS handshake; the stack's `connect_timeout` (handshake deadline
# on the stack's clock).
CONNECT_TIMEOUT = 10.0
# The status a binding request gets when its connection's certificate is not the pinned one
# (RFC 4975 s.7.2: 403, the action is not allowed); the connection is then closed.
CERTIFICATE_MISMATCH = 403
# The connection-level parts live in connections.py; their old names stay importable here.
_Key = Key
_InboundFactory = InboundFactory
_OutboundFactory = OutboundFactory
_SOCKET_PROTOCOLS = {"msrp": DEFAULT_PORT, "msrps": DEFAULT_PORT}


def parse_socket(text: str) -> tuple[bool, str, int]:
    """`msrp:HOST[:PORT]` / `msrps:HOST[:PORT]` -> (tls, host, port); port 2855 if left
    out, 0 lets the OS choose; ValueError says the fix."""
    try:
        addr = parse_socket_string(text.strip(), _SOCKET_PROTOCOLS)
    except SocketStringError as e:
        if e.part == "port":
            raise ValueError(f"bad MSRP socket {text!r}: expected {e.expected}") from None
        raise ValueError(f"bad MSRP socket {text!r}: write msrp:HOST:PORT or "
                         "msrps:HOST:PORT") from None
    return addr.protocol == "msrps", addr.host, addr.port


@dataclass(frozen=True, slots=True)
class MSRPListener:
    """One socket the stack listens on: `secure` for msrps (TLS), the address it is bound
    to (`host` without brackets; a wildcard stays ``0.0.0.0``/``::``) and its actual port
    (the OS's choice for port 0)."""

    secure: bool
    host: str
    port: int


def tls_settings_from(obj: Any) -> TLSSettings | None:
    """Accept a TLSSettings, any object with the [tls] attributes, or None."""
    if obj is None or isinstance(obj, TLSSettings):
        return obj
    cert = getattr(obj, "certificate", None)
    key = getattr(obj, "private_key", None)
    if not cert or not key:
        return None
    return TLSSettings(cert, key, getattr(obj, "ca_certificates", None))


def _logged_already(failure: Failure) -> None:
    """The relay client logs and retries its failures; a caller that does not wait on
    `start()` drops them here (anything else is a bug and propagates)."""
    failure.trap(RelayAuthError)  # type: ignore[no-untyped-call]  # Failure is untyped


class MSRPStack(SessionHost):
    """Sessions, listeners and connections of one MSRP endpoint.

    `my_uri` (e.g. `msrp://127.0.0.1:2855;tcp`) is the authority put in our session URIs;
    when None, the first `listen()` provides it (handy with port 0).

    With `relay_uri` (RFC 4976), every session goes through that relay: `start()` (or the
    first `listen()`) connects and AUTHs with `relay_username`/`relay_password`, asking
    for `relay_expires` seconds (0/None: no Expires, the relay's choice); until
    the relay's 200, `create_session` refuses with `SessionError(503)`; sessions then
    carry the relay's Use-Path before our URI and send over the relay connection.
    """

    def __init__(self, reactor: Any, my_uri: str | None = None, *,
                 relay_uri: str | None = None, tls: Any = None, limits: Any = None,
                 settings: SessionSettings | None = None, relay_username: str | None = None,
                 relay_password: str | None = None, relay_expires: int | None = None,
                 clock: Clock | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        if not connect_timeout > 0:
            raise ValueError(f"MSRP connect_timeout {connect_timeout!r}: expected seconds > 0")
        self.reactor = reactor
        self.connect_timeout = float(connect_timeout)
        # Timers (SEND timeouts, idle connections, relay refreshes) run on `clock`; sockets
        # on `reactor`.  Tests pass a task.Clock to drive the timers over real connections.
        self.clock: Clock = reactor if clock is None else clock
        self.my_uri: MSRPURI | None = parse_msrp_uri(my_uri) if my_uri else None
        self.tls = tls_settings_from(tls)
        if self.tls is not None:
            self.tls.load()
        self.limits = limits if limits is not None else DEFAULT_LIMITS
        self.settings = settings or SessionSettings()
        self.table: SessionTable = PinningTable(self.settings, self._check_binding)
        # One bound on bytes held in incomplete messages across every session.
        self.reassembly_budget = ReassemblyBudget(self.settings.max_reassembly_bytes)
        self.counters = MSRPCounters()
        self._ports: list[IListeningPort] = []
        self._listeners: list[MSRPListener] = []  # what `listening()` reports
        self._protocols: set[MSRPProtocol] = set()
        self._by_core: dict[LinkCore, MSRPProtocol] = {}
        self._outbound: dict[Key, MSRPProtocol] = {}  # usable connections, for reuse
        self._connecting: dict[Key, OutboundFactory] = {}  # attempts not usable yet
        # Failed TLS handshakes: counted (`.failures`), logged at a bounded rate.
        self.handshake_log = HandshakeLog()
        self._stopping = False
        # Sessions pinned by the peer's SDP fingerprints (RFC 4975 s.14.4).
        self.pins = PinSet()
        self.relay: RelayClient | None = None
        if relay_uri:
            try:
                relay = parse_msrp_uri(relay_uri)
            except MSRPParseError as e:
                raise ValueError(f"[msrp] relay_uri {relay_uri!r}: {e.reason}") from None
            if relay.secure and self.tls is None:
                raise ValueError("[msrp] relay_uri is msrps: it needs [tls] certificate and "
                                 "private_key")
            # 0 and None both mean: no Expires in the AUTH, the relay chooses the lifetime.
            if relay_expires is not None and not 0 <= relay_expires <= MAX_INTERVAL:
                raise ValueError(f"[msrp] relay_expires {relay_expires!r}: expected 1.."
                                 f"{MAX_INTERVAL} s, or 0 to let the relay choose")
            self.relay = RelayClient(self.clock, relay_uri, self._own_uri, self._link_direct,
                                     username=relay_username, password=relay_password,
                                     timeout=self.settings.response_timeout,
                                     expires=relay_expires or None)

    def start(self) -> defer.Deferred[None]:
        """Connect and authenticate to the relay, if one is configured; fires on the first
        200 (errback `RelayAuthError`; the stack keeps retrying in the background)."""
        if self.relay is None:
            return defer.succeed(None)
        return self.relay.start()

    def _own_uri(self) -> str | None:
        return None if self.my_uri is None else str(self.my_uri)

    # -- listening ----------------------------------------------------------------------
    def listen(self, socket_string: str) -> IListeningPort:
        """Listen on `msrp:HOST[:PORT]` / `msrps:HOST[:PORT]` (ValueError for a bad string)."""
        secure, host, port = parse_socket(socket_string)
        factory = InboundFactory(self, secure)
        lp: Any  # the reactor's port (IListeningPort, whose zope methods mypy misreads)
        if secure:
            if self.tls is None:
                raise ValueError(f"MSRP socket {socket_string!r} needs [tls] certificate "
                                 "and private_key")
            lp = self.reactor.listenSSL(port, factory, self.tls.server_options(),
                                        interface=host)
        else:
            lp = self.reactor.listenTCP(port, factory, interface=host)
        self._ports.append(lp)
        bound = lp.getHost()
        actual = bound.port
        self._listeners.append(MSRPListener(secure, str(bound.host), int(actual)))
        if self.my_uri is None:
            self.my_uri = MSRPURI("msrps" if secure else "msrp", host, actual)
        log.info("MSRP listening on {sock} (port {port})", sock=socket_string, port=actual)
        listening: IListeningPort = lp
        if self.relay is not None:
            # Failures are logged and retried by the relay client; nothing to raise here.
            self.relay.start().addErrback(_logged_already)
        return listening

    def listening(self) -> list[MSRPListener]:
        """Every socket this stack listens on, in `listen()` order; empty after `stop()`.

        The UA reads it to answer an offer on the transport it asks for (msrp: or msrps:)."""
        return list(self._listeners)

    # -- sessions -------------------------------------------------------------------------
    def create_session(self, accept_types: Sequence[str]) -> MSRPSession:
        if self.my_uri is None:
            raise ValueError("[msrp] my_uri is not set and nothing listens yet")
        for _ in range(8):
            sid = new_id()
            if self.table.get(sid) is None:
                break
        local = str(dataclasses.replace(self.my_uri, session_id=sid))
        relay_path: list[str] = []
        if self.relay is not None:
            if not self.relay.ready:
                self.relay.start().addErrback(_logged_already)
                raise SessionError(503, "MSRP relay not authenticated (yet)")
            relay_path = list(self.relay.use_path)
        session = MSRPSession(self, sid, local, accept_types, self.settings, relay_path)
        self.table.add(session)  # raises SessionError(503) when the table is full
        return session

    def get_session(self, session_id: str) -> MSRPSession | None:
        return self.table.get(session_id)

    def forget(self, session: MSRPSession) -> None:
        self.table.remove(session)
        self.pins.remove(session.session_id)

    # -- certificate fingerprints (RFC 4975 s.14.4, RFC 8122) ------------------------------
    def local_fingerprint(self) -> Fingerprint | None:
        """The SHA-256 fingerprint of the certificate our msrps side presents (computed once
        from ``[tls] certificate``); None without TLS settings."""
        return None if self.tls is None else self.tls.fingerprint()

    def expect_certificate(self, session: MSRPSession, fingerprints: Sequence[Fingerprint],
                           on_mismatch: Callable[[str], None] | None = None) -> bool:
        """Pin `session` to its peer's certificate: the TLS connection it binds to (ours
        or theirs) must present a certificate matching one of `fingerprints`.

        Call after `set_remote_path`, before `connect`/`wait_bound`. A mismatch refuses the
        binding, closes that connection (unless other sessions use it), logs both digests
        and calls `on_mismatch(why)` (default: the session ends as if its connection was
        lost). False (nothing pinned, logged) when the check cannot apply: no fingerprints,
        a relay of ours, or a peer path with relays (the TLS peer is then a relay)."""
        fps = tuple(fingerprints)
        if not fps:
            return False
        why = ""
        if self.relay is not None:
            why = "our MSRP relay is the TLS peer"
        elif len(session.remote_path) != 1:
            why = "the peer's path goes through relays"
        if why:
            log.info("MSRP session {sid}: peer certificate fingerprints not checked: {why}",
                     sid=session.session_id, why=why)
            return False
        self.pins.add(Pin(session.session_id, session.remote_path[0], fps, on_mismatch))
        return True

    def _refuse(self, pin: Pin, session: MSRPSession, core: LinkCore, why: str) -> None:
        """Close the connection (unless other sessions use it) and fail the session."""
        proto = self._by_core.get(core)
        if proto is not None and not core.sessions:
            proto.close()
        pin.notify(why)
        if not session.closed:
            session.link_lost(why)

    def _check_binding(self, session: MSRPSession, core: LinkCore) -> None:
        """Inbound: a request is about to bind `session` to `core` (the peer connected)."""
        pin = self.pins.get(session.session_id)
        if pin is None:
            return
        proto = self._by_core.get(core)
        der = proto.peer_certificate() if proto is not None else None
        if pin.accepts(der):
            return
        why = pin.refusal(der, core.name)
        self._refuse(pin, session, core, why)
        raise SessionError(CERTIFICATE_MISMATCH, "certificate does not match a=fingerprint")

    def _pinned_link(self, uri: str) -> defer.Deferred[LinkCore]:
        """Outbound: the connection to a pinned peer, once its certificate is checked
        against every session pinned to that peer URI (each that fails is refused)."""
        d = self._link_direct(uri, pinned=True)

        def handshaken(core: LinkCore) -> defer.Deferred[LinkCore]:
            proto = self._by_core.get(core)
            if proto is None:
                raise MSRPSendError(CONNECTION_LOST, "connection lost at once")
            if proto.outbound_key is not None and not proto.outbound_key[0]:
                return defer.succeed(check(core, proto))  # plain TCP: no certificate
            return proto.when_handshaken().addCallback(lambda _: check(core, proto))

        def check(core: LinkCore, proto: MSRPProtocol) -> LinkCore:
            der = proto.peer_certificate()
            failed = [p for p in self.pins.for_hop(uri) if not p.accepts(der)]
            if not failed:
                return core
            why = ""
            for pin in failed:
                why = pin.refusal(der, core.name)
                session = self.table.get(pin.session_id)
                if session is not None:
                    self._refuse(pin, session, core, why)
            if not core.sessions:
                proto.close()
            raise MSRPSendError(CERTIFICATE_MISMATCH, why)

        return d.addCallback(handshaken)

    # -- connections ----------------------------------------------------------------------
    def link_for(self, uri: str) -> defer.Deferred[LinkCore]:
        """The connection to the next hop `uri`, opened or reused (RFC 4975 s.6); with a
        relay, always the relay connection (RFC 4976: everything goes through it)."""
        if self.relay is not None:
            return self.relay.link_deferred()
        if self.pins.has_hop(uri):
            return self._pinned_link(uri)
        return self._link_direct(uri)

    def _link_direct(self, uri: str, pinned: bool = False) -> defer.Deferred[LinkCore]:
        try:
            target = parse_msrp_uri(uri)
        except MSRPParseError as e:
            return defer.fail(MSRPSendError(400, e.reason))
        pinned = pinned and target.secure
        key = (target.secure, target.host.lower(), target.effective_port, pinned)
        proto = self._outbound.get(key)
        if proto is not None and proto.core is not None and not proto.core.lost \
                and not proto.core.closing:
            return defer.succeed(proto.core)
        d: defer.Deferred[LinkCore] = defer.Deferred()
        attempt = self._connecting.get(key)
        if attempt is not None:  # one attempt per next hop; its outcome is everyone's
            attempt.waiters.append(d)
            return d
        endpoint: Any = endpoints.HostnameEndpoint(self.reactor, target.host,
                                                   target.effective_port,
                                                   timeout=self.connect_timeout)
        if target.secure:
            if self.tls is None:
                return defer.fail(MSRPSendError(503, "msrps peer but no [tls] settings"))
            options = self.tls.pinned_client_options() if pinned else \
                self.tls.client_options(target.host)
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        attempt = OutboundFactory(self, key)
        attempt.waiters.append(d)
        self._connecting[key] = attempt
        cd = endpoint.connect(attempt)
        if not attempt.done:
            attempt.connecting = cd
        cd.addErrback(self._connect_failed, attempt)
        return d

    def _outbound_ready(self, proto: MSRPProtocol) -> None:
        """An outbound connection became usable (TCP connected; TLS: handshake done):
        it is kept for reuse and its waiters get it."""
        attempt = proto.attempt
        core = proto.core
        if attempt is None or attempt.done or core is None:
            return
        attempt.connecting = None
        key = attempt.key
        if core.lost:  # made and lost in the same turn
            attempt.finish(MSRPSendError(CONNECTION_LOST, "connection lost at once"))
            return
        self._outbound[key] = proto
        attempt.finish(core)

    def _connect_failed(self, failure: Failure, attempt: OutboundFactory) -> None:
        attempt.connecting = None
        if attempt.done:
            return
        why = failure.getErrorMessage() or repr(failure.value)
        if not self._stopping:
            log.warn("MSRP connection to {host}:{port} failed: {why}", host=attempt.key[1],
                     port=attempt.key[2], why=why)
        attempt.finish(MSRPSendError(CONNECTION_LOST, f"cannot connect: {why}"))

    def _handshake_failed(self, proto: MSRPProtocol, why: str) -> None:
        """An msrps connection failed its TLS handshake (certificate refused either way,
        an alert, not TLS at all, none within connect_timeout): logged once (at a bounded
        rate: peers can open many); an outbound one fails its waiters now, never to be
        reused; an inbound one just goes, nothing else affected."""
        attempt = proto.attempt
        if self._stopping:
            if attempt is not None:
                attempt.finish(MSRPSendError(CONNECTION_LOST, "MSRP stack stopped"))
            return
        core = proto.core
        peer = core.name if core is not None else "?"
        if attempt is not None:
            peer = f"{attempt.key[1]}:{attempt.key[2]}"
        may, unlogged = self.handshake_log.may_log(self.clock.seconds())
        if unlogged:
            log.info("{n} more failed MSRP TLS handshakes in the last minute (not logged)",
                     n=unlogged)
        if may:
            log.warn("MSRP TLS connection {direction} {peer} dropped: {why}",
                     direction="from" if attempt is None else "to", peer=peer, why=why)
        if attempt is not None:
            if self._outbound.get(attempt.key) is proto:
                del self._outbound[attempt.key]
            attempt.finish(MSRPSendError(CONNECTION_LOST,
                                         f"TLS connection to {peer} failed: {why}"))

    def _link_idle(self, core: LinkCore) -> None:
        log.debug("MSRP connection {name} idle, closing", name=core.name)

    def _link_gone(self, proto: MSRPProtocol) -> None:
        key = proto.outbound_key
        if key is not None and self._outbound.get(key) is proto:
            del self._outbound[key]

    def connection_count(self) -> int:
        return len(self._protocols)

    # -- shutdown ---------------------------------------------------------------------------
    def stop(self) -> defer.Deferred[None]:
        """Stop listening and close every connection; fires when all are gone."""
        waits: list[defer.Deferred[Any]] = []
        self._stopping = True
        if self.relay is not None:
            self.relay.stop()
        for lp in self._ports:
            port: Any = lp  # (IListeningPort: see MSRPProtocol.connectionMade)
            waits.append(defer.maybeDeferred(port.stopListening))
        self._ports.clear()
        self._listeners.clear()
        for attempt in list(self._connecting.values()):
            if attempt.connecting is not None:
                attempt.connecting.cancel()  # not connected yet: its waiters errback 503
        for proto in list(self._protocols):
            waits.append(proto.closed)
            proto.close()

        def stopped(_: object) -> None:
            self._stopping = False  # what is lost from now on is news again

        return defer.gatherResults(waits, consumeErrors=True).addCallback(stopped)


__all__ += ["SessionError", "DEFAULT_PORT", "MSRPProtocol"]
