"""The MI commands, with the names, parameter sets and answers of OpenSIPS.

``build_table(...)`` returns the CommandTable that ``mi.MIResource`` serves.
Shapes follow OpenSIPS 3.x (mi_core.c, event_interface.c, msrp_gateway.c,
msrp_ua.c) so that opensips-cli, opensips-event and scripts written for
OpenSIPS work unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import fields, is_dataclass
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
)

from . import __version__
from .events import EventBus, EventError
from .mi import CommandTable, MIError, ParamsError
from .stats import Statistics, StatsNotFound

__all__ = ["build_table", "LogLevelControl", "GATEWAY_SESSION_FIELDS", "UA_SESSION_FIELDS"]

#: The first members of every msrp_gw_list_sessions entry, as OpenSIPS prints them.
GATEWAY_SESSION_FIELDS = ("key", "msg_side_to", "msg_side_ruri", "msrp_ua_session_id")
#: The members of every msrp_ua_list_sessions entry, as OpenSIPS' msrp_ua prints them.
UA_SESSION_FIELDS = ("session_id", "b2b_key", "type", "handler", "dlg_state",
                     "peer_path", "lifetime")


class _NoGatewayModule(Exception):
    """Stands in for gateway.py's exceptions while that module does not exist."""


def _gateway_errors() -> tuple[type[BaseException], type[BaseException]]:
    """The registry's SessionNotFound / EndSessionFailed (gateway.py owns them)."""
    try:
        from .gateway import EndSessionFailed, SessionNotFound
    except ModuleNotFoundError as e:
        if e.name != __package__ + ".gateway":
            raise
        return _NoGatewayModule, _NoGatewayModule
    return SessionNotFound, EndSessionFailed


# --- log level ----------------------------------------------------------------

# OpenSIPS log levels (L_ALERT..L_DBG) <-> twisted.logger levels.
_TO_TWISTED = {-3: LogLevel.critical, -2: LogLevel.critical, -1: LogLevel.error,
               0: LogLevel.warn, 1: LogLevel.warn, 2: LogLevel.info, 3: LogLevel.info,
               4: LogLevel.debug}
_FROM_TWISTED = {LogLevel.critical: -2, LogLevel.error: -1, LogLevel.warn: 1,
                 LogLevel.info: 3, LogLevel.debug: 4}


class LogLevelControl:
    """The running process' log level, as a twisted.logger filter predicate.

    ``install()`` puts every observer of the global log publisher behind the
    predicate (twistd has already begun logging when the service starts);
    ``observer(obs)`` wraps one observer when you build the chain yourself.
    """

    def __init__(self, level: LogLevel = LogLevel.info) -> None:
        self.predicate = LogLevelFilterPredicate(defaultLogLevel=level)
        self._installed: list[tuple[ILogObserver, ILogObserver]] = []
        self._publisher: LogPublisher | None = None

    @property
    def level(self) -> int:
        """The OpenSIPS-style level (-3..4) matching the current default level."""
        return _FROM_TWISTED[self.predicate.logLevelForNamespace("")]

    def set_level(self, level: int) -> int:
        if level not in _TO_TWISTED:
            raise ValueError(level)
        self.predicate.setLogLevelForNamespace("", _TO_TWISTED[level])
        return level

    def observer(self, wrapped: ILogObserver) -> FilteringLogObserver:
        return FilteringLogObserver(wrapped, [self.predicate])

    def install(self, publisher: LogPublisher = globalLogPublisher) -> None:
        """Filter every observer already on ``publisher`` (a private Twisted list;
        pinned by tests in test_mi.py)."""
        observers = list(getattr(publisher, "_observers", ()))
        for obs in observers:
            filtered = self.observer(obs)
            publisher.removeObserver(obs)
            publisher.addObserver(filtered)
            self._installed.append((obs, filtered))
        self._publisher = publisher

    def uninstall(self) -> None:
        if self._publisher is None:
            return
        for obs, filtered in self._installed:
            self._publisher.removeObserver(filtered)
            self._publisher.addObserver(obs)
        self._installed.clear()
        self._publisher = None


# --- helpers ------------------------------------------------------------------


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return dict(item)
    if is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in fields(item)}  # shallow: no deepcopy
    return {k: v for k, v in vars(item).items() if not k.startswith("_")}


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if hasattr(value, "name") and hasattr(value, "value"):  # enum
        return value.name
    return str(value)


def gateway_session_entry(item: Any) -> dict[str, Any]:
    """OpenSIPS' four string members first, then whatever else the registry gives."""
    raw = _as_dict(item)
    out: dict[str, Any] = {}
    for name in GATEWAY_SESSION_FIELDS:
        value = raw.pop(name, "")
        out[name] = "" if value is None else str(value)
    out.update({k: _json_safe(v) for k, v in raw.items()})
    return out


