"""Settings -> one MultiService: listeners, the gateway's timers, the MI site.

The only place where the layers meet.  Everything takes the reactor it is given (tests pass
a MemoryReactor and assert what listens where); nothing here reads the command line.
Stopping is ordered: the gateway ends its sessions (BYEs go out while the SIP and MSRP
listeners are still open), then the listeners close.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from msrp_gateway.config import ProcessSettings, Settings
from msrp_gateway.events import EventBus
from msrp_gateway.gateway import Gateway
from msrp_gateway.mi import MIAuth, make_site
from msrp_gateway.mi_commands import LogLevelControl, build_table
from msrp_gateway.msrp.message import Limits as MSRPLimits
from msrp_gateway.msrp.relay import RelayAuthError
from msrp_gateway.msrp.session import SessionSettings
from msrp_gateway.msrp.transport import MSRPStack
from msrp_gateway.routing import Router, RoutingScriptError
from msrp_gateway.sip.dns import SIPResolver
from msrp_gateway.sip.message import Limits as SIPLimits
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transaction import TimerSettings
from msrp_gateway.sip.transport import SIPTransport
from msrp_gateway.stats import Statistics, register_gateway, register_msrp, register_sip
from msrp_gateway.ua import MSRPUserAgent

__all__ = ["StartupError", "ListenerService", "GatewayService", "GCTuning", "build_service"]

log = Logger()


class StartupError(Exception):
    """The gateway cannot start (a port is taken, ...); ``str()`` is one operator line."""


class _Service(Service):
    """A `Service` with annotated signatures: Twisted's application.service has none, so
    calling it from typed code is an error under ``mypy --strict``; its calls are here."""

    def __init__(self, name: str) -> None:
        self.setName(name)  # type: ignore[no-untyped-call]  # unannotated Twisted base

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # unannotated Twisted base

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()  # type: ignore[no-untyped-call]  # unannotated Twisted base
        return None

    def attach(self, parent: MultiService) -> None:
        """``setServiceParent(parent)``."""
        self.setServiceParent(parent)  # type: ignore[no-untyped-call]  # unannotated Twisted


class ListenerService(_Service):
    """One listening socket, opened in startService and closed in stopService.

    A port that cannot be opened raises :class:`StartupError` from startService, so
    twistd stops instead of running on without the listener.  ``stack_owned=True`` leaves
    closing (and the "listening" log line) to the stack that made the port.
    """

    def __init__(self, description: str, listen: Callable[[], IListeningPort],
                 stack_owned: bool = False) -> None:
        self.description = description
        self._listen = listen
        self._stack_owned = stack_owned
        self.port: IListeningPort | None = None
        super().__init__(description)

    def startService(self) -> None:
        try:
            self.port = self._listen()
        except CannotListenError as e:
            raise StartupError(f"cannot listen on {self.description}: "
                               f"{e.socketError}") from e
        super().startService()
        if not self._stack_owned:
            log.info("listening on {socket} ({address})", socket=self.description,
                     address=_show_address(self.port))

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None or self._stack_owned:
            return None
        listening: Any = port  # IListeningPort's zope methods read without self (no plugin)
        return defer.maybeDeferred(listening.stopListening)


def _show_address(port: IListeningPort) -> str:
    listening: Any = port  # (as in ListenerService.stopService)
    host = listening.getHost()
    addr = getattr(host, "host", None)
    if addr is None:
        return str(host)
    return f"{addr}:{host.port}"


class _Stopper(_Service):
    """Calls ``stop()`` (which may return a Deferred) when the service stops."""

    def __init__(self, name: str, stop: Callable[[], Any]) -> None:
        super().__init__(name)
        self._stop = stop

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        return defer.maybeDeferred(self._stop)


class _Startable(_Service):
    """Runs an object's own start()/stop() (the gateway's sweep and its BYE-all)."""

    def __init__(self, name: str, target: Any) -> None:
        super().__init__(name)
        self.target = target

    def startService(self) -> None:
        super().startService()
        self.target.start()

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()
        return defer.maybeDeferred(self.target.stop)


class GCTuning:
    """``[process]``'s collector settings, applied once start-up is done and undone on stop.

    Why: CPython's young-generation collection runs every 700 allocations and, until the
    start-up heap is frozen, each older-generation pass walks every module, class and
    function object too; under load those pauses reached 0.5 s and made UDP peers
    retransmit.  Freezing after start-up (garbage collected first, so none is kept for
    good) and a higher gen-0 threshold remove them; cyclic garbage is still collected.
    """

    def __init__(self, settings: ProcessSettings) -> None:
        self.settings = settings
        self._saved: tuple[int, int, int] | None = None
        self._froze = False

    def apply(self) -> None:
        if self._saved is not None:
            return
        self._saved = gc.get_threshold()
        thresholds = self.settings.gc_thresholds
        if thresholds:
            gc.set_threshold(*thresholds)
        if self.settings.gc_freeze and gc.get_freeze_count() == 0:
            gc.collect()
            gc.freeze()
            self._froze = True
        log.info("GC: thresholds {thresholds}, start-up objects frozen: {frozen}",
                 thresholds=gc.get_threshold(), frozen=gc.get_freeze_count())

    def restore(self) -> None:
        """Back to the thresholds found at apply(); unfreeze only what apply() froze."""
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        if self._froze:
            gc.unfreeze()
        self._saved, self._froze = None, False


class _RelayStarter(_Service):
    """Connects and AUTHs to the ``[msrp] relay_uri`` at start, even with no MSRP listener
    (behind a relay none is needed), so the first session does not meet a 503."""

    def __init__(self, msrp: MSRPStack) -> None:
        super().__init__("msrp-relay")
        self.msrp = msrp

    def startService(self) -> None:
        super().startService()
        # The relay client logs each refusal and keeps retrying with back-off.
        self.msrp.start().addErrback(_relay_refused)


def _relay_refused(failure: Failure) -> None:
    """Drop a relay refusal (logged by the relay client); anything else propagates."""
    failure.trap(RelayAuthError)  # type: ignore[no-untyped-call]  # Failure is unannotated


# Once stop_timeout is spent, closing listeners and connections still gets this long
# (a reactor turn or two is all it needs). Whatever has not closed by then — a connection
# whose peer stopped reading keeps unsent bytes, so loseConnection never completes — is
# not waited for: the reactor's own shutdown closes it. SIGTERM ends within
# stop_timeout + STOP_GRACE whatever the peers do.
STOP_GRACE = 1.0


class GatewayService(MultiService):
    """The root service.  ``first_to_stop`` children stop (and finish) before the rest;
    every wait shares one bound, ``stop_timeout`` + ``STOP_GRACE``."""

    def __init__(self, settings: Settings, reactor: Any,
                 log_control: LogLevelControl | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated Twisted base
        self.settings = settings
        self.reactor = reactor
        if log_control is None:
            log_control = LogLevelControl(LogLevel.levelWithName(settings.log.level))
        self.log_control = log_control
        self.events: EventBus | None = None
        self.sip: Any = None
        self.msrp: MSRPStack | None = None
        self.ua: MSRPUserAgent | None = None
        self.gateway: Gateway | None = None
        self.router: Router | None = None
        #: what MI get_statistics / list_statistics / reset_statistics read
        self.stats = Statistics()
        self.first_to_stop: list[_Service] = []
        self.gc_tuning = GCTuning(settings.process)
        self._stop_by: float | None = None

    def stop_time_left(self) -> float:
        """Seconds left of ``[msrp_gateway] stop_timeout`` since stopping began: every
        step that waits for peers shares that one budget, so SIGTERM stays bounded by it."""
        budget = self.settings.msrp_gateway.stop_timeout
        if self._stop_by is None:
            return budget
        now: float = self.reactor.seconds()
        return max(0.0, self._stop_by - now)

    def _stop_within_bound(self, svc: Service) -> defer.Deferred[None]:
        """Stop `svc`; fires when it has stopped, or when stop_timeout + STOP_GRACE since
        stopping began have passed (it is then no longer waited for, and said so)."""
        if self._stop_by is None:  # (called outside stopService: a whole bound)
            left = self.settings.msrp_gateway.stop_timeout + STOP_GRACE
        else:
            left = max(0.0, self._stop_by + STOP_GRACE - self.reactor.seconds())
        done: defer.Deferred[None] = defer.Deferred()

        def give_up() -> None:
            if not done.called:
                log.warn("shutdown: {name} had not stopped {t} s after stop_timeout ran out; "
                         "not waiting for it", name=svc.name, t=STOP_GRACE)
                done.callback(None)

        timer = self.reactor.callLater(left, give_up)

        def finished(result: object) -> None:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                log.failure("stopping {name} failed", failure=result, name=svc.name)
            if not done.called:
                done.callback(None)

        defer.maybeDeferred(svc.stopService).addBoth(finished)
        return done

    def startService(self) -> None:
        try:
            super().startService()  # type: ignore[no-untyped-call]  # unannotated Twisted
        except BaseException:
            # Close what did open, so a failed start leaves no listener behind.
            for svc in list(self):
                if svc.running:
                    svc.stopService()
            self.running = 0
            raise
        log.info("msrpgw started with {count} listener(s)",
                 count=sum(isinstance(s, ListenerService) for s in self))
        # Last: what start-up built (modules, stacks, tables) is what gets frozen.
        self.gc_tuning.apply()

    @defer.inlineCallbacks
    def stopService(self) -> Generator[defer.Deferred[Any], Any, None]:
        log.info("msrpgw stopping")
        self._stop_by = self.reactor.seconds() + self.settings.msrp_gateway.stop_timeout
        Service.stopService(self)  # type: ignore[no-untyped-call]  # unannotated Twisted
        for svc in self.first_to_stop:
            if svc.running:
                yield self._stop_within_bound(svc)
        rest = [self._stop_within_bound(svc) for svc in reversed(list(self)) if svc.running]
        yield defer.DeferredList(rest, consumeErrors=True)
        self.gc_tuning.restore()
        log.info("msrpgw stopped")


def _listen_tcp(reactor: Any, host: str, port: int, factory: Any) -> Callable[[], Any]:
    return lambda: reactor.listenTCP(port, factory, interface=host)


def _sip_local_host(settings: Settings) -> str:
    """host:port of the first SIP socket, for the Contact and Via of what we send."""
    first = settings.sip.sockets[0]
    host = f"[{first.host}]" if ":" in first.host else first.host
    return f"{host}:{first.port}"


def _msrp_stack(settings: Settings, reactor: Any) -> MSRPStack:
    m = settings.msrp
    session_settings = SessionSettings(
        response_timeout=m.send_timeout, chunk_size=m.chunk_size,
        max_message_size=m.max_message_size, max_reassemblies=m.max_reassemblies,
        reassembly_timeout=m.reassembly_timeout, idle_timeout=m.idle_timeout,
        frame_timeout=m.frame_timeout, max_connections=m.max_connections,
        max_reassembly_bytes=m.max_reassembly_bytes,
        max_queued_messages=m.max_send_queue,
        max_queued_bytes=m.max_send_queue_bytes, max_inflight=m.max_in_flight,
        max_sessions=settings.msrp_gateway.max_sessions,
        session_id_matching=(m.session_matching == "session-id"),
        owner_success_reports=(settings.msrp_gateway.delivery == "end_to_end"))
    limits = MSRPLimits(max_header_bytes=m.max_header_size,
                        max_body_size=max(m.max_message_size, m.chunk_size))
    try:
        return MSRPStack(reactor, m.my_uri, relay_uri=m.relay_uri or None,
                         relay_username=m.relay_username or None,
                         relay_password=m.relay_password or None,
                         relay_expires=m.relay_expires or None,
                         tls=settings.tls, limits=limits, settings=session_settings,
                         connect_timeout=m.connect_timeout)
    except ValueError as e:  # the stack's own check of relay_uri and [tls]
        raise StartupError(str(e)) from e


def _register_statistics(stats: Statistics, sip: SIPStack, msrp: MSRPStack,
                         gw: Gateway) -> None:
    """OpenSIPS' groups in its order (core, tm), then ours; gauges read the live tables."""
    register_sip(stats, sip.stats, inuse=lambda: sip.transaction_count)
    register_msrp(stats, msrp.msrp_stats, active=lambda: len(msrp.table))
    register_gateway(stats, gw.stats, active=lambda: len(gw.registry))


