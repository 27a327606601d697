"""What a routing script sees: the request view `req`, the gateway `gw`, and the default route.

A routing script is a Python file defining `route(req, gw)`, called for every out-of-dialog
request, and optionally `on_event(name, params, gw)`. Without a script the built-in
`default_route`/`default_on_event` below run; `etc/routing.py` is the same route written
out as an example to copy.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from msrp_gateway.sip.uri import NameAddr, SIPParseError, aor, parse_name_addr

__all__ = [
    "RequestView",
    "Router",
    "RoutingScriptError",
    "load_script",
    "default_route",
    "default_on_event",
    "SETUP_FAILED_EVENT",
]

log = Logger(namespace="msrp_gateway.routing")

SETUP_FAILED_EVENT = "E_MSRP_GW_SETUP_FAILED"  # as gateway.SETUP_FAILED_EVENT
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RoutingScriptError(Exception):
    """The routing script cannot be used; `str()` names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"routing script {where}: {message}")


# -- per-request parsing, cached across requests ------------------------------------------
# Every MESSAGE asks for From/To and their AORs (the default key) and whether its source is
# trusted. The same users and sources come back message after message, only the From tag
# changes: parse each distinct value once (bounded caches), not twice per request.
# Measured: ~17 us of ~150 us gateway CPU per page -> session MESSAGE before.

_CACHE_SIZE = 4096
_FAST_PATH_MAX = 2048  # longer values take the full parse (and its length check) every time
_TAG_ONLY = re.compile(r";tag=([A-Za-z0-9\-.!%*_+`'~]+)")


@dataclass(frozen=True, slots=True)
class Addr:
    """What the view keeps of a From/To value: its URI text and tag. Frozen, because the
    caches below hand the very same object to every request with that header text (a
    mutable NameAddr, with its params dict, would be shared across requests)."""

    uri: str
    tag: str | None = None

    @classmethod
    def of(cls, name_addr: NameAddr) -> Addr:
        return cls(name_addr.uri, name_addr.tag)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _tagless_addr(value: str) -> Addr:
    """A name-addr without header params, parsed once (a SIPParseError is not cached)."""
    return Addr.of(parse_name_addr(value))


def _parse_addr(value: str) -> Addr:
    """parse_name_addr(value) reduced to an Addr, with `<uri>` / `"Name" <uri>` parts parsed
    once per distinct text and a trailing plain `;tag=token` (the part that changes per
    request) added to a new Addr; anything else is parsed in full."""
    if len(value) <= _FAST_PATH_MAX:
        gt = value.rfind(">")
        if gt == len(value) - 1:
            return _tagless_addr(value)
        if gt > 0:
            m = _TAG_ONLY.fullmatch(value, gt + 1)
            if m is not None:
                return Addr(_tagless_addr(value[:gt + 1]).uri, m.group(1))
    return Addr.of(parse_name_addr(value))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _aor(uri: str) -> str:
    return aor(uri)


class TrustedNetworks:
    """`[routing] trusted` with its answer per source address remembered (bounded)."""

    __slots__ = ("networks", "_known")

    def __init__(self, networks: Iterable[_Network] = ()) -> None:
        self.networks = tuple(networks)
        self._known: dict[str, bool] = {}

    def __contains__(self, source_ip: str) -> bool:
        known = self._known.get(source_ip)
        if known is None:
            try:
                ip = ipaddress.ip_address(source_ip.strip("[]"))
            except ValueError:
                known = False
            else:
                known = any(ip in net for net in self.networks)
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[source_ip] = known
        return known


class _Peer(Protocol):
    transport: str
    host: str
    port: int


class _Request(Protocol):
    """What the view reads of a `sip.message.SIPRequest`."""

    method: str
    uri: str
    headers: Any
    body: bytes

    @property
    def content_type(self) -> str | None: ...
    @property
    def call_id(self) -> str | None: ...


class _Transaction(Protocol):
    """What the view uses of a `sip.stack.ServerTransaction`."""

    request: Any
    source: Any

    @property
    def responded(self) -> bool: ...
    def respond(self, status: int, reason: str | None = None, *, headers: Any = (),
                body: bytes = b"", content_type: str | None = None) -> Any: ...