#: msrp_ua's dlg_state numbers (MSRPUA_DLG_NEW/CONF/EST/TERM) for our UA states.
_DLG_STATE = {"inviting": 0, "setup": 1, "established": 2, "ended": 3}


def ua_session_entry(item: Any, now: float = 0.0, max_duration: float = 0.0) -> dict[str, Any]:
    """msrp_ua's members in msrp_ua's order, then the UA's own extra fields.

    ``b2b_key`` is the SIP Call-ID (we have no B2B entity); ``lifetime`` is the
    number of seconds left before max_duration ends the session (0: no limit).
    """
    raw = _as_dict(item)
    role = str(raw.pop("role", "") or "")
    state = raw.get("state")
    out: dict[str, Any] = {"session_id": str(raw.pop("session_id", "") or "")}
    call_id = raw.pop("call_id", None)
    out["b2b_key"] = str(raw.pop("b2b_key", None) or call_id or "")
    out["type"] = str(raw.pop("type", None) or role.upper())
    handler = raw.pop("handler", None)
    out["handler"] = handler if isinstance(handler, str) and handler else "msrp_gateway"
    dlg = raw.pop("dlg_state", None)
    out["dlg_state"] = dlg if isinstance(dlg, int) else _DLG_STATE.get(
        str(getattr(state, "value", state)), 0)
    path = raw.pop("peer_path", None)
    if path is None:
        path = raw.pop("remote_path", "")
    out["peer_path"] = " ".join(map(str, path)) if isinstance(path, (list, tuple)) else str(path)
    lifetime = raw.pop("lifetime", None)
    if lifetime is None:
        created = raw.get("created")
        lifetime = (max(0, int(created + max_duration - now))
                    if max_duration and isinstance(created, (int, float)) else 0)
    out["lifetime"] = lifetime
    if role:
        out["role"] = role
    out.update({k: _json_safe(v) for k, v in raw.items()})
    return out


# --- the table ----------------------------------------------------------------


