"""The Twisted side of MSRP connections: bytes in, bytes out, nothing decided here.

`MSRPProtocol` moves bytes between one socket and its `link.LinkCore` (all MSRP logic
lives there) and gates msrps connections on their TLS handshake; `InboundFactory` builds
accepted ones (bounded by `max_connections`), `OutboundFactory` is one connection attempt
to a next hop and everyone waiting for it. They are parts of `transport.MSRPStack`, which
owns the connection tables and the rules, and call its hooks (`_outbound_ready`,
`_handshake_failed`, `_link_gone`, `_link_idle`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]  # no py.typed

from .message import FrameParser
from .rules import Timer
from .session import CONNECTION_LOST, LinkCore, MSRPSendError
from .tls import handshake_failure, is_tls_error, negotiated_tls13, peer_certificate_der

if TYPE_CHECKING:
    from .transport import MSRPStack

__all__ = ["InboundFactory", "Key", "MSRPProtocol", "OutboundFactory"]

log = Logger(namespace="msrp_gateway.msrp.transport")  # one namespace for the whole transport

# Outbound connections are shared per (msrps?, host, port, pinned): a connection opened
# without CA verification for a fingerprint-pinned peer never carries an unpinned session.
Key = tuple[bool, str, int, bool]


@implementer(IPushProducer, IHandshakeListener)
class MSRPProtocol(Protocol):
    """Bytes in and out of one `LinkCore`; the core pauses when the socket is full.

    A TLS connection (`secure`) is usable only once its handshake has completed, which
    must happen within the stack's `connect_timeout` (on its clock): until then an
    outbound one is not handed to anyone, and a handshake that fails or never ends is
    reported to the stack (`_handshake_failed`) once, then the connection is dropped.
    """

    def __init__(self, stack: MSRPStack, outbound_key: Key | None, secure: bool = False,
                 attempt: OutboundFactory | None = None) -> None:
        self.stack = stack
        self.outbound_key = outbound_key
        self.secure = secure
        self.attempt = attempt
        self.core: LinkCore | None = None
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.handshaken = False
        self.failed = False  # a handshake failure was reported (once)
        self.heard = False  # the peer has sent us application data
        self.tls13 = False  # an outbound TLS 1.3 connection (see connectionLost)
        self._deadline: Timer | None = None
        self._handshake_waiters: list[defer.Deferred[None]] = []

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the peer's certificate (if any) is known from now on."""
        transport: Any = self.transport
        if self.handshaken or self.failed or getattr(transport, "disconnecting", False):
            return  # already failed (a name check aborts after the handshake): unusable
        self._cancel_deadline()
        self.handshaken = True
        self.tls13 = self.attempt is not None and negotiated_tls13(transport)
        waiters, self._handshake_waiters = self._handshake_waiters, []
        for d in waiters:
            d.callback(None)
        if self.attempt is not None:
            self.stack._outbound_ready(self)

    def when_handshaken(self) -> defer.Deferred[None]:
        """Fires once the TLS handshake is done; errbacks if the connection goes first."""
        if self.handshaken:
            return defer.succeed(None)
        if self.closed.called or self.failed:
            return defer.fail(MSRPSendError(CONNECTION_LOST, "connection lost before the "
                                            "TLS handshake completed"))
        d: defer.Deferred[None] = defer.Deferred()
        self._handshake_waiters.append(d)
        return d

    def peer_certificate(self) -> bytes | None:
        """The DER certificate the peer presented (None: none, or not TLS)."""
        return peer_certificate_der(self.transport)

    def connectionMade(self) -> None:
        # Without the mypy-zope plugin, ITransport's methods read as functions that take no
        # self; the transport is a real one here, so it is handled as Any.
        transport: Any = self.transport
        peer = transport.getPeer()
        name = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.core = LinkCore(self.stack.clock, self.stack.table, self.stack.settings,
                             FrameParser(self.stack.limits), transport.write,
                             self.close, self.stack._link_idle, name,
                             own_uri=self.stack._own_uri, counters=self.stack.counters)
        transport.registerProducer(self, True)
        self.stack._protocols.add(self)
        self.stack._by_core[self.core] = self
        if self.secure and not self.handshaken:
            self._deadline = self.stack.clock.callLater(self.stack.connect_timeout,
                                                        self._handshake_timeout)
        elif self.attempt is not None:
            self.stack._outbound_ready(self)

    def _handshake_timeout(self) -> None:
        """No handshake within connect_timeout: report it now (exactly at the deadline),
        then drop the connection."""
        self._deadline = None
        if self.handshaken or self.failed:
            return
        self._fail(f"no TLS handshake within {self.stack.connect_timeout:g} s")
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _fail(self, why: str) -> None:
        if not self.failed:
            self.failed = True
            self.stack._handshake_failed(self, why)

    def close(self) -> None:
        """Close after what is written; a registered producer would hold TLS open."""
        transport: Any = self.transport  # (ITransport: see connectionMade)
        if transport is None:
            return
        try:
            transport.unregisterProducer()
        except RuntimeError:
            pass
        transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self.heard = True
        if self.core is not None:
            self.core.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_deadline()
        why = reason.getErrorMessage()
        if self.secure and not self.handshaken:
            self._fail(handshake_failure(reason))
        elif self.secure and self.attempt is not None and not self.heard \
                and self.tls13 and is_tls_error(reason):
            # TLS 1.3: a server refuses our certificate after our handshake completed;
            # its alert is the first thing we hear. Report it like a failed handshake.
            why = handshake_failure(reason) + " (after our handshake: our certificate " \
                "refused?)"
            self._fail(why)
        self.stack._protocols.discard(self)
        self.stack._link_gone(self)
        if self.core is not None:
            self.stack._by_core.pop(self.core, None)
            self.core.connection_lost(why)
        waiters, self._handshake_waiters = self._handshake_waiters, []
        for d in waiters:
            d.errback(MSRPSendError(CONNECTION_LOST, "TLS handshake failed: "
                                    f"{reason.getErrorMessage()}"))
        self.closed.callback(None)

    # IPushProducer: the transport tells us when its buffer is full and when it drained.
    def pauseProducing(self) -> None:
        if self.core is not None:
            self.core.pause()

    def resumeProducing(self) -> None:
        if self.core is not None:
            self.core.resume()

    def stopProducing(self) -> None:
        pass