def _refuse_until_routed(txn: Any) -> None:
    txn.respond(503, "Starting")


def build_service(settings: Settings, reactor: Any,
                  log_control: LogLevelControl | None = None) -> GatewayService:
    """Build (but do not start) the whole gateway on ``reactor``.

    Raises :class:`StartupError` when a part refuses its settings (a routing script that
    does not load, ...).
    """
    root = GatewayService(settings, reactor, log_control)

    ev = settings.events
    events = EventBus(reactor, max_subscribers=ev.max_subscribers, tcp_queue_limit=ev.max_queue,
                      connect_timeout=ev.connect_timeout, retry_delay=ev.retry_delay,
                      max_retry_delay=ev.max_retry_delay)
    root.events = events
    # Added first so that it stops last: events raised while sessions end still go out.
    _Stopper("events", events.stop).attach(root)

    msrp = root.msrp = _msrp_stack(settings, reactor)
    _Stopper("msrp", msrp.stop).attach(root)
    for sock in settings.msrp.socket:
        ListenerService(sock, partial(msrp.listen, sock), stack_owned=True).attach(root)
    if settings.msrp.relay_uri:
        _RelayStarter(msrp).attach(root)

    sip = settings.sip
    transport = SIPTransport(
        reactor, tls_settings=settings.tls,
        limits=SIPLimits(max_message_size=sip.max_message_size,
                         max_headers=sip.max_headers,
                         max_line_length=sip.max_line_length),
        max_connections=sip.max_connections, idle_timeout=sip.tcp_idle_timeout,
        connect_timeout=sip.connect_timeout,
        max_pending_per_connection=sip.max_pending_per_connection,
        max_write_backlog=sip.max_write_backlog)
    # RFC 3263 lookups of next hops: [sip] dns_servers (else resolv.conf's), bounded cache
    resolver = transport.resolver = SIPResolver(
        reactor, servers=list(sip.dns_server_addresses) or None,
        max_cache_entries=sip.dns_cache_size)
    # Stops after the gateway and the UA (first_to_stop): closes ports and connections.
    _Stopper("sip-transport", transport.stop).attach(root)
    stack = root.sip = SIPStack(
        reactor, transport, local_uri_host=_sip_local_host(settings),
        outbound_proxy=settings.sip.outbound_proxy or None, router=_refuse_until_routed,
        max_transactions=sip.max_transactions, max_dialogs=sip.max_dialogs,
        max_completed=sip.max_completed,
        timers=TimerSettings(sip.timer_t1, sip.timer_t2, sip.timer_t4))
    ua = root.ua = MSRPUserAgent(reactor, stack, msrp, settings.msrp_ua)

    def emit_event(name: str, params: dict[str, Any]) -> None:
        events.raise_event(name, params)
        if root.router is not None:
            root.router.on_event(name, params)

    gw = root.gateway = Gateway(reactor, ua, stack, settings.msrp_gateway, emit_event)
    try:
        root.router = Router.from_settings(gw, settings.routing)
    except RoutingScriptError as e:
        raise StartupError(str(e)) from e
    stack.router = root.router
    for sock in settings.sip.socket:
        ListenerService(sock, partial(transport.listen, sock), stack_owned=True).attach(root)
    # Bounded: BYEs to a frozen peer or a dialog never ACKed must not hold SIGTERM.
    ua_svc = _Stopper("ua", lambda: ua.stop(deadline=root.stop_time_left()))
    ua_svc.attach(root)
    stack_svc = _Stopper("sip-stack", stack.stop)
    stack_svc.attach(root)
    # After the stack: lookups still in flight fail now (their requests get 503) instead
    # of holding DNS retry timers (up to 9 s) and query sockets past shutdown.
    dns_svc = _Stopper("sip-dns", resolver.stop)
    dns_svc.attach(root)
    gw_svc = _Startable("gateway", gw)
    gw_svc.attach(root)
    # Gateway first (its sessions' BYEs), then whatever the UA still has, then the SIP
    # stack's timers and DNS lookups; the listeners and connections close after that.
    root.first_to_stop += [gw_svc, ua_svc, stack_svc, dns_svc]
    _register_statistics(root.stats, stack, msrp, gw)

    mi = settings.mi
    if mi.address is not None:
        table = build_table(clock=reactor, gateway=root.gateway, ua=root.ua, events=events,
                            log_control=root.log_control, stats=root.stats)
        auth = MIAuth(token=mi.bearer_token or None, username=mi.basic_user or None,
                      password=mi.basic_password or None)
        site = make_site(table, clock=reactor, max_body=mi.max_body_size,
                         max_batch=mi.max_batch, auth=auth)
        host, port = mi.address
        ListenerService(f"mi:http:{mi.http}", _listen_tcp(reactor, host, port, site)
                        ).attach(root)
    return root