def build_table(
    *,
    clock: IReactorTime,
    gateway: Any = None,
    ua: Any = None,
    events: EventBus | None = None,
    log_control: LogLevelControl | None = None,
    started_at: float | None = None,
    server_name: str = "msrpgw",
    ua_max_duration: float = 0.0,
    wall_time: Callable[[], float] = time.time,
    stats: Statistics | None = None,
) -> CommandTable:
    """All MI commands for the given parts; commands of absent parts are left out.

    ``clock`` measures uptime; ``wall_time`` gives the dates ``uptime`` prints;
    ``ua_max_duration`` ([msrp_ua] max_duration) gives msrp_ua_list_sessions'
    ``lifetime``; ``stats`` adds get_statistics, list_statistics, reset_statistics.
    """
    table = CommandTable()
    start_clock = clock.seconds()
    start_wall = wall_time() if started_at is None else started_at
    log_control = log_control or LogLevelControl()

    # -- msrp_gateway --
    if gateway is not None:
        def gw_list() -> list[dict[str, Any]]:
            return [gateway_session_entry(s) for s in gateway.list_sessions()]

        def gw_end(key: str) -> str:
            not_found, failed = _gateway_errors()
            try:
                gateway.end_session(key)
            except not_found:
                raise MIError(404, "Session doesn't exist") from None
            except failed:
                raise MIError(500, "Unable to end session") from None
            return "OK"

        table.add("msrp_gw_list_sessions", gw_list, [()],
                  aliases=["msrp_gateway:list_sessions"])
        table.add("msrp_gw_end_session", gw_end, [("key",)],
                  aliases=["msrp_gateway:end_session"])

    # -- msrp_ua --
    if ua is not None:
        ua_max = float(ua_max_duration or 0.0)

        def ua_list() -> list[dict[str, Any]]:
            now = clock.seconds()
            return [ua_session_entry(s, now, ua_max) for s in ua.sessions()]

        def ua_end(session_id: str) -> str:
            try:
                ended = ua.end(session_id)
            except Exception as e:
                raise MIError(500, "Unable to end session") from e
            if not ended:
                raise MIError(404, "Unknown session")
            return "OK"

        table.add("msrp_ua_list_sessions", ua_list, [()],
                  aliases=["msrp_ua:list_sessions"])
        table.add("msrp_ua_end_session", ua_end, [("session_id",)],
                  aliases=["msrp_ua:end_session"])

    # -- core --
    def which(command: str | None = None) -> list[Any]:
        if command is None:
            return table.names()
        cmd = table.get(command)
        if cmd is None:
            raise MIError(404, "unknown MI command")
        return [list(r) for r in cmd.recipes]

    def uptime() -> dict[str, str]:
        up = max(0, int(clock.seconds() - start_clock))
        return {"Now": time.ctime(wall_time()), "Up since": time.ctime(start_wall),
                "Up time": f"{up} [sec]"}

    def version() -> dict[str, str]:
        return {"Server": f"{server_name} {__version__} "
                          f"({platform.machine()}/{sys.platform})"}

    def log_level(level: int | None = None) -> dict[str, Any]:
        if level is None:
            return {"Processes": [{"PID": os.getpid(), "Log level": log_control.level,
                                   "Type": server_name}]}
        try:
            log_control.set_level(level)
        except ValueError:
            raise ParamsError("Bad value for parameter 'level' (-3..4)") from None
        return {"New global log level": level}

    table.add("which", which, [(), ("command",)])
    table.add("uptime", uptime, [()])
    table.add("version", version, [()])
    table.add("log_level", log_level, [(), ("level",)], types={"level": int})

    # -- event interface --
    if events is not None:
        def event_subscribe(event: str, socket: str, expire: int | None = None) -> str:
            if expire is not None and expire < 0:
                raise ParamsError("Negative expire value")
            try:
                if expire is None:
                    events.subscribe(event, socket)
                else:
                    events.subscribe(event, socket, expire)
            except EventError:
                raise MIError(400, "Bad parameter value") from None
            return "OK"

        def events_list() -> dict[str, Any]:
            return {"Events": [{"name": n, "id": i} for n, i in events.events()]}

        def subscriber_entry(sub: Any) -> dict[str, Any]:
            return {"socket": str(sub.socket), "expire": sub.expire,
                    "ttl": sub.ttl(clock.seconds())}

        def subscribers_list(event: str | None = None,
                             socket: str | None = None) -> dict[str, Any]:
            if event is None:
                return {"Events": [
                    {"name": n, "id": i, "Subscribers": [subscriber_entry(s) for s in subs]}
                    for n, i, subs in events.subscribers()]}
            found = events.subscribers(event)
            if not found:
                raise MIError(404, "Event not published")
            name, eid, subs = found[0]
            if socket is None:
                return {"Event": {"name": name, "id": eid,
                                  "Subscribers": [subscriber_entry(s) for s in subs]}}
            sub = events.find_subscriber(event, socket)
            if sub is None:
                raise MIError(404, "Subscriber does not exist")
            return {"Event": {"name": name, "id": eid, "Subscriber": subscriber_entry(sub)}}

        def raise_event(event: str, params: Any = None) -> str:
            if events.event_id(event) is None:
                raise MIError(404, "Event not registered")
            if not events.subscribers(event)[0][2]:
                raise MIError(480, "Temporarily Unavailable")
            if isinstance(params, str):  # OpenSIPS also takes the object as JSON text
                try:
                    params = json.loads(params)
                except ValueError:
                    raise MIError(400, "Bad Params") from None
            if params is not None and not isinstance(params, dict):
                raise MIError(400, "Bad Params")
            events.raise_event(event, params or {})
            return "OK"

        table.add("event_subscribe", event_subscribe,
                  [("event", "socket"), ("event", "socket", "expire")],
                  types={"expire": int})
        table.add("events_list", events_list, [()])
        table.add("subscribers_list", subscribers_list,
                  [(), ("event",), ("event", "socket")])
        table.add("raise_event", raise_event, [("event",), ("event", "params")],
                  types={"params": object})

    if stats is not None:
        _add_statistics(table, stats)
    return table


# --- statistics (OpenSIPS statistics.c) -------------------------------------------------

#: At most this many names in one ``statistics`` array (a request is size-bounded anyway).
MAX_STATISTICS_PARAM = 1024


def _stat_names(value: Any) -> list[str]:
    """The ``statistics`` array, as OpenSIPS' get_mi_array_param wants it: an array of
    strings (a bare string or a non-string item is a bad type, -32602)."""
    if not isinstance(value, list) or len(value) > MAX_STATISTICS_PARAM \
            or not all(isinstance(v, str) for v in value):
        raise ParamsError("Bad type for parameter 'statistics'")
    return value


def _add_statistics(table: CommandTable, stats: Statistics) -> None:
    not_found = MIError(StatsNotFound.code, StatsNotFound.message)

    def get_statistics(statistics: Any) -> dict[str, int]:
        try:
            return stats.get(_stat_names(statistics))
        except StatsNotFound:
            raise MIError(not_found.code, not_found.message) from None

    def list_statistics(statistics: Any = None) -> dict[str, str]:
        names = None if statistics is None else _stat_names(statistics)
        try:
            return stats.describe(names)
        except StatsNotFound:
            raise MIError(not_found.code, not_found.message) from None

    def reset_statistics(statistics: Any) -> str:
        try:
            stats.reset(_stat_names(statistics))
        except StatsNotFound:
            raise MIError(not_found.code, not_found.message) from None
        return "OK"

    table.add("get_statistics", get_statistics, [("statistics",)],
              types={"statistics": object}, aliases=["statistics:get"])
    table.add("list_statistics", list_statistics, [(), ("statistics",)],
              types={"statistics": object}, aliases=["statistics:list"])
    table.add("reset_statistics", reset_statistics, [("statistics",)],
              types={"statistics": object}, aliases=["statistics:reset"])
