"""Settings -> one MultiService: listeners, the gateway's timers, the MI site.

The only place where the layers meet.  Everything takes the reactor it is given (tests pass
a MemoryReactor and assert what listens where); nothing here reads the command line.
Stopping is ordered: the gateway ends its sessions (BYEs go out while the SIP and MSRP
listeners are still open), then the listeners close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger, LogLevel

from msrp_gateway.config import Settings
from msrp_gateway.events import EventBus
from msrp_gateway.mi import MIAuth, make_site
from msrp_gateway.mi_commands import LogLevelControl, build_table

__all__ = ["StartupError", "ListenerService", "GatewayService", "build_service"]

log = Logger()

# Layers that service.py cannot wire yet because their module has not landed; each is
# named in one log line at start so nobody mistakes a partial gateway for a whole one.
NOT_WIRED: tuple[str, ...] = (
    "SIP transport and stack (msrp_gateway.sip.transport, msrp_gateway.sip.stack)",
    "MSRP stack (msrp_gateway.msrp.transport)",
    "MSRP user agent (msrp_gateway.ua)",
    "gateway (msrp_gateway.gateway) and routing (msrp_gateway.routing)",
)


class StartupError(Exception):
    """The gateway cannot start (a port is taken, ...); ``str()`` is one operator line."""


class ListenerService(Service):
    """One listening socket, opened in startService and closed in stopService.

    A port that cannot be opened raises :class:`StartupError` from startService, so
    twistd stops instead of running on without the listener.
    """

    def __init__(self, description: str, listen: Callable[[], IListeningPort]) -> None:
        self.description = description
        self._listen = listen
        self.port: IListeningPort | None = None
        self.setName(description)

    def startService(self) -> None:
        try:
            self.port = self._listen()
        except CannotListenError as e:
            raise StartupError(f"cannot listen on {self.description}: "
                               f"{e.socketError}") from e
        super().startService()
        log.info("listening on {socket} ({address})", socket=self.description,
                 address=_show_address(self.port))

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        return defer.maybeDeferred(port.stopListening)


def _show_address(port: IListeningPort) -> str:
    host = port.getHost()
    addr = getattr(host, "host", None)
    if addr is None:
        return str(host)
    return f"{addr}:{host.port}"


class _Stopper(Service):
    """Calls ``stop()`` (which may return a Deferred) when the service stops."""

    def __init__(self, name: str, stop: Callable[[], Any]) -> None:
        self.setName(name)
        self._stop = stop

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        return defer.maybeDeferred(self._stop)


class _Startable(Service):
    """Runs an object's own start()/stop() (the gateway's sweep and its BYE-all)."""

    def __init__(self, name: str, target: Any) -> None:
        self.setName(name)
        self.target = target

    def startService(self) -> None:
        super().startService()
        self.target.start()

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()
        return defer.maybeDeferred(self.target.stop)


class GatewayService(MultiService):
    """The root service.  ``first_to_stop`` children stop (and finish) before the rest."""

    def __init__(self, settings: Settings, reactor: Any,
                 log_control: LogLevelControl | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        if log_control is None:
            log_control = LogLevelControl(LogLevel.levelWithName(settings.log.level))
        self.log_control = log_control
        self.events: EventBus | None = None
        self.first_to_stop: list[Service] = []
        self.not_wired: tuple[str, ...] = NOT_WIRED

    def startService(self) -> None:
        for layer in self.not_wired:
            log.warn("not wired yet, left out: {layer}", layer=layer)
        try:
            super().startService()
        except BaseException:
            # Close what did open, so a failed start leaves no listener behind.
            for svc in list(self):
                if svc.running:
                    svc.stopService()
            self.running = 0
            raise
        log.info("msrpgw started with {count} listener(s)",
                 count=sum(isinstance(s, ListenerService) for s in self))

    @defer.inlineCallbacks
    def stopService(self):  # type: ignore[override]
        log.info("msrpgw stopping")
        Service.stopService(self)
        for svc in self.first_to_stop:
            if svc.running:
                try:
                    yield defer.maybeDeferred(svc.stopService)
                except Exception:
                    log.failure("stopping {name} failed", name=svc.name)
        rest = [defer.maybeDeferred(svc.stopService) for svc in reversed(list(self))
                if svc.running]
        yield defer.DeferredList(rest, consumeErrors=True)
        log.info("msrpgw stopped")


def _listen_tcp(reactor: Any, host: str, port: int, factory: Any) -> Callable[[], Any]:
    return lambda: reactor.listenTCP(port, factory, interface=host)


def build_service(settings: Settings, reactor: Any,
                  log_control: LogLevelControl | None = None) -> GatewayService:
    """Build (but do not start) the whole gateway on ``reactor``."""
    root = GatewayService(settings, reactor, log_control)

    ev = settings.events
    events = EventBus(reactor, max_subscribers=ev.max_subscribers, tcp_queue_limit=ev.max_queue,
                      connect_timeout=ev.connect_timeout, retry_delay=ev.retry_delay,
                      max_retry_delay=ev.max_retry_delay)
    root.events = events
    # Added first so that it stops last: events raised while sessions end still go out.
    _Stopper("events", events.stop).setServiceParent(root)

    mi = settings.mi
    if mi.address is not None:
        table = build_table(clock=reactor, gateway=None, ua=None, events=events,
                            log_control=root.log_control)
        auth = MIAuth(token=mi.bearer_token or None, username=mi.basic_user or None,
                      password=mi.basic_password or None)
        site = make_site(table, clock=reactor, max_body=mi.max_body_size,
                         max_batch=mi.max_batch, auth=auth)
        host, port = mi.address
        ListenerService(f"mi:http:{mi.http}", _listen_tcp(reactor, host, port, site)
                        ).setServiceParent(root)
    return root
