"""Event interface: published event names, subscriptions with expiry, delivery.

Works like OpenSIPS' event interface with event_datagram and event_stream: a
subscriber names an event and a socket (``udp:HOST:PORT`` or
``tcp:HOST:PORT[/method]``); every raise sends one compact JSON-RPC 2.0
notification to each live subscriber.  Expiry runs on the injected clock and is
checked lazily (no timers to leak); a subscriber that is down costs at most a
bounded queue and a backed-off reconnect, and never blocks the reactor or the
other subscribers.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer  # type: ignore[import-untyped]  # no py.typed

from .sockets import MAX_SOCKET_LENGTH, SocketStringError, parse_socket_string

__all__ = [
    "EVENT_SETUP_FAILED",
    "DEFAULT_EXPIRE",
    "CLOSE_GRACE",
    "EventError",
    "SocketSpec",
    "Subscription",
    "EventBus",
    "parse_socket",
    "encode_notification",
]

log = Logger()

EVENT_SETUP_FAILED = "E_MSRP_GW_SETUP_FAILED"
#: OpenSIPS' DEFAULT_EXPIRE for event_subscribe without an expire parameter.
DEFAULT_EXPIRE = 3600
_SOCKET_PROTOCOLS: dict[str, int | None] = {"udp": None, "tcp": None}  # port required
_METHOD_PROTOCOLS = frozenset({"tcp"})
# What a subscriber is told, by the part of its socket string that is wrong.
_SOCKET_PROBLEMS = {
    "protocol": "transport must be udp: or tcp:",
    "host": "host must be an IP address (IPv6 in brackets)",
    "port": "expected HOST:PORT with a port 1-65535",
    "method": "/method is only for tcp: and is letters, digits or '_-.:'",
}
MAX_EVENT_NAME_LENGTH = 128
#: Largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
#: Seconds a closing tcp: connection may take to send what it holds before it is
#: aborted (a peer that stopped reading would otherwise keep it open for ever).
CLOSE_GRACE = 1.0


class _Timer(Protocol):
    """A pending call (`IDelayedCall`), typed here: without the mypy-zope plugin, mypy
    reads a zope interface's methods as taking no self."""

    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class _Clock(Protocol):
    """The part of `IReactorTime` the bus uses (any reactor or `task.Clock`)."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, callable: Callable[..., object], *args: object,
                  **kw: object) -> _Timer: ...


class EventError(Exception):
    """A subscription request we refuse; ``str()`` says why, for the log."""


@dataclass(slots=True, frozen=True)
class SocketSpec:
    """A parsed subscriber socket; ``str()`` gives it back in canonical form."""

    transport: str  # "udp" | "tcp"
    host: str  # an IP literal, IPv6 without brackets
    port: int
    method: str | None = None  # tcp only: replaces the event name on the wire

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.transport}:{host}:{self.port}"
        if self.method:
            text += f"/{self.method}"
        return text

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def ipv6(self) -> bool:
        return ":" in self.host


def parse_socket(text: str) -> SocketSpec:
    """Parse ``udp:HOST:PORT`` / ``tcp:HOST:PORT[/method]``; raise EventError.

    HOST must be an IP literal (IPv6 in brackets): resolving names here would
    block, and OpenSIPS' clients (opensips-event) always send an address.
    """
    if not isinstance(text, str) or not text or len(text) > MAX_SOCKET_LENGTH:
        raise EventError("socket must be a non-empty string of at most "
                         f"{MAX_SOCKET_LENGTH} characters")
    try:
        addr = parse_socket_string(text, _SOCKET_PROTOCOLS, names=False, min_port=1,
                                   methods=_METHOD_PROTOCOLS)
    except SocketStringError as e:
        raise EventError(f"socket {text!r}: {_SOCKET_PROBLEMS.get(e.part, e.expected)}"
                         ) from None
    return SocketSpec(addr.protocol, addr.host, addr.port, addr.method)


def encode_notification(method: str, params: Any) -> bytes:
    """The compact JSON-RPC 2.0 notification subscribers receive (no ``id``)."""
    return json.dumps(
        {"jsonrpc": "2.0", "method": method, "params": params},
        separators=(",", ":"), ensure_ascii=False, default=str,
    ).encode("utf-8")


@dataclass(slots=True)
class Subscription:
    """One subscriber of one event; ``expires_at`` is on the injected clock."""

    event: str
    socket: SocketSpec
    expire: int
    expires_at: float

    def ttl(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.999))


# --- delivery -----------------------------------------------------------------


class _UDPSender(protocol.DatagramProtocol):
    """One unconnected UDP socket shared by every udp: subscriber of a family."""

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        pass  # subscribers do not talk back; anything received is ignored

    def send(self, payload: bytes, addr: tuple[str, int]) -> None:
        # Any: IUDPTransport's zope methods read as taking no self (no mypy-zope plugin).
        transport: Any = self.transport
        if transport is None:
            return
        try:
            transport.write(payload, addr)
        except OSError as e:  # e.g. EHOSTUNREACH, ENOBUFS: never propagate
            log.warn("event datagram to {addr} failed: {err}", addr=addr, err=e)

    def connectionRefused(self) -> None:
        pass


class _StreamProtocol(protocol.Protocol):
    def __init__(self, target: "_TCPTarget") -> None:
        self.target = target

    @property
    def conn(self) -> Any:
        """The connected transport: set before connectionMade, so never None where used;
        Any because ITransport's zope methods read as taking no self (no mypy-zope)."""
        return self.transport

    def connectionMade(self) -> None:
        self.target._connected(self)

    def dataReceived(self, data: bytes) -> None:
        pass  # OpenSIPS' event_stream reads replies but acts on none; we drop them

    def connectionLost(self, reason: Any = None) -> None:
        self.target._lost(self)


