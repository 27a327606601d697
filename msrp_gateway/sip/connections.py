"""The Twisted protocols of the SIP transport: bytes in, bytes out, nothing decided here.

UDP datagrams and framed stream messages go straight to the one controller
(``transport.SIPTransport``), which owns the rules and the connection table; these classes
are its parts and call its hooks (``_datagram_received``, ``_deliver``, ``_bad_message``,
``_stream_failed``, ``_connection_made``, ``_connection_ready``, ``_handshake_failed``,
``_connection_lost``).

A TLS connection is *ready* only once its handshake has completed (``IHandshakeListener``):
until then nothing is written to it, it is not in the table for reuse, and its loss is a
handshake failure — the sends waiting for it errback at once instead of waiting for Timer F.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]  # no stubs

from .message import SIPParseError, StreamParser
from .peers import Peer, TransportError

if TYPE_CHECKING:
    from .transport import SIPTransport

__all__ = ["PONG", "ClientFactory", "DatagramProtocol", "ServerFactory", "StreamProtocol",
           "write"]

log = Logger(namespace="msrp_gateway.sip.transport")  # one namespace for the whole transport

PONG = b"\r\n"  # RFC 5626 s.3.5.1: one CRLF answers a double-CRLF ping


# TLS 1.3: a server checks our certificate after our side of the handshake is complete,
# so its refusal (an alert) comes one round trip later. Sends over a new outbound TLS 1.3
# connection are reported written once the peer has sent us something, or after this long
# without its refusal (on the injected clock).
TLS_CONFIRM_WINDOW = 2.0


def write(conn: StreamProtocol, data: bytes) -> defer.Deferred[None]:
    """``conn.write`` as a Deferred: errbacks TransportError past the write backlog, or
    when a TLS 1.3 peer refuses our certificate right after the handshake."""
    try:
        conn.write(data)
    except TransportError as e:
        return defer.fail(e)
    return conn.written()


class DatagramProtocol(protocol.DatagramProtocol):
    def __init__(self, controller: SIPTransport, local: Peer) -> None:
        self.controller = controller
        self.local = local

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 - Twisted API
        self.controller._datagram_received(self, data, Peer("udp", addr[0], addr[1]))


@implementer(IPushProducer, IHandshakeListener)
class StreamProtocol(protocol.Protocol):
    """One TCP or TLS connection: frames messages, answers pings, closes when idle.

    It registers itself as the producer of its own writes, so Twisted tells it when the peer
    stops reading; what is written meanwhile is bounded by ``max_write_backlog``. A TLS
    connection is ``ready`` after its handshake, which must end within ``connect_timeout``.
    """

    transport: Any  # ITransport & ITCPTransport once connected (zope stubs cannot say so)

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
        self.ready = kind != "tls"  # TLS: once the handshake has completed
        self.quiet = False  # closed by the transport's stop(): its loss is not news
        self._handshake: Any = None  # the handshake's deadline
        self._why: str | None = None  # why we closed it, when we know better than Twisted
        # outbound TLS 1.3 until the peer is heard or TLS_CONFIRM_WINDOW passes: the sends
        # written meanwhile, reported once we know the peer did not refuse our certificate
        self._unconfirmed: list[defer.Deferred[None]] | None = None
        self._confirm_timer: Any = None

    def connectionMade(self) -> None:  # noqa: N802
        addr = self.transport.getPeer()
        self.peer = Peer(self.kind, addr.host, addr.port)
        self.transport.registerProducer(self, True)
        self.controller._connection_made(self)
        if not self.ready:
            self._handshake = self.controller.reactor.callLater(
                self.controller.connect_timeout, self._handshake_timeout)
        self._touch()

    # IHandshakeListener: TLS only
    def handshakeCompleted(self) -> None:  # noqa: N802
        if self.ready or getattr(self.transport, "disconnecting", False):
            return  # already failed (e.g. a name check that aborted it): not usable
        self._cancel_handshake_timer()
        self.ready = True
        if self.outbound_key is not None and _is_tls13(self.transport):
            self._unconfirmed = []
            self._confirm_timer = self.controller.reactor.callLater(
                TLS_CONFIRM_WINDOW, self._confirm)
        self.controller._connection_ready(self)

    def written(self) -> defer.Deferred[None]:
        """The outcome of the write just made: at once, except on an outbound TLS 1.3
        connection still in its confirmation window (see ``TLS_CONFIRM_WINDOW``)."""
        waiting = self._unconfirmed
        if waiting is None or len(waiting) >= self.controller.max_pending_per_connection:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        waiting.append(d)
        return d

    def _confirm(self) -> None:
        """The peer spoke, or did not refuse us in time: the waiting sends went out."""
        if self._confirm_timer is not None and self._confirm_timer.active():
            self._confirm_timer.cancel()
        self._confirm_timer = None
        waiting, self._unconfirmed = self._unconfirmed, None
        for d in waiting or ():
            d.callback(None)

    def _handshake_timeout(self) -> None:
        self._handshake = None
        self._why = f"no TLS handshake within {self.controller.connect_timeout:g} s"
        self.transport.abortConnection()

    def _cancel_handshake_timer(self) -> None:
        if self._handshake is not None and self._handshake.active():
            self._handshake.cancel()
        self._handshake = None

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
        """Cancel this connection's timers (idle, and the handshake deadline)."""
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self._cancel_handshake_timer()
        if self._confirm_timer is not None and self._confirm_timer.active():
            self._confirm_timer.cancel()
        self._confirm_timer = None

    def _idle_close(self) -> None:
        self._idle = None
        log.debug("closing idle {kind} connection to {peer}", kind=self.kind, peer=self.peer)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._unconfirmed is not None:
            self._confirm()
        self._touch()
        try:
            events = self.parser.feed(data)
        except SIPParseError as e:
            self.controller._stream_failed(self, e)
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
        self.controller._connection_lost(self)  # out of the table before anyone hears of it
        if not self.ready:
            self.controller._handshake_failed(self, self._why or _tls_reason(reason))
        elif self._unconfirmed is not None:
            self._lost_unconfirmed(reason)

    def _lost_unconfirmed(self, reason: Failure) -> None:
        """Lost in the TLS 1.3 confirmation window without a word from the peer: a TLS
        error then is the peer refusing our certificate (or another alert), and what we
        wrote was never read — those sends fail now. Any other loss leaves them sent."""
        waiting, self._unconfirmed = self._unconfirmed or [], None
        if not _is_tls_error(reason) or self.quiet:
            for d in waiting:
                d.callback(None)
            return
        why = _tls_reason(reason) + " (after our handshake: our certificate refused?)"
        self.controller._handshake_failed(self, why)
        error = TransportError(f"TLS connection to {self.peer} dropped: {why}")
        for d in waiting:
            d.errback(error)