class RequestView:
    """One out-of-dialog request as a routing script sees it (read-only, plus `reply`)."""

    __slots__ = ("transaction", "request", "_trusted_nets", "_from", "_to", "owned")

    def __init__(self, transaction: _Transaction,
                 trusted: TrustedNetworks | Iterable[_Network] = ()) -> None:
        self.transaction = transaction
        self.request: _Request = transaction.request
        self._trusted_nets = (trusted if isinstance(trusted, TrustedNetworks)
                              else TrustedNetworks(trusted))
        self._from: Addr | None = None
        self._to: Addr | None = None
        self.owned = False  # set when the transaction is handed on (the UA answers it)

    # request line and body
    @property
    def method(self) -> str:
        return self.request.method

    @property
    def ruri(self) -> str:
        return self.request.uri

    @property
    def headers(self) -> Any:
        return self.request.headers

    def header(self, name: str) -> str | None:
        value: str | None = self.request.headers.get(name)
        return value

    @property
    def body(self) -> bytes:
        return self.request.body

    @property
    def content_type(self) -> str | None:
        return self.request.content_type

    @property
    def call_id(self) -> str | None:
        return self.request.call_id

    # From / To: parsed on first use; a broken one raises SIPParseError (the router answers
    # it with its code)
    def _name_addr(self, name: str) -> Addr:
        value = self.request.headers.get(name)
        if value is None:
            raise SIPParseError(f"missing {name}")
        return _parse_addr(value)

    def _from_addr(self) -> Addr:
        if self._from is None:
            self._from = self._name_addr("From")
        return self._from

    def _to_addr(self) -> Addr:
        if self._to is None:
            self._to = self._name_addr("To")
        return self._to

    @property
    def from_uri(self) -> str:
        return self._from_addr().uri

    @property
    def to_uri(self) -> str:
        return self._to_addr().uri

    @property
    def from_tag(self) -> str | None:
        return self._from_addr().tag

    @property
    def to_tag(self) -> str | None:
        return self._to_addr().tag

    @property
    def from_aor(self) -> str:
        return _aor(self.from_uri)

    @property
    def to_aor(self) -> str:
        return _aor(self.to_uri)

    @property
    def is_initial(self) -> bool:
        """No To tag: not part of a dialog."""
        return self.to_tag is None

    # source
    @property
    def source(self) -> _Peer:
        """The Peer it came from (`.transport`, `.host`, `.port`)."""
        peer: _Peer = self.transaction.source
        return peer

    @property
    def source_ip(self) -> str:
        return self.source.host

    @property
    def source_port(self) -> int:
        return self.source.port

    @property
    def transport(self) -> str:
        return self.source.transport

    @property
    def trusted(self) -> bool:
        """Is the source address inside `[routing] trusted`?"""
        return self.source_ip in self._trusted_nets

    # answering
    @property
    def responded(self) -> bool:
        return bool(self.transaction.responded)

    def reply(self, code: int, reason: str | None = None, *,
              headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
              content_type: str | None = None) -> None:
        """Answer the request (ignored for ACK, which is never answered)."""
        if self.request.method == "ACK":
            return
        self.transaction.respond(code, reason, headers=list(headers), body=body,
                                 content_type=content_type)

    def __repr__(self) -> str:
        return f"<RequestView {self.method} {self.ruri}>"


# -- the built-in default route --------------------------------------------------------------


def default_route(req: RequestView, gw: Any) -> None:
    """MESSAGE -> msg_to_msrp, initial INVITE -> msrp_gw_answer, else 405; untrusted 403.

    Keys put the MSRP-side user first both ways, so replies find the same session.
    """
    if req.method == "ACK":
        return
    if not req.trusted:
        req.reply(403, "Forbidden")
        return
    if req.method == "MESSAGE":
        key = f"{req.to_aor}-{req.from_aor}"
        gw.msg_to_msrp(req, key, "text/plain")
    elif req.method == "INVITE" and req.is_initial:
        key = f"{req.from_aor}-{req.to_aor}"
        gw.msrp_gw_answer(req, key, "text/plain", req.from_uri, req.to_uri, req.ruri)
    else:
        req.reply(405, "Method Not Allowed", headers=[("Allow", "INVITE, ACK, BYE, CANCEL, "
                                                                 "MESSAGE, OPTIONS")])


def default_on_event(name: str, params: dict[str, Any], gw: Any) -> None:
    """On set-up failure, tell the page-mode sender the text was not delivered, and why
    (off with `[msrp_gateway] failure_message = false`)."""
    if name != SETUP_FAILED_EVENT or not getattr(gw.settings, "failure_message", True):
        return
    code, reason = params.get("code"), params.get("reason")
    why = f"{code} {reason}" if code is not None else "no answer"
    text = f"Your message to {params['from_uri']} could not be delivered ({why})."
    gw.send_message(params["from_uri"], params["to_uri"], params["ruri"], text.encode(),
                    "text/plain", key=params["key"])


# -- loading a script ------------------------------------------------------------------------


def _script_line(tb: TracebackType | None, path: str) -> int | None:
    """The deepest traceback line inside the script file."""
    line = None
    for frame in traceback.extract_tb(tb):
        if frame.filename == path:
            line = frame.lineno
    return line