class _StreamFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, target: "_TCPTarget") -> None:
        self.target = target

    def buildProtocol(self, addr: Any) -> _StreamProtocol:
        return _StreamProtocol(self.target)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.target._failed(reason)


@implementer(IPushProducer)
class _TCPTarget:
    """A kept-open connection to one tcp: subscriber, with a bounded queue.

    Notifications go back to back on the connection.  While it is being
    (re)opened, or while the peer does not read (the transport pauses us),
    they wait in a queue of at most ``queue_limit`` entries; beyond that the
    oldest are dropped and counted.  A failed connect waits ``backoff``
    seconds (doubling up to ``max_backoff``) before the next try.
    """

    def __init__(self, bus: "EventBus", spec: SocketSpec) -> None:
        self.bus = bus
        self.spec = spec
        self.queue: deque[bytes] = deque()
        self.proto: _StreamProtocol | None = None
        self.connecting = False
        self.paused = False
        self.closed = False
        self.dropped = 0
        self.backoff = bus.retry_delay
        self.retry_call: _Timer | None = None
        self.connector: Any = None
        self.lost_waiters: list[defer.Deferred[None]] = []
        self.abort_call: _Timer | None = None

    def send(self, payload: bytes) -> None:
        if self.closed:
            return
        if self.proto is not None and not self.paused and not self.queue:
            self.proto.conn.write(payload)
            return
        if len(self.queue) >= self.bus.tcp_queue_limit:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warn("event subscriber {sock} is not keeping up: "
                         "{n} notifications dropped", sock=str(self.spec),
                         n=self.dropped)
        self.queue.append(payload)
        if self.proto is None and not self.connecting and self.retry_call is None:
            self._connect()

    def _connect(self) -> None:
        self.retry_call = None
        if self.closed:
            return
        self.connecting = True
        self.connector = self.bus._connect_tcp(self.spec, _StreamFactory(self))

    def _connected(self, proto: _StreamProtocol) -> None:
        self.connecting = False
        self.backoff = self.bus.retry_delay
        if self.closed:
            proto.conn.loseConnection()
            return
        self.proto = proto
        proto.conn.registerProducer(self, True)
        self._flush()

    def _flush(self) -> None:
        while self.queue and self.proto is not None and not self.paused:
            self.proto.conn.write(self.queue.popleft())

    def _failed(self, reason: Any) -> None:
        self.connecting = False
        if self.closed:
            return
        log.warn("event subscriber {sock} unreachable ({why}); retry in {delay}s, "
                 "{n} notifications queued", sock=str(self.spec),
                 why=reason.getErrorMessage(), delay=self.backoff, n=len(self.queue))
        self.retry_call = self.bus.clock.callLater(self.backoff, self._connect)
        self.backoff = min(self.backoff * 2, self.bus.max_retry_delay)

    def _lost(self, proto: _StreamProtocol) -> None:
        if proto is self.proto and self.abort_call is not None:
            if self.abort_call.active():
                self.abort_call.cancel()
            self.abort_call = None
        if proto is self.proto:
            self.proto = None
            self.paused = False
        waiters, self.lost_waiters = self.lost_waiters, []
        for d in waiters:  # after the reset: a waiter may look at this target
            d.callback(None)
        if self.queue and not self.closed and self.retry_call is None \
                and not self.connecting:
            self._connect()

    # IPushProducer: the transport tells us when its buffer is full.
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._flush()

    def stopProducing(self) -> None:
        self.paused = True

    def close(self) -> defer.Deferred[None]:
        """Stop for good; the Deferred fires once the connection is gone.

        A peer that stopped reading keeps ``loseConnection()`` waiting for ever
        while bytes are unsent, so after `CLOSE_GRACE` seconds on the bus clock
        the connection is aborted and the Deferred fires anyway.  Idempotent:
        every call gets its own Deferred for the same close.
        """
        if not self.closed:
            self.closed = True
            self.queue.clear()
            if self.retry_call is not None and self.retry_call.active():
                self.retry_call.cancel()
            self.retry_call = None
            if self.proto is not None:
                self.abort_call = self.bus.clock.callLater(CLOSE_GRACE, self._abort)
                self.proto.conn.loseConnection()
            elif self.connecting and self.connector is not None:
                self.connector.stopConnecting()
        if self.proto is None:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self.lost_waiters.append(done)
        return done

    def _abort(self) -> None:
        """The grace is over and the connection is still open: drop it unsent."""
        self.abort_call = None
        proto = self.proto
        if proto is None:
            return
        log.warn("event subscriber {sock} did not read for {t}s while closing; "
                 "aborting the connection", sock=str(self.spec), t=CLOSE_GRACE)
        try:
            proto.conn.abortConnection()
        except Exception:
            log.failure("aborting the connection to {sock} failed", sock=str(self.spec))
        if proto is self.proto:
            # connectionLost comes later (a reactor turn) or never: do not wait for it.
            self._lost(proto)