class InboundFactory(Factory):
    """Accepted connections, past `max_connections` refused (the reactor closes them)."""

    def __init__(self, stack: MSRPStack, secure: bool = False) -> None:
        self.stack = stack
        self.secure = secure

    def buildProtocol(self, addr: Any) -> MSRPProtocol | None:
        limit = self.stack.settings.max_connections
        if len(self.stack._protocols) >= limit:
            log.warn("MSRP connection from {addr} refused: {n} connections open "
                     "(max_connections)", addr=addr, n=limit)
            return None  # the reactor closes it
        return MSRPProtocol(self.stack, None, self.secure)


class OutboundFactory(Factory):
    """One outbound connection attempt to a next hop, and everyone waiting for it: they
    get its `LinkCore` once it is usable (TCP connected; TLS: handshake completed) or one
    `MSRPSendError` when it is not."""

    def __init__(self, stack: MSRPStack, key: Key) -> None:
        self.stack = stack
        self.key = key
        self.waiters: list[defer.Deferred[LinkCore]] = []
        self.connecting: defer.Deferred[Any] | None = None  # the endpoint's connect()
        self.done = False

    def buildProtocol(self, addr: Any) -> MSRPProtocol:
        return MSRPProtocol(self.stack, self.key, self.key[0], self)

    def finish(self, result: LinkCore | MSRPSendError) -> None:
        if self.done:
            return
        self.done = True
        if self.stack._connecting.get(self.key) is self:
            del self.stack._connecting[self.key]
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if isinstance(result, MSRPSendError):
                d.errback(result)
            else:
                d.callback(result)