def _check_arity(fn: Any, n: int, path: str, name: str) -> None:
    if not callable(fn):
        raise RoutingScriptError(path, None, f"{name} is not a function")
    call = getattr(fn, "__call__", None)
    if any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)
           for f in (fn, call) if f is not None):
        # its coroutine would never run: every request would get 500, every event be lost
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
        raise RoutingScriptError(
            path, line, f"{name} is an async def: define it with a plain def (to wait, "
            "return a Deferred, e.g. Deferred.fromCoroutine(coro))")
    try:
        inspect.signature(fn).bind(*([None] * n))
    except TypeError:
        args = "req, gw" if n == 2 else "name, params, gw"
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
        raise RoutingScriptError(path, line, f"{name} must take ({args})") from None
    except ValueError:
        pass  # builtins without a signature: trust them


def load_script(path: str) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """Compile and run a routing script; returns (route, on_event or None).

    Every problem raises RoutingScriptError naming the file and, where there is one, the line.
    """
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        raise RoutingScriptError(path, None, f"cannot read it: {e.strerror or e}") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise RoutingScriptError(path, e.lineno, f"syntax error: {e.msg}") from None
    except ValueError as e:  # null bytes
        raise RoutingScriptError(path, None, str(e)) from None
    namespace: dict[str, Any] = {"__name__": "msrpgw_routing_script", "__file__": path}
    try:
        exec(code, namespace)
    except Exception as e:  # noqa: BLE001 - anything the script raises while loading
        raise RoutingScriptError(path, _script_line(e.__traceback__, path),
                                 f"{type(e).__name__}: {e}") from None
    route = namespace.get("route")
    if route is None:
        raise RoutingScriptError(path, None, "defines no route(req, gw) function")
    _check_arity(route, 2, path, "route")
    on_event = namespace.get("on_event")
    if on_event is not None:
        _check_arity(on_event, 3, path, "on_event")
    return route, on_event


class Router:
    """The SIP stack's `router`: wraps each new transaction in a RequestView and runs the
    script's route (or the default one); also the gateway's route for events (`on_event`).

    A route that returns without answering (and without handing the request on) gets a
    500 sent for it, so no client is left retransmitting into silence.
    """

    def __init__(self, gw: Any, *, script: str = "",
                 trusted: Iterable[str | _Network] = ("127.0.0.0/8", "::1/128")) -> None:
        self.gw = gw
        self.script = script
        self.trusted: tuple[_Network, ...] = tuple(
            n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))
            else ipaddress.ip_network(n, strict=False)
            for n in trusted
        )
        self._trust = TrustedNetworks(self.trusted)
        if script:
            self._route, self._on_event = load_script(script)
            log.info("routing script {path} loaded", path=script)
        else:
            self._route, self._on_event = default_route, default_on_event

    @classmethod
    def from_settings(cls, gw: Any, routing_settings: Any) -> Router:
        return cls(gw, script=getattr(routing_settings, "script", "") or "",
                   trusted=getattr(routing_settings, "trusted", ("127.0.0.0/8", "::1/128")))

    def __call__(self, transaction: Any) -> None:
        self.route(transaction)

    def route(self, transaction: Any) -> None:
        req = RequestView(transaction, self._trust)
        try:
            result = self._route(req, self.gw)
        except Exception as e:  # noqa: BLE001 - a script bug answers 500, never crashes us
            self._script_failed(req, e)
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(lambda _: self._finished(req),
                                lambda f: self._script_failed(req, f.value))
        else:
            self._finished(req)

    def on_event(self, name: str, params: dict[str, Any]) -> None:
        """Run the script's event route (the default one without a script); never raises."""
        if self._on_event is None:
            return
        try:
            result = self._on_event(name, dict(params), self.gw)
            if isinstance(result, defer.Deferred):
                result.addErrback(lambda f: log.failure("on_event({name}) failed", f, name=name))
        except Exception:  # noqa: BLE001
            log.failure("on_event({name}) failed", name=name)

    def _finished(self, req: RequestView) -> None:
        if req.method == "ACK" or req.responded or req.owned:
            return
        log.warn("route() left {method} {ruri} unanswered: 500 sent", method=req.method,
                 ruri=req.ruri)
        req.reply(500, "Server Internal Error")

    def _script_failed(self, req: RequestView, error: BaseException) -> None:
        where = _script_line(error.__traceback__, self.script) if self.script else None
        log.error("route() failed for {method} at {path}:{line}: {error}", method=req.method,
                  path=self.script or "<built-in>", line=where, error=repr(error))
        if isinstance(error, SIPParseError) and not req.responded:
            req.reply(error.code, error.reason)  # e.g. a From the script asked for is broken
            return
        if req.method != "ACK" and not req.responded and not req.owned:
            req.reply(500, "Server Internal Error")