# --- the bus ------------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    name: str
    id: int
    subscribers: dict[SocketSpec, Subscription] = field(default_factory=dict)


class EventBus:
    """Published events, their subscribers, and ``raise_event``.

    ``reactor`` must provide IReactorTime, IReactorUDP and IReactorTCP
    (connections are only made when a subscriber exists); ``clock`` defaults
    to it.  Bounds: ``max_subscribers`` in total, ``tcp_queue_limit`` queued
    notifications per tcp subscriber.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        clock: _Clock | None = None,
        events: Iterable[str] = (EVENT_SETUP_FAILED,),
        max_subscribers: int = 256,
        tcp_queue_limit: int = 1000,
        connect_timeout: float = 5.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
    ) -> None:
        self.reactor = reactor
        self.clock: _Clock = clock if clock is not None else reactor
        self.max_subscribers = max_subscribers
        self.tcp_queue_limit = tcp_queue_limit
        self.connect_timeout = connect_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._events: dict[str, _Event] = {}
        self._udp: dict[bool, _UDPSender] = {}
        self._udp_ports: list[Any] = []
        self._tcp: dict[SocketSpec, _TCPTarget] = {}
        # Released targets still closing (at most CLOSE_GRACE each): stop waits for them.
        self._closing: set[_TCPTarget] = set()
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        for name in events:
            self.publish(name)

    # -- registry --
    def publish(self, name: str) -> int:
        """Make ``name`` subscribable; returns its id (idempotent)."""
        ev = self._events.get(name)
        if ev is None:
            ev = self._events[name] = _Event(name, len(self._events))
        return ev.id

    def events(self) -> list[tuple[str, int]]:
        return [(ev.name, ev.id) for ev in self._events.values()]

    def event_id(self, name: str) -> int | None:
        ev = self._events.get(name)
        return ev.id if ev else None

    def subscribe(self, event: str, socket: str, expire: int = DEFAULT_EXPIRE) -> None:
        """Add, refresh (same socket again) or, with ``expire == 0``, remove."""
        if not isinstance(event, str) or len(event) > MAX_EVENT_NAME_LENGTH:
            raise EventError("event name must be a short string")
        ev = self._events.get(event)
        if ev is None:
            raise EventError(f"event {event!r} is not published")
        if not isinstance(expire, int) or isinstance(expire, bool) or expire < 0:
            raise EventError("expire must be a non-negative integer")
        spec = parse_socket(socket)
        now = self.clock.seconds()
        self._prune(now)
        if expire == 0:
            if ev.subscribers.pop(spec, None) is not None:
                log.info("event {event}: {sock} unsubscribed", event=event, sock=str(spec))
                self._release(spec)
            return
        sub = ev.subscribers.get(spec)
        if sub is not None:
            sub.expire, sub.expires_at = expire, now + expire
            return
        if self.subscriber_count() >= self.max_subscribers:
            raise EventError(f"too many subscribers (max {self.max_subscribers})")
        ev.subscribers[spec] = Subscription(event, spec, expire, now + expire)
        log.info("event {event}: {sock} subscribed for {expire}s",
                 event=event, sock=str(spec), expire=expire)

    def subscriber_count(self) -> int:
        return sum(len(ev.subscribers) for ev in self._events.values())

    def subscribers(self, event: str | None = None) -> list[tuple[str, int, list[Subscription]]]:
        """Events with live subscribers (or just ``event``, even with none)."""
        self._prune(self.clock.seconds())
        if event is not None:
            ev = self._events.get(event)
            return [] if ev is None else [(ev.name, ev.id, list(ev.subscribers.values()))]
        return [(ev.name, ev.id, list(ev.subscribers.values()))
                for ev in self._events.values() if ev.subscribers]

    def find_subscriber(self, event: str, socket: str) -> Subscription | None:
        self._prune(self.clock.seconds())
        ev = self._events.get(event)
        if ev is None:
            return None
        try:
            spec = parse_socket(socket)
        except EventError:
            return None
        return ev.subscribers.get(spec)

    def _prune(self, now: float) -> None:
        for ev in self._events.values():
            gone = [s for s, sub in ev.subscribers.items() if sub.expires_at <= now]
            for spec in gone:
                del ev.subscribers[spec]
                log.info("event {event}: subscription of {sock} expired",
                         event=ev.name, sock=str(spec))
                self._release(spec)

    def _release(self, spec: SocketSpec) -> None:
        """Close the tcp connection of a socket no event uses any more."""
        if spec.transport != "tcp":
            return
        if any(spec in ev.subscribers for ev in self._events.values()):
            return
        target = self._tcp.pop(spec, None)
        if target is not None:
            self._close_target(target)

    def _close_target(self, target: _TCPTarget) -> defer.Deferred[None]:
        done = target.close()
        if not done.called:
            self._closing.add(target)
            target.close().addCallback(self._closed, target)  # its own Deferred
        return done

    def _closed(self, _: None, target: _TCPTarget) -> None:
        self._closing.discard(target)

    # -- raising --
    def raise_event(self, name: str, params: dict[str, Any] | None = None) -> int:
        """Send ``name`` with ``params`` to every live subscriber; never raises.

        Returns how many subscribers it was handed to.  Observers (e.g. the
        routing script's ``on_event``) are called first, each guarded.
        """
        params = {} if params is None else params
        for observer in list(self.observers):
            try:
                observer(name, params)
            except Exception:
                log.failure("event observer failed on {event}", event=name)
        ev = self._events.get(name)
        if ev is None:
            log.warn("raise of unpublished event {event} ignored", event=name)
            return 0
        self._prune(self.clock.seconds())
        if not ev.subscribers:
            return 0
        default_payload = None
        sent = 0
        for spec in list(ev.subscribers):
            try:
                if spec.method:
                    payload = encode_notification(spec.method, params)
                else:
                    if default_payload is None:
                        default_payload = encode_notification(name, params)
                    payload = default_payload
                if spec.transport == "udp":
                    self._send_udp(spec, payload)
                else:
                    self._send_tcp(spec, payload)
                sent += 1
            except Exception:
                log.failure("delivery of {event} to {sock} failed",
                            event=name, sock=str(spec))
        return sent

    def _send_udp(self, spec: SocketSpec, payload: bytes) -> None:
        if len(payload) > MAX_DATAGRAM:
            log.warn("event to {sock} dropped: {n} bytes do not fit a datagram",
                     sock=str(spec), n=len(payload))
            return
        sender = self._udp.get(spec.ipv6)
        if sender is None:
            sender = _UDPSender()
            port = self.reactor.listenUDP(0, sender, interface="::" if spec.ipv6 else "0.0.0.0")
            self._udp_ports.append(port)
            self._udp[spec.ipv6] = sender
        sender.send(payload, spec.address)

    def _send_tcp(self, spec: SocketSpec, payload: bytes) -> None:
        target = self._tcp.get(spec)
        if target is None:
            target = self._tcp[spec] = _TCPTarget(self, spec)
        target.send(payload)

    def _connect_tcp(self, spec: SocketSpec, factory: _StreamFactory) -> Any:
        return self.reactor.connectTCP(spec.host, spec.port, factory,
                                       timeout=self.connect_timeout)

    def stop(self) -> defer.Deferred[list[Any]]:
        """Close every connection and socket; the Deferred fires when all are closed,
        at most `CLOSE_GRACE` seconds (bus clock) after the call."""
        targets = list(self._tcp.values()) + list(self._closing)
        self._tcp.clear()
        waits: list[defer.Deferred[Any]] = [self._close_target(t) for t in targets]
        self._udp.clear()
        ports, self._udp_ports = self._udp_ports, []
        waits += [defer.maybeDeferred(p.stopListening) for p in ports]
        return defer.gatherResults(waits)
