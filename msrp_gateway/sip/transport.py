"""SIP over UDP, TCP and TLS (RFC 3261 s.18, RFC 3581, RFC 5923 reuse) on Twisted.

One ``SIPTransport`` controller is shared by every listener and connection, as
``twisted.names.server.DNSServerFactory`` serves both DNS transports: protocols only move
bytes (``connections``); framing is ``message.StreamParser``; the s.18 rules are pure
functions in ``peers`` and ``resolution``, TLS contexts in ``tls``. Here: listeners, the
connection table, delivery, the answer to a broken request. Time comes from the injected reactor.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Collection

from twisted.internet import defer, error
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from . import tls
from .connections import PONG, ClientFactory, DatagramProtocol, ServerFactory, StreamProtocol, write
from .message import (
    DEFAULT_LIMITS,
    Limits,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    make_response,
    parse_message,
    reason_phrase,
)
from .peers import (
    DEFAULT_PORTS,
    MTU_SIZE_LIMIT,
    Peer,
    TransportError,
    family,
    is_ip,
    parse_listen_string,
    response_peer,
    stamp_via,
)
from .dns import Located, SIPResolver, TargetsExhausted
from .resolution import NextHopCache

__all__ = ["ListenError", "Peer", "SIPTransport", "TransportError", "parse_listen_string", "DEFAULT_PORTS",
           "MTU_SIZE_LIMIT", "PONG"]

log = Logger()

MAX_UDP_SIZE = 65507
MALFORMED_LOG_PER_MINUTE = 100
UDP_ROUTE_ENTRIES = 65536  # peers remembered per UDP listener choice (oldest dropped)
UDP_BUFFER_BYTES = 4 * 1024 * 1024  # rides out a few ms of stall at 10k msg/s without drops
_COPIED = ("From", "To", "Call-ID", "CSeq")  # s.8.2.6.2: what a response copies, once each


class ListenError(error.CannotListenError, ValueError):
    """A SIP socket string we cannot listen on. A CannotListenError (what the service
    turns into its one-line StartupError, with ``socketError`` as the reason) and, for
    callers that checked the string, a ValueError; ``str()`` names the socket string."""

    def __init__(self, socket_string: str, host: str | None, port: int | None,
                 reason: object) -> None:
        super().__init__(host, port, reason)  # type: ignore[no-untyped-call]  # Twisted
        self.socket_string = socket_string

    def __str__(self) -> str:
        return f"cannot listen on SIP socket {self.socket_string!r}: {self.socketError}"


def _grow_buffers(port: Any) -> None:
    """Ask for large UDP socket buffers (the kernel caps them at net.core.rmem_max)."""
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, UDP_BUFFER_BYTES)
        except OSError:
            pass


def _error_response(request: SIPRequest, e: SIPParseError) -> SIPResponse | None:
    """The 4xx/5xx for a broken request, or None when no well-formed one exists.

    A response carries exactly one From, To, Call-ID and CSeq, copied from the request
    (s.8.1.1, s.8.2.6.2): values are echoed as sent, even malformed ones (RFC 4475 wants
    those answered 400), and of a repeated header the first is kept. A request missing
    one of them cannot be answered by a SIP response at all; it is dropped with a log
    line, as s.16.3/s.18.1.2 drop what cannot be answered, and the sender's Timer F ends it.
    """
    headers = request.headers
    firsts = {name: headers.get(name) for name in _COPIED}
    if any(value is None for value in firsts.values()):
        return None
    resp = make_response(request, e.code, reason_phrase(e.code))
    for name, value in firsts.items():
        if headers.count(name) > 1:
            resp.headers.set(name, value or "")
    warning = e.reason.replace("\\", "").replace('"', "'")[:200]
    resp.headers.add("Warning", f'399 msrpgw "{warning}"')
    return resp


class SIPTransport:
    """Listeners, the connection table, and the RFC 3261 s.18 rules shared by them all.

    ``on_message(msg, peer)`` receives every well-formed message (requests with
    received/rport already set on their top Via). ``tls_settings`` is any object with
    ``certificate``, ``private_key`` (PEM file paths), ``ca_certificates`` and
    ``verify_peers`` (e.g. ``config.TLSSettings``); it is needed only for ``tls:``.
    """

    def __init__(self, reactor: Any = None, tls_settings: Any = None, *,
                 limits: Limits = DEFAULT_LIMITS, max_connections: int = 1024,
                 idle_timeout: float | None = 120.0, connect_timeout: float = 10.0,
                 max_pending_per_connection: int = 256,
                 max_write_backlog: int = 4 * 1024 * 1024) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        self.reactor = reactor
        self.tls_settings = tls_settings
        self.limits = limits
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_pending_per_connection = max_pending_per_connection
        self.max_write_backlog = max_write_backlog
        self.on_message: Callable[[SIPRequest | SIPResponse, Peer], None] | None = None
        # told of every message that could not be parsed (answered or dropped here), for
        # core:err_requests / core:err_replies
        self.on_malformed: Callable[[SIPParseError], None] | None = None
        self._ports: list[tuple[Peer, IListeningPort, Any]] = []
        self._udp: dict[int, DatagramProtocol] = {}  # by address family
        # peer -> the UDP listener it last reached; empty with one UDP listener (one truth
        # test per datagram), a None key marks that there are several
        self._udp_listener_of: dict[Any, DatagramProtocol] = {}
        self._streams: set[StreamProtocol] = set()
        self._by_peer: dict[Peer, StreamProtocol] = {}
        self._connecting: dict[Peer, ClientFactory] = {}
        self._server_tls: Any = None
        self._client_tls: Any = None
        self._tls_names: dict[Peer, str] = {}  # resolved TLS peer -> the name to verify
        self._local_ip_cache: dict[tuple[int, str], str] = {}
        self._hops = NextHopCache()
        self._upgrade = False  # a TCP listener exists: large requests may move to TCP
        self._log_window = float("-inf")
        self._log_count = 0
        self._log_suppressed = 0

    # -- listening ---------------------------------------------------------------------

    def listen(self, socket_string: str) -> IListeningPort:
        """Start a listener from an OpenSIPS-style socket string. Every failure — a bad
        string, a host that is not an IP address, a taken port, unusable TLS files — is
        one ``ListenError`` (a CannotListenError, so start-up stops with one line naming
        the socket)."""
        try:
            local = parse_listen_string(socket_string)
        except ValueError as e:
            raise ListenError(socket_string, None, None, str(e)) from None
        if not is_ip(local.host):
            raise ListenError(socket_string, local.host, local.port,
                              f"{local.host!r} is not an IP address (a listening socket "
                              "takes an IP literal such as 127.0.0.1, 0.0.0.0 or [::1])")
        try:
            port, udp = self._open(local)
        except error.CannotListenError as e:
            raise ListenError(socket_string, local.host, local.port, e.socketError) from e
        except Exception as e:  # InvalidAddressError, OSError: anything the reactor raises
            raise ListenError(socket_string, local.host, local.port, e) from e
        bound = port.getHost()  # type: ignore[misc]  # zope: interface method read without self
        actual = Peer(local.transport, local.host, getattr(bound, "port", local.port) or local.port)
        if udp is not None:
            udp.local = actual
            if self._udp:
                self._udp_listener_of.setdefault(None, udp)  # now 2+: start routing
            self._udp.setdefault(family(local.host), udp)
        self._ports.append((actual, port, None))
        self._listeners_changed()
        log.info("SIP listening on {sock}", sock=str(actual))
        return port

    def _open(self, local: Peer) -> tuple[IListeningPort, DatagramProtocol | None]:
        """The reactor call for one listener (and its UDP protocol); raises whatever the
        reactor raises."""
        port: IListeningPort
        if local.transport == "udp":
            proto = DatagramProtocol(self, local)
            port = self.reactor.listenUDP(local.port, proto, interface=local.host,
                                          maxPacketSize=MAX_UDP_SIZE)
            _grow_buffers(port)
            return port, proto
        if local.transport == "tcp":
            port = self.reactor.listenTCP(local.port, ServerFactory(self, "tcp"),
                                          interface=local.host)
        else:
            try:
                context = self._server_context()
            except Exception as e:  # unreadable or mismatched PEM files
                reason = e if isinstance(e, TransportError) else TransportError(
                    f"bad TLS certificate or key: {e}")
                raise error.CannotListenError(  # type: ignore[no-untyped-call]  # Twisted
                    local.host, local.port, reason) from e
            port = self.reactor.listenSSL(local.port, ServerFactory(self, "tls"), context,
                                          interface=local.host)
        return port, None

    def _listeners_changed(self) -> None:
        self._upgrade = any(p.transport == "tcp" for p, _, _ in self._ports)

    @property
    def listening(self) -> list[Peer]:
        """Every listener as (transport, host, actual port)."""
        return [p for p, _, _ in self._ports]

    def _server_context(self) -> Any:
        if self._server_tls is None:
            self._server_tls = tls.server_options(self.tls_settings)
        return self._server_tls

    def _client_context(self, peer: Peer) -> Any:
        """Without ``verify_peers``: encrypt only (one shared context). With it: the
        server's chain must lead to ``ca_certificates`` and its certificate must name the
        host we resolved (or the IP we were given), RFC 5922-style."""
        settings = self.tls_settings
        if settings is not None and getattr(settings, "verify_peers", False) and \
                getattr(settings, "ca_certificates", ""):
            return tls.verifying_client_options(settings, self._tls_names.get(peer, peer.host))
        if self._client_tls is None:
            self._client_tls = tls.client_options(self.tls_settings)
        return self._client_tls

    def stop(self) -> defer.Deferred[None]:
        """Stop listening, close every connection and stop the resolver if one was made or
        set (its DNS queries fail, their timers and sockets go; stopping it again, as the
        service does just before, is harmless). For service shutdown and tests."""
        # zope declares interface methods without self, which mypy reads as unbound
        ds = [defer.maybeDeferred(port.stopListening)  # type: ignore[call-overload, misc]
              for _, port, _ in self._ports]
        resolver: SIPResolver | None = self.__dict__.get("_resolver")
        if resolver is not None:
            ds.append(defer.maybeDeferred(resolver.stop))
        self._ports.clear()
        self._listeners_changed()
        self._udp.clear()
        self._udp_listener_of.clear()
        for factory in list(self._connecting.values()):
            if factory.connector is not None and factory.connector.state == "connecting":
                factory.connector.stopConnecting()
            factory.failed("transport stopped")
        for conn in list(self._streams):
            conn.quiet = True
            conn.stop_idle_timer()
            conn.transport.abortConnection()
        return defer.gatherResults(ds, consumeErrors=True).addCallback(lambda _: None)

    # -- receiving ---------------------------------------------------------------------

    def _datagram_received(self, proto: DatagramProtocol, data: bytes, source: Peer) -> None:
        if self._udp_listener_of and self._udp_listener_of.get(source) is not proto:
            # several UDP listeners: answer each peer from the one it reached us on
            if len(self._udp_listener_of) >= UDP_ROUTE_ENTRIES:
                self._udp_listener_of.pop(next(iter(self._udp_listener_of)))
            self._udp_listener_of[source] = proto
        if data == b"\r\n\r\n" or data == b"\r\n":
            return  # keep-alive
        try:
            msg = parse_message(data, self.limits)
        except SIPParseError as e:
            self._bad_message(e, source)
            return
        self._deliver(msg, source, None)

    def _deliver(self, msg: SIPRequest | SIPResponse, source: Peer,
                 conn: StreamProtocol | None) -> None:
        if isinstance(msg, SIPRequest):
            try:
                via = stamp_via(msg, source)
            except SIPParseError as e:  # validated at parse, but keep the promise
                self._bad_message(e, source)
                return
            if conn is not None and (("alias" in via.params) or via.host == source.host):
                # RFC 5923: requests to the sender's sent-by may reuse this connection
                alias = Peer(source.transport, source.host,
                             via.port or DEFAULT_PORTS[source.transport])
                if alias not in self._by_peer:
                    self._by_peer[alias] = conn
                    conn.keys.add(alias)
        if self.on_message is None:
            log.warn("SIP message from {peer} dropped: no stack attached", peer=str(source))
            return
        try:
            self.on_message(msg, source)
        except Exception:
            log.failure("SIP stack failed on a message from {peer}", peer=str(source))

    def _bad_message(self, e: SIPParseError, source: Peer) -> None:
        """A request too broken to hand up: answer it when its Via is readable (s.18.2.1 /
        RFC 4475), else log and drop; responses are always dropped."""
        if self.on_malformed is not None:
            self.on_malformed(e)
        partial = e.message
        if isinstance(partial, SIPRequest) and partial.method != "ACK":
            try:
                stamp_via(partial, source)  # must be readable to answer
            except SIPParseError:
                partial = None
            resp = _error_response(partial, e) if partial is not None else None
            if resp is not None and partial is not None:
                try:
                    peer = self.response_peer(partial, source)
                except SIPParseError:
                    peer = source
                if self._may_log():
                    log.info("{code} to a malformed request from {peer}: {reason}",
                             code=e.code, peer=str(source), reason=e.reason)
                self.send(resp, peer).addErrback(lambda f: log.info(
                    "could not answer malformed request from {peer}: {err}",
                    peer=str(source), err=f.getErrorMessage()))
                return
        if self._may_log():
            log.info("dropped malformed SIP message from {peer}: {reason}", peer=str(source),
                     reason=e.reason)

    def _stream_failed(self, conn: StreamProtocol, e: SIPParseError) -> None:
        """A stream whose framing is lost (a message past ``max_message_size``, an
        unreadable Content-Length): the request is answered (513 Message Too Large, or
        400) over this connection when ``e`` carries what a response copies, then the
        connection is closed, since nothing after it can be framed."""
        assert conn.peer is not None
        if isinstance(e.message, SIPRequest):
            self._bad_message(e, conn.peer)  # written before the close below
        else:
            if self.on_malformed is not None:
                self.on_malformed(e)
            if self._may_log():
                log.info("closing {kind} connection from {peer}: {reason}", kind=conn.kind,
                         peer=str(conn.peer), reason=e.reason)
        conn.transport.loseConnection()

    def _may_log(self) -> bool:
        """At most ``MALFORMED_LOG_PER_MINUTE`` lines a minute about malformed input and
        failed TLS handshakes, so a flood of garbage cannot flood the log; the count of the
        rest is logged once."""
        now = self.reactor.seconds()
        if now - self._log_window >= 60.0:
            if self._log_suppressed:
                log.info("{n} more lines on malformed SIP input or failed TLS handshakes in "
                         "the last minute (not logged)",
                         n=self._log_suppressed)
            self._log_window, self._log_count, self._log_suppressed = now, 0, 0
        if self._log_count < MALFORMED_LOG_PER_MINUTE:
            self._log_count += 1
            return True
        self._log_suppressed += 1
        return False

    # -- connection table --------------------------------------------------------------

    def _connection_made(self, conn: StreamProtocol) -> None:
        """A TCP connection (or the TCP under a TLS one) is up: it counts against
        ``max_connections`` and ``stop()`` closes it; it is usable once ready."""
        self._streams.add(conn)
        if conn.ready:
            self._connection_ready(conn)

    def _connection_ready(self, conn: StreamProtocol) -> None:
        """TCP connected or TLS handshake completed: reusable, and the sends waiting for
        it go out."""
        assert conn.peer is not None
        keys = {conn.peer}
        if conn.outbound_key is not None:
            keys.add(conn.outbound_key)
        for key in keys:
            self._by_peer.setdefault(key, conn)
            conn.keys.add(key)
        factory = getattr(conn, "factory", None)
        if isinstance(factory, ClientFactory):
            factory.succeeded(conn)

    def _handshake_failed(self, conn: StreamProtocol, why: str) -> None:
        """A TLS connection closed before its handshake completed (certificate refused
        either way, an alert, no TLS, a timeout): the sends waiting for it errback
        TransportError now (the stack answers 503 or tries the next SRV target); it was
        never in the table, so nothing reuses it. One log line per connection (bounded
        like malformed input: a peer can open many)."""
        if conn.quiet:
            return
        factory = getattr(conn, "factory", None)
        outbound = isinstance(factory, ClientFactory)
        if self._may_log():
            log.info("TLS connection {direction} {peer} dropped: {why}",
                     direction="to" if outbound else "from", peer=str(conn.peer), why=why)
        if isinstance(factory, ClientFactory):
            factory.failed(why)

    def _connection_lost(self, conn: StreamProtocol) -> None:
        self._streams.discard(conn)
        for key in conn.keys:
            if self._by_peer.get(key) is conn:
                del self._by_peer[key]
        conn.keys.clear()

    @property
    def connection_count(self) -> int:
        return len(self._streams)

    # -- sending -----------------------------------------------------------------------

    def send(self, msg: SIPRequest | SIPResponse, peer: Peer) -> defer.Deferred[None]:
        """Write ``msg`` to ``peer``: UDP from our listener of that family; TCP/TLS over an
        open connection to/from that peer, else a new one. Errbacks TransportError."""
        data = msg.to_bytes()
        if peer.transport == "udp":
            return self._send_udp(data, peer)
        conn = self._by_peer.get(peer)
        if conn is not None:
            return write(conn, data)
        if isinstance(msg, SIPResponse):
            # s.18.2.2: the connection is gone; open one to received/sent-by
            try:
                via = msg.top_via
                peer = Peer(peer.transport, via.received or via.host,
                            via.port or DEFAULT_PORTS[peer.transport])
            except SIPParseError:
                pass
            conn = self._by_peer.get(peer)
            if conn is not None:
                return write(conn, data)
        return self._connect(peer).addCallback(write, data)

    def _send_udp(self, data: bytes, peer: Peer) -> defer.Deferred[None]:
        if len(data) > MAX_UDP_SIZE:
            return defer.fail(TransportError(f"{len(data)} bytes do not fit a UDP datagram"))
        proto = self._udp_listener_of.get(peer) or self._udp.get(family(peer.host))
        if proto is None or proto.transport is None:
            return defer.fail(TransportError(f"no UDP listener to send to {peer} from"))
        try:
            # zope stub noise again: IUDPTransport.write(packet, addr) is read without self
            proto.transport.write(data, (peer.host, peer.port))  # type: ignore[call-arg, arg-type, misc]
        except (OSError, error.MessageLengthError) as e:
            return defer.fail(TransportError(f"UDP send to {peer} failed: {e}"))
        return defer.succeed(None)

    def _connect(self, peer: Peer) -> defer.Deferred[StreamProtocol]:
        factory = self._connecting.get(peer)
        if factory is None:
            if len(self._streams) + len(self._connecting) >= self.max_connections:
                return defer.fail(TransportError(
                    f"cannot connect to {peer}: {self.max_connections} connections open"))
            factory = ClientFactory(self, peer)
            self._connecting[peer] = factory
            d: defer.Deferred[StreamProtocol] = defer.Deferred()
            factory.waiters.append(d)
            try:
                if peer.transport == "tls":
                    factory.connector = self.reactor.connectSSL(
                        peer.host, peer.port, factory, self._client_context(peer),
                        timeout=self.connect_timeout)
                else:
                    factory.connector = self.reactor.connectTCP(
                        peer.host, peer.port, factory, timeout=self.connect_timeout)
            except Exception as e:  # e.g. TLS settings missing or unreadable
                factory.failed(str(e))
            return d
        if len(factory.waiters) >= self.max_pending_per_connection:
            return defer.fail(TransportError(f"too many messages waiting for {peer}"))
        d = defer.Deferred()
        factory.waiters.append(d)
        return d

    # -- addressing --------------------------------------------------------------------

    def local_via(self, peer: Peer) -> tuple[str, str, int]:
        """(``UDP``/``TCP``/``TLS``, host, port) for the Via sent-by of a request to ``peer``:
        our listener of that transport and family (its IP, or the interface that routes to
        the peer when it listens on a wildcard address)."""
        fam = family(peer.host)
        for local, _, _ in self._ports:
            if local.transport == peer.transport and family(local.host) == fam:
                return local.transport.upper(), self._advertised(local.host, peer.host), local.port
        for local, _, _ in self._ports:
            if local.transport == peer.transport:
                return local.transport.upper(), self._advertised(local.host, peer.host), local.port
        conn = self._by_peer.get(peer)
        if conn is not None:
            here = conn.transport.getHost()
            return peer.transport.upper(), here.host, here.port
        raise TransportError(f"no {peer.transport} listener for a Via toward {peer}")

    def _advertised(self, host: str, toward: str) -> str:
        if host not in ("0.0.0.0", "::", ""):
            return host
        key = (family(toward), toward)
        cached = self._local_ip_cache.get(key)
        if cached is None:
            try:
                with socket.socket(key[0], socket.SOCK_DGRAM) as s:
                    s.connect((toward, 9))  # no packet is sent: only picks the route
                    cached = s.getsockname()[0]
            except OSError:
                cached = "127.0.0.1" if key[0] == socket.AF_INET else "::1"
            if len(self._local_ip_cache) < 1024:
                self._local_ip_cache[key] = cached
        return cached

    def response_peer(self, request: SIPRequest, source: Peer) -> Peer:
        """Where responses to ``request`` go (s.18.2.2, RFC 3581 s.4; ``peers.response_peer``)."""
        return response_peer(request, source)

    @property
    def resolver(self) -> SIPResolver:
        """The RFC 3263 locator of our requests' next hops (``dns.SIPResolver``), made on
        first use with the system's DNS servers; set it to use others (e.g.
        ``SIPResolver(reactor, servers=["127.0.0.1:5353"])``)."""
        found: SIPResolver | None = self.__dict__.get("_resolver")
        if found is None:
            found = self.__dict__["_resolver"] = SIPResolver(self.reactor)
        return found

    @resolver.setter
    def resolver(self, value: SIPResolver) -> None:
        self.__dict__["_resolver"] = value

    def resolve(self, uri_text: str, size: int = 0, *,
                exclude: Collection[Peer] = ()) -> defer.Deferred[Peer]:
        """Next hop for a request of ``size`` bytes to ``uri_text``: an IP host through
        ``resolution.next_hop`` (s.18.1.1, no DNS), a host name through RFC 3263
        (``self.resolver``: NAPTR, SRV, A/AAAA) among the transports we listen on. A large
        request moves from UDP to TCP only when we listen on TCP (else our Via could not
        name a TCP sent-by); without one, a request too large for UDP fails here.
        ``exclude``: peers this request already tried (RFC 3263 s.4.3), never returned —
        the resolver's next target, else ``dns.TargetsExhausted``. Errbacks TransportError."""
        try:
            transport, host, port, peer = self._hops.lookup(uri_text, size, self._upgrade)
        except TransportError as e:
            return defer.fail(e)
        if peer is not None:
            if peer in exclude:  # an IP host is a single target: there is no next one
                return defer.fail(TargetsExhausted(f"{peer} has been tried: no other "
                                                   f"target for {uri_text!r}"))
            return self._fits(peer, size)
        mine = frozenset(p.transport for p in self.listening)
        large = size > MTU_SIZE_LIMIT and self._upgrade
        families = {family(p.host) for p in self.listening}
        d = self.resolver.locate(uri_text, transports=mine or None, large=large,
                                 families=families, exclude=exclude or None)

        def located(where: Located) -> defer.Deferred[Peer]:
            if where.peer.transport == "tls":
                if len(self._tls_names) >= 4096:
                    self._tls_names.pop(next(iter(self._tls_names)))
                self._tls_names[where.peer] = where.name
            return self._fits(where.peer, size)

        return d.addCallback(located)

    def _fits(self, peer: Peer, size: int) -> defer.Deferred[Peer]:
        if peer.transport == "udp" and size > MAX_UDP_SIZE:
            return defer.fail(TransportError(
                f"a request of {size} bytes does not fit a UDP datagram "
                f"({MAX_UDP_SIZE} bytes) and there is no TCP listener to send it over"))
        return defer.succeed(peer)
