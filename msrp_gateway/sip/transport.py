"""SIP over UDP, TCP and TLS (RFC 3261 s.18, RFC 3581, RFC 5923 reuse) on Twisted.

One ``SIPTransport`` controller is shared by every listener and connection, as
``twisted.names.server.DNSServerFactory`` serves both DNS transports: protocols only move
bytes; framing is ``message.StreamParser``; received/rport, response routing, the 400 for a
broken request and the connection table live here. Time comes from the injected reactor.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IListeningPort, IPushProducer, IResolutionReceiver
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .message import (
    DEFAULT_LIMITS,
    Limits,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    StreamParser,
    make_response,
    parse_message,
    reason_phrase,
)
from .uri import parse_uri

__all__ = ["Peer", "SIPTransport", "TransportError", "parse_listen_string", "DEFAULT_PORTS",
           "MTU_SIZE_LIMIT"]

log = Logger()

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MTU_SIZE_LIMIT = 1300  # s.18.1.1: larger requests go over a congestion-controlled transport
MAX_UDP_SIZE = 65507
MALFORMED_LOG_PER_MINUTE = 100
UDP_ROUTE_ENTRIES = 65536  # peers remembered per UDP listener choice (oldest dropped)
PONG = b"\r\n"  # RFC 5626 s.3.5.1: one CRLF answers a double-CRLF ping


class TransportError(Exception):
    """A message could not be sent: no listener for that transport, connect failed, table
    full. The stack turns it into 503 (s.8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to; ``host`` is an IP address (no brackets) once
    resolved, ``transport`` one of ``udp``/``tcp``/``tls``."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen_string(text: str) -> Peer:
    """``udp:HOST:PORT`` / ``tcp:…`` / ``tls:…`` (IPv6 as ``[::1]``; port optional, 0 = any
    free port) -> Peer. Raises ValueError naming what was expected."""
    proto, sep, rest = text.strip().partition(":")
    proto = proto.lower()
    if not sep or proto not in DEFAULT_PORTS:
        raise ValueError(f"socket {text!r}: expected udp:HOST:PORT, tcp:HOST:PORT or tls:HOST:PORT")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"socket {text!r}: unterminated IPv6 reference")
        host, tail = rest[1:close], rest[close + 1:]
    else:
        host, _, port_text = rest.partition(":")
        tail = ":" + port_text if port_text else ""
    port = DEFAULT_PORTS[proto]
    if tail:
        if not tail.startswith(":") or not tail[1:].isdigit() or int(tail[1:]) > 65535:
            raise ValueError(f"socket {text!r}: expected a port 0..65535 after the host")
        port = int(tail[1:])
    if not host:
        raise ValueError(f"socket {text!r}: no host")
    return Peer(proto, host, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


UDP_BUFFER_BYTES = 4 * 1024 * 1024  # rides out a few ms of stall at 10k msg/s without drops


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


def _stamp_via(msg: SIPRequest, source: Peer) -> Any:
    """s.18.2.1 / RFC 3581 s.4: ``received`` when the sent-by differs from the source (and
    always with rport), ``rport`` filled with the source port when the client asked."""
    via = msg.top_via
    changed = False
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(source.port)
        via.params["received"] = source.host
        changed = True
    if changed:
        msg.set_top_via(via)
    return via


def _error_response(request: SIPRequest, e: SIPParseError) -> SIPResponse | None:
    """The 4xx/5xx for a broken request, or None when no well-formed one exists.

    A response must copy the request's From, To, Call-ID and CSeq (s.8.2.6.2); when they
    are missing or unreadable the answer would be as broken as the request, and a sender
    (ours included) discards an unparsable response. So such a request is dropped, as
    s.16.3/s.18.1.2 drop what cannot be answered, and the sender's Timer F ends it.
    """
    resp = make_response(request, e.code, reason_phrase(e.code))
    warning = e.reason.replace("\\", "").replace('"', "'")[:200]
    resp.headers.add("Warning", f'399 msrpgw "{warning}"')
    try:
        parse_message(resp.to_bytes())
    except SIPParseError:
        return None
    return resp


def _write(conn: Any, data: bytes) -> defer.Deferred[None]:
    try:
        conn.write(data)
    except TransportError as e:
        return defer.fail(e)
    return defer.succeed(None)


# -- protocols: bytes in, bytes out -------------------------------------------------------

class _DatagramProtocol(protocol.DatagramProtocol):
    def __init__(self, controller: SIPTransport, local: Peer) -> None:
        self.controller = controller
        self.local = local

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 - Twisted API
        self.controller._datagram_received(self, data, Peer("udp", addr[0], addr[1]))


@implementer(IPushProducer)
class _StreamProtocol(protocol.Protocol):
    """One TCP or TLS connection: frames messages, answers pings, closes when idle.

    It registers itself as the producer of its own writes, so Twisted tells it when the peer
    stops reading; what is written meanwhile is bounded by ``max_write_backlog``.
    """

    def __init__(self, controller: SIPTransport, kind: str, outbound_key: Peer | None) -> None:
        self.controller = controller
        self.kind = kind
        self.parser = StreamParser(controller.limits)
        self.peer: Peer | None = None
        self.outbound_key = outbound_key
        self.keys: set[Peer] = set()
        self._idle: Any = None
        self._pings = 0
        self._paused = False
        self._backlog = 0

    def connectionMade(self) -> None:  # noqa: N802
        addr = self.transport.getPeer()
        self.peer = Peer(self.kind, addr.host, addr.port)
        self.transport.registerProducer(self, True)
        self.controller._connection_made(self)
        self._touch()

    # IPushProducer: Twisted pauses us when its write buffer is full (the peer is slow).
    def pauseProducing(self) -> None:  # noqa: N802
        self._paused = True
        self._backlog = 0

    def resumeProducing(self) -> None:  # noqa: N802
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:  # noqa: N802
        pass

    def _touch(self) -> None:
        timeout = self.controller.idle_timeout
        if timeout is None:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(timeout)
        else:
            self._idle = self.controller.reactor.callLater(timeout, self._idle_close)

    def stop_idle_timer(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def _idle_close(self) -> None:
        self._idle = None
        log.debug("closing idle {kind} connection to {peer}", kind=self.kind, peer=self.peer)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._touch()
        try:
            events = self.parser.feed(data)
        except SIPParseError as e:
            log.info("closing {kind} connection from {peer}: {reason}", kind=self.kind,
                     peer=self.peer, reason=e.reason)
            self.transport.loseConnection()
            return
        if self.parser.pings != self._pings:
            for _ in range(self.parser.pings - self._pings):
                self.transport.write(PONG)
            self._pings = self.parser.pings
        assert self.peer is not None
        for event in events:
            if isinstance(event, SIPParseError):
                self.controller._bad_message(event, self.peer)
            else:
                self.controller._deliver(event, self.peer, self)

    def write(self, data: bytes) -> None:
        """Queue ``data``; raises TransportError (and drops the connection) when a peer
        that stopped reading would make us hold more than ``max_write_backlog`` bytes."""
        if self._paused:
            self._backlog += len(data)
            if self._backlog > self.controller.max_write_backlog:
                log.warn("{kind} peer {peer} stopped reading: closing the connection",
                         kind=self.kind, peer=str(self.peer))
                self.transport.abortConnection()
                raise TransportError(f"{self.peer} is not reading: connection closed")
        self._touch()
        self.transport.write(data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.stop_idle_timer()
        self.controller._connection_lost(self)


class _ServerFactory(protocol.ServerFactory):
    def __init__(self, controller: SIPTransport, kind: str) -> None:
        self.controller = controller
        self.kind = kind

    def buildProtocol(self, addr: Any) -> protocol.Protocol | None:  # noqa: N802
        if len(self.controller._streams) >= self.controller.max_connections:
            log.warn("{kind} connection from {addr} refused: {n} connections open",
                     kind=self.kind, addr=addr.host, n=len(self.controller._streams))
            return None
        p = _StreamProtocol(self.controller, self.kind, None)
        p.factory = self
        return p


class _ClientFactory(protocol.ClientFactory):
    """One outbound connection attempt; every send waiting for it is a waiter."""

    def __init__(self, controller: SIPTransport, target: Peer) -> None:
        self.controller = controller
        self.target = target
        self.waiters: list[defer.Deferred[_StreamProtocol]] = []
        self.done = False
        self.connector: Any = None

    def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802
        p = _StreamProtocol(self.controller, self.target.transport, self.target)
        p.factory = self
        return p

    def succeeded(self, conn: _StreamProtocol) -> None:
        self._finish(conn)

    def failed(self, why: str) -> None:
        self._finish(Failure(TransportError(f"cannot connect to {self.target}: {why}")))

    def _finish(self, result: Any) -> None:
        if self.done:
            return
        self.done = True
        self.controller._connecting.pop(self.target, None)
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        self.failed(reason.getErrorMessage())


# -- the controller ---------------------------------------------------------------------

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
        self._ports: list[tuple[Peer, IListeningPort, Any]] = []
        self._udp: dict[int, _DatagramProtocol] = {}  # by address family
        # peer -> the UDP listener it last reached; empty with one UDP listener (one truth
        # test per datagram), a None key marks that there are several
        self._udp_listener_of: dict[Any, _DatagramProtocol] = {}
        self._streams: set[_StreamProtocol] = set()
        self._by_peer: dict[Peer, _StreamProtocol] = {}
        self._connecting: dict[Peer, _ClientFactory] = {}
        self._server_tls: Any = None
        self._client_tls: Any = None
        self._tls_names: dict[Peer, str] = {}  # resolved TLS peer -> the name to verify
        self._local_ip_cache: dict[tuple[int, str], str] = {}
        self._log_window = float("-inf")
        self._log_count = 0
        self._log_suppressed = 0

    # -- listening ---------------------------------------------------------------------

    def listen(self, socket_string: str) -> IListeningPort:
        """Start a listener from an OpenSIPS-style socket string; raises ValueError on a bad
        string and CannotListenError on a taken port or unusable TLS files, so start-up
        fails with one line."""
        local = parse_listen_string(socket_string)
        if local.transport == "udp":
            proto = _DatagramProtocol(self, local)
            port = self.reactor.listenUDP(local.port, proto, interface=local.host,
                                          maxPacketSize=MAX_UDP_SIZE)
            _grow_buffers(port)
            if self._udp:
                self._udp_listener_of.setdefault(None, proto)  # now 2+: start routing
            self._udp.setdefault(_family(local.host), proto)
        elif local.transport == "tcp":
            port = self.reactor.listenTCP(local.port, _ServerFactory(self, "tcp"),
                                          interface=local.host)
        else:
            try:
                context = self._server_context()
            except Exception as e:  # unreadable or mismatched PEM files
                reason = e if isinstance(e, TransportError) else TransportError(
                    f"bad TLS certificate or key: {e}")
                raise error.CannotListenError(local.host, local.port, reason) from e
            port = self.reactor.listenSSL(local.port, _ServerFactory(self, "tls"), context,
                                          interface=local.host)
        bound = port.getHost()
        actual = Peer(local.transport, local.host, getattr(bound, "port", local.port) or local.port)
        if local.transport == "udp":
            proto.local = actual
        self._ports.append((actual, port, None))
        log.info("SIP listening on {sock}", sock=str(actual))
        return port

    @property
    def listening(self) -> list[Peer]:
        """Every listener as (transport, host, actual port)."""
        return [p for p, _, _ in self._ports]

    def _server_context(self) -> Any:
        if self._server_tls is None:
            self._server_tls = _tls_server_options(self.tls_settings)
        return self._server_tls

    def _client_context(self, peer: Peer) -> Any:
        """Without ``verify_peers``: encrypt only (one shared context). With it: the
        server's chain must lead to ``ca_certificates`` and its certificate must name the
        host we resolved (or the IP we were given), RFC 5922-style."""
        settings = self.tls_settings
        if settings is not None and getattr(settings, "verify_peers", False) and \
                getattr(settings, "ca_certificates", ""):
            return _tls_verifying_client_options(settings, self._tls_names.get(peer, peer.host))
        if self._client_tls is None:
            self._client_tls = _tls_client_options(self.tls_settings)
        return self._client_tls

    def stop(self) -> defer.Deferred[None]:
        """Stop listening and close every connection (for service shutdown and tests)."""
        ds = [defer.maybeDeferred(port.stopListening) for _, port, _ in self._ports]
        self._ports.clear()
        self._udp.clear()
        self._udp_listener_of.clear()
        for factory in list(self._connecting.values()):
            if factory.connector is not None and factory.connector.state == "connecting":
                factory.connector.stopConnecting()
            factory.failed("transport stopped")
        for conn in list(self._streams):
            conn.stop_idle_timer()
            conn.transport.abortConnection()
        return defer.gatherResults(ds, consumeErrors=True).addCallback(lambda _: None)

    # -- receiving ---------------------------------------------------------------------

    def _datagram_received(self, proto: _DatagramProtocol, data: bytes, source: Peer) -> None:
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
                 conn: _StreamProtocol | None) -> None:
        if isinstance(msg, SIPRequest):
            try:
                via = _stamp_via(msg, source)
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
        partial = e.message
        if isinstance(partial, SIPRequest) and partial.method != "ACK":
            try:
                _stamp_via(partial, source)  # must be readable to answer
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

    def _may_log(self) -> bool:
        """At most ``MALFORMED_LOG_PER_MINUTE`` lines a minute about malformed input, so a
        flood of garbage cannot flood the log; the count of the rest is logged once."""
        now = self.reactor.seconds()
        if now - self._log_window >= 60.0:
            if self._log_suppressed:
                log.info("{n} more malformed SIP messages in the last minute (not logged)",
                         n=self._log_suppressed)
            self._log_window, self._log_count, self._log_suppressed = now, 0, 0
        if self._log_count < MALFORMED_LOG_PER_MINUTE:
            self._log_count += 1
            return True
        self._log_suppressed += 1
        return False

    # -- connection table --------------------------------------------------------------

    def _connection_made(self, conn: _StreamProtocol) -> None:
        assert conn.peer is not None
        self._streams.add(conn)
        keys = {conn.peer}
        if conn.outbound_key is not None:
            keys.add(conn.outbound_key)
        for key in keys:
            self._by_peer.setdefault(key, conn)
            conn.keys.add(key)
        factory = getattr(conn, "factory", None)
        if isinstance(factory, _ClientFactory):
            factory.succeeded(conn)

    def _connection_lost(self, conn: _StreamProtocol) -> None:
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
            return _write(conn, data)
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
                return _write(conn, data)
        return self._connect(peer).addCallback(lambda c: c.write(data))

    def _send_udp(self, data: bytes, peer: Peer) -> defer.Deferred[None]:
        if len(data) > MAX_UDP_SIZE:
            return defer.fail(TransportError(f"{len(data)} bytes do not fit a UDP datagram"))
        proto = self._udp_listener_of.get(peer) or self._udp.get(_family(peer.host))
        if proto is None or proto.transport is None:
            return defer.fail(TransportError(f"no UDP listener to send to {peer} from"))
        try:
            proto.transport.write(data, (peer.host, peer.port))
        except (OSError, error.MessageLengthError) as e:
            return defer.fail(TransportError(f"UDP send to {peer} failed: {e}"))
        return defer.succeed(None)

    def _connect(self, peer: Peer) -> defer.Deferred[_StreamProtocol]:
        factory = self._connecting.get(peer)
        if factory is None:
            if len(self._streams) + len(self._connecting) >= self.max_connections:
                return defer.fail(TransportError(
                    f"cannot connect to {peer}: {self.max_connections} connections open"))
            factory = _ClientFactory(self, peer)
            self._connecting[peer] = factory
            d: defer.Deferred[_StreamProtocol] = defer.Deferred()
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
        fam = _family(peer.host)
        for local, _, _ in self._ports:
            if local.transport == peer.transport and _family(local.host) == fam:
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
        key = (_family(toward), toward)
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

    def _lookup(self, host: str, transport: str) -> defer.Deferred[str]:
        if getattr(self.reactor, "nameResolver", None) is not None:
            families = {_family(p.host) for p in self.listening if p.transport == transport}
            return _first_address(self.reactor, host, families)
        return defer.maybeDeferred(self.reactor.resolve, host)

    def response_peer(self, request: SIPRequest, source: Peer) -> Peer:
        """Where responses to ``request`` go (s.18.2.2, RFC 3581 s.4): back over the same
        connection for TCP/TLS; for UDP to maddr, else received:rport, else
        received:sent-by port."""
        if source.reliable:
            return source
        via = request.top_via
        maddr = via.params.get("maddr")
        if maddr:
            return Peer("udp", maddr.strip("[]"), via.port or DEFAULT_PORTS["udp"])
        host = via.received or via.host
        port = via.rport or via.port or DEFAULT_PORTS["udp"]
        return Peer("udp", host, port)

    def resolve(self, uri_text: str, size: int = 0) -> defer.Deferred[Peer]:
        """Next hop for a request to ``uri_text`` (RFC 3261 s.18.1.1 / RFC 3263 without
        NAPTR/SRV): transport from the ``transport`` param (sips: TLS; over 1300 bytes:
        TCP), host from ``maddr`` or the URI, names resolved without blocking."""
        try:
            uri = parse_uri(uri_text.strip().strip("<>"))
        except SIPParseError as e:
            return defer.fail(TransportError(f"cannot route to {uri_text!r}: {e.reason}"))
        transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        if uri.scheme == "sips" and transport == "tcp":
            transport = "tls"
        if transport not in DEFAULT_PORTS:
            return defer.fail(TransportError(f"unsupported transport {transport!r} in {uri_text!r}"))
        if transport == "udp" and size > MTU_SIZE_LIMIT:
            transport = "tcp"
        host = uri.param("maddr") or uri.host
        port = uri.port or DEFAULT_PORTS[transport]
        if _is_ip(host.strip("[]")):
            return defer.succeed(Peer(transport, host.strip("[]"), port))
        d = self._lookup(host, transport)

        def resolved(ip: str) -> Peer:
            peer = Peer(transport, ip, port)
            if transport == "tls":
                if len(self._tls_names) >= 4096:
                    self._tls_names.pop(next(iter(self._tls_names)))
                self._tls_names[peer] = host
            return peer

        def failed(f: Failure) -> Failure:
            return Failure(TransportError(f"cannot resolve {host!r}: {f.getErrorMessage()}"))

        return d.addCallback(resolved).addErrback(failed)


def _first_address(reactor: Any, host: str, families: set[int]) -> defer.Deferred[str]:
    """The first address ``host`` resolves to (A or AAAA) in one of ``families`` (those we
    listen on; any if none fits), through the reactor's pluggable resolver (getaddrinfo in
    the thread pool: the reactor never blocks)."""
    d: defer.Deferred[str] = defer.Deferred()
    found: list[str] = []

    @implementer(IResolutionReceiver)
    class Receiver:
        def resolutionBegan(self, resolution: Any) -> None:  # noqa: N802
            pass

        def addressResolved(self, address: Any) -> None:  # noqa: N802
            found.append(address.host)

        def resolutionComplete(self) -> None:  # noqa: N802
            usable = [a for a in found if _family(a) in families] or found
            if usable:
                d.callback(usable[0])
            else:
                d.errback(TransportError(f"{host!r} has no address"))

    reactor.nameResolver.resolveHostName(Receiver(), host)
    return d


# -- TLS context factories -------------------------------------------------------------

def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TransportError(f"cannot read the TLS {what} {path!r}: {e.strerror}") from None


def _tls_server_options(settings: Any) -> Any:
    """CertificateOptions for ``tls:`` listeners from PEM certificate and key files."""
    from twisted.internet import ssl

    if settings is None or not getattr(settings, "certificate", "") or \
            not getattr(settings, "private_key", ""):
        raise TransportError("tls: sockets need [tls] certificate and private_key")
    cert = ssl.PrivateCertificate.loadPEM(
        _read(settings.certificate, "certificate") + b"\n" + _read(settings.private_key, "private key"))
    kwargs: dict[str, Any] = {}
    ca_path = getattr(settings, "ca_certificates", "")
    if getattr(settings, "verify_peers", False) and ca_path:
        kwargs = {"verify": True, "caCerts": _load_cas(ca_path), "requireCertificate": True}
    return cert.options(**kwargs) if not kwargs else ssl.CertificateOptions(
        privateKey=cert.privateKey.original, certificate=cert.original, **kwargs)


def _tls_client_options(settings: Any) -> Any:
    """Client options: verify the server against ``ca_certificates`` when ``verify_peers``
    is set, else encrypt without verification (SIP peers often use self-signed certs)."""
    from twisted.internet import ssl

    kwargs: dict[str, Any] = {}
    if settings is not None and getattr(settings, "certificate", "") and \
            getattr(settings, "private_key", ""):
        cert = ssl.PrivateCertificate.loadPEM(
            _read(settings.certificate, "certificate") + b"\n"
            + _read(settings.private_key, "private key"))
        kwargs["privateKey"] = cert.privateKey.original
        kwargs["certificate"] = cert.original
    ca_path = getattr(settings, "ca_certificates", "") if settings is not None else ""
    if settings is not None and getattr(settings, "verify_peers", False) and ca_path:
        kwargs.update(verify=True, caCerts=_load_cas(ca_path))
    return ssl.CertificateOptions(**kwargs)


def _tls_verifying_client_options(settings: Any, hostname: str) -> Any:
    """optionsForClientTLS: chain to ``ca_certificates`` and the name (DNS or IP SAN)."""
    from twisted.internet import ssl

    cas = [ssl.Certificate(c) for c in _load_cas(settings.ca_certificates)]
    client_cert = None
    if getattr(settings, "certificate", "") and getattr(settings, "private_key", ""):
        client_cert = ssl.PrivateCertificate.loadPEM(
            _read(settings.certificate, "certificate") + b"\n"
            + _read(settings.private_key, "private key"))
    return ssl.optionsForClientTLS(hostname, trustRoot=ssl.trustRootFromCertificates(cas),
                                   clientCertificate=client_cert)


def _load_cas(path: str) -> list[Any]:
    from OpenSSL import crypto

    data = _read(path, "CA bundle")
    cas = []
    marker = b"-----END CERTIFICATE-----"
    for chunk in data.split(marker):
        if b"-----BEGIN CERTIFICATE-----" in chunk:
            cas.append(crypto.load_certificate(crypto.FILETYPE_PEM, chunk + marker))
    if not cas:
        raise TransportError(f"no certificate in the CA bundle {path!r}")
    return cas