def _is_tls13(transport: Any) -> bool:
    try:
        return bool(transport.getHandle().get_protocol_version_name() == "TLSv1.3")
    except Exception:  # not a TLS transport (tests' fakes): no window
        return False


def _is_tls_error(reason: Failure) -> bool:
    from OpenSSL import SSL

    return isinstance(reason.value, SSL.Error)


def _tls_reason(reason: Failure) -> str:
    """A short sentence for a lost handshake: OpenSSL's reasons, a failed name check."""
    value = reason.value
    mismatched = [getattr(e, "mismatched_id", None) for e in getattr(value, "errors", ())]
    names = [getattr(m, "hostname", None) or getattr(m, "ip", None) for m in mismatched]
    if names and all(names):  # service_identity's VerificationError: the name check
        shown = ", ".join(n.decode("ascii", "replace") if isinstance(n, bytes) else str(n)
                          for n in names)
        return f"TLS handshake failed: the peer's certificate does not name {shown}"
    errors = getattr(value, "args", None)
    if errors and isinstance(errors[0], list) and errors[0] and \
            isinstance(errors[0][0], tuple):  # OpenSSL.SSL.Error: [(lib, func, reason)]
        return "TLS handshake failed: " + "; ".join(str(e[-1]) for e in errors[0])
    return f"TLS handshake failed: {reason.getErrorMessage()}"


class ServerFactory(protocol.ServerFactory):
    def __init__(self, controller: SIPTransport, kind: str) -> None:
        self.controller = controller
        self.kind = kind

    def buildProtocol(self, addr: Any) -> protocol.Protocol | None:  # noqa: N802
        if self.controller.connection_count >= self.controller.max_connections:
            log.warn("{kind} connection from {addr} refused: {n} connections open",
                     kind=self.kind, addr=addr.host, n=self.controller.connection_count)
            return None
        p = StreamProtocol(self.controller, self.kind, None)
        p.factory = self
        return p


class ClientFactory(protocol.ClientFactory):
    """One outbound connection attempt; every send waiting for it is a waiter."""

    def __init__(self, controller: SIPTransport, target: Peer) -> None:
        self.controller = controller
        self.target = target
        self.waiters: list[defer.Deferred[StreamProtocol]] = []
        self.done = False
        self.connector: Any = None

    def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802
        p = StreamProtocol(self.controller, self.target.transport, self.target)
        p.factory = self
        return p

    def succeeded(self, conn: StreamProtocol) -> None:
        self._finish(conn)

    def failed(self, why: str) -> None:
        self._finish(TransportError(f"cannot connect to {self.target}: {why}"))

    def _finish(self, result: StreamProtocol | TransportError) -> None:
        if self.done:
            return
        self.done = True
        self.controller._connecting.pop(self.target, None)
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if isinstance(result, TransportError):
                d.errback(result)
            else:
                d.callback(result)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        self.failed(reason.getErrorMessage())
