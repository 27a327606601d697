"""MI: the command table and its JSON-RPC 2.0 HTTP resource (as OpenSIPS mi_http).

Built on txjsonrpc-ng's ``JSONRPC`` resource through a thin subclass: the
library looks methods up as ``jsonrpc_<name>`` (no ``:``), renders ``None`` as
an empty body, reports arity errors as code 8002 with a Python repr and answers
malformed JSON and batches in a pre-1.0 envelope.  ``MIResource`` keeps the
resource and its hooks (``_getFunction``, ``auth``) and replaces only the
request handling so every answer follows DESIGN.md's MI wire rules.

Body size: a request whose body is over ``max_body`` bytes gets HTTP 413 with an
empty body, before any JSON is parsed (``MISite`` refuses it while it is still
arriving; the resource checks again when mounted elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server
from txjsonrpc_ng import jsonrpclib
from txjsonrpc_ng.web.jsonrpc import JSONRPC

__all__ = [
    "MIError",
    "ParamsError",
    "Command",
    "CommandTable",
    "MIAuth",
    "MIResource",
    "MISite",
    "make_site",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
]

log = Logger()

# JSON-RPC 2.0 s.5.1 error codes, with the messages OpenSIPS sends.
PARSE_ERROR = (-32700, "Parse error")
INVALID_REQUEST = (-32600, "Invalid Request")
METHOD_NOT_FOUND = (-32601, "Method not found")
INVALID_PARAMS = (-32602, "Invalid params")
INTERNAL_ERROR = (-32603, "Internal error")

ARITY_DATA = "Too few or too many parameters"
NAMES_DATA = "Named parameters do not match"

DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_BATCH = 32
DEFAULT_COMMAND_TIMEOUT = 30.0
MAX_PARAMS = 32
MAX_METHOD_LENGTH = 128


class MIError(Exception):
    """A command's own error: positive ``code`` and ``message``, no ``data``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class ParamsError(Exception):
    """-32602 "Invalid params" with ``data`` saying what was wrong."""

    def __init__(self, data: str) -> None:
        super().__init__(data)
        self.data = data


class _RPCError(Exception):
    """A protocol-level error answered with a standard code."""

    def __init__(self, code_message: tuple[int, str], data: str | None = None) -> None:
        super().__init__(code_message, data)
        self.code, self.message = code_message
        self.data = data


# --- the command table --------------------------------------------------------

ParamType = type  # str or int


@dataclass(slots=True, frozen=True)
class Command:
    """One MI command: accepted parameter sets (OpenSIPS "recipes") and handler.

    The handler is called with keyword arguments named as in the matched recipe,
    already converted to the declared types; it returns a JSON value or a
    Deferred of one, or raises MIError / ParamsError.
    """

    name: str
    recipes: tuple[tuple[str, ...], ...]
    handler: Callable[..., Any]
    types: Mapping[str, ParamType]


def _convert(name: str, value: Any, kind: ParamType) -> Any:
    """Coerce as OpenSIPS' get_mi_*_param do; anything else is a bad type."""
    if kind is object:
        return value
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            digits = text[1:] if text[:1] in "+-" else text
            if digits.isdigit() and len(digits) <= 18:
                return int(text)
        raise ParamsError(f"Bad type for parameter '{name}'")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ParamsError(f"Bad type for parameter '{name}'")


class CommandTable:
    """Explicit name -> Command table (names may contain ``:``)."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        handler: Callable[..., Any],
        recipes: Sequence[Sequence[str]] = ((),),
        *,
        types: Mapping[str, ParamType] | None = None,
        aliases: Iterable[str] = (),
    ) -> None:
        cmd = Command(name, tuple(tuple(r) for r in recipes), handler, dict(types or {}))
        for n in (name, *aliases):
            if n in self._commands:
                raise ValueError(f"MI command {n!r} registered twice")
            self._commands[n] = cmd if n == name else Command(
                n, cmd.recipes, cmd.handler, cmd.types)

    def names(self) -> list[str]:
        return list(self._commands)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def bind(self, name: str, params: Any) -> tuple[Command, dict[str, Any]]:
        """Match ``params`` (None, list or dict) to a recipe; raise on mismatch."""
        cmd = self._commands.get(name)
        if cmd is None:
            raise _RPCError(METHOD_NOT_FOUND)
        if params is None:
            params = []
        if isinstance(params, list):
            for recipe in cmd.recipes:
                if len(recipe) == len(params):
                    named = dict(zip(recipe, params))
                    break
            else:
                raise ParamsError(ARITY_DATA)
        else:  # dict
            keys = set(params)
            for recipe in cmd.recipes:
                if set(recipe) == keys and len(recipe) == len(keys):
                    named = dict(params)
                    break
            else:
                raise ParamsError(NAMES_DATA)
        kwargs = {k: _convert(k, v, cmd.types.get(k, str)) for k, v in named.items()}
        return cmd, kwargs

    def call(self, name: str, params: Any) -> defer.Deferred:
        """Run a command; the Deferred fires with its result or fails."""
        try:
            cmd, kwargs = self.bind(name, params)
        except Exception:
            return defer.fail()
        return defer.maybeDeferred(cmd.handler, **kwargs)


# --- access control -----------------------------------------------------------


@dataclass(slots=True, frozen=True)
class MIAuth:
    """Optional bearer token and/or basic credentials; any one that matches wins."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    realm: str = "msrpgw"

    @property
    def enabled(self) -> bool:
        return bool(self.token) or self.username is not None

    def check(self, header: bytes | None) -> bool:
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == b"bearer" and self.token:
            return hmac.compare_digest(value, self.token.encode("utf-8"))
        if scheme == b"basic" and self.username is not None:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            expected = f"{self.username}:{self.password or ''}".encode("utf-8")
            return hmac.compare_digest(decoded, expected)
        return False

    def challenges(self) -> list[bytes]:
        out = []
        if self.token:
            out.append(f'Bearer realm="{self.realm}"'.encode())
        if self.username is not None:
            out.append(f'Basic realm="{self.realm}"'.encode())
        return out


# --- the resource -------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _error(code: int, message: str, data: str | None, rid: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": rid}


_NO_ID = object()


class MIResource(JSONRPC):
    """JSON-RPC 2.0 over HTTP POST, answering exactly as OpenSIPS mi_http does.

    - POST only (else 405, empty body); empty body 400; over ``max_body`` 413;
      with ``auth`` set, a request without valid credentials gets 401 and runs
      nothing.
    - Every JSON-RPC answer is HTTP 200 ``application/json`` with members
      ``jsonrpc``, ``result``|``error``, ``id`` (the request's id, same type).
    - A notification (no ``id``) that succeeds gets 202 and no body; one that
      fails is answered with its error (``id`` null) so it is not lost.
    - Batches (JSON arrays, at most ``max_batch`` entries) are answered with an
      array, notifications left out; an empty array is -32600.
    """

    isLeaf = True

    def __init__(
        self,
        table: CommandTable,
        *,
        clock: IReactorTime | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_batch: int = DEFAULT_MAX_BATCH,
        auth: MIAuth | None = None,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        super().__init__()
        self.table = table
        self.clock = clock
        self.max_body = max_body
        self.max_batch = max_batch
        self.auth_config = auth or MIAuth()
        self.command_timeout = command_timeout

    # txjsonrpc-ng hooks, kept meaningful for anyone calling them directly.
    def _getFunction(self, functionPath: str) -> Callable[..., Any]:
        cmd = self.table.get(functionPath)
        if cmd is None:
            raise jsonrpclib.NoSuchFunction(METHOD_NOT_FOUND[0], METHOD_NOT_FOUND[1])
        return cmd.handler

    def auth(self, token: Any, func: Any) -> bool:
        return self.auth_config.check(token)

    def _listFunctions(self) -> list[str]:
        return self.table.names()

    # HTTP
    def render(self, request: server.Request) -> Any:
        if request.method != b"POST":
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"allow", b"POST")
            return b""
        if not self.auth(request.getHeader(b"authorization"), None):
            request.setResponseCode(http.UNAUTHORIZED)
            for challenge in self.auth_config.challenges():
                request.responseHeaders.addRawHeader(b"www-authenticate", challenge)
            return b""
        request.content.seek(0, 0)
        body = request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            request.setResponseCode(http.REQUEST_ENTITY_TOO_LARGE)
            return b""
        if not body.strip():
            request.setResponseCode(http.BAD_REQUEST)
            return b""

        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))
        d = self.handle_body(body)

        def write(answer: Any) -> None:
            if finished[0]:
                return
            if answer is None:
                request.setResponseCode(http.ACCEPTED)
            else:
                request.setResponseCode(http.OK)
                request.setHeader(b"content-type", b"application/json")
                request.write(answer)
            request.finish()

        def crashed(f: Failure) -> None:
            log.failure("MI request handling crashed", f)
            if not finished[0]:
                request.setResponseCode(http.INTERNAL_SERVER_ERROR)
                request.finish()

        d.addCallback(write).addErrback(crashed)
        return server.NOT_DONE_YET

    # JSON-RPC, independent of HTTP (tests drive it directly)
    def handle_body(self, body: bytes) -> defer.Deferred:
        """Answer one HTTP body: Deferred of the response bytes, or None (202)."""
        try:
            parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return defer.succeed(_dumps(_error(*PARSE_ERROR, None, None)))
        if isinstance(parsed, list):
            if not parsed:
                return defer.succeed(_dumps(_error(*INVALID_REQUEST, None, None)))
            if len(parsed) > self.max_batch:
                return defer.succeed(_dumps(_error(
                    *INVALID_REQUEST, f"Batch too large (at most {self.max_batch} requests)",
                    None)))
            ds = [self.handle_request(item) for item in parsed]

            def collect(answers: list[Any]) -> bytes | None:
                kept = [a for a in answers if a is not None]
                return _dumps(kept) if kept else None

            return defer.gatherResults(ds, consumeErrors=True).addCallback(collect)
        return self.handle_request(parsed).addCallback(
            lambda a: None if a is None else _dumps(a))

    def handle_request(self, req: Any) -> defer.Deferred:
        """Answer one request object: Deferred of the response dict, or None."""
        if not isinstance(req, dict):
            return defer.succeed(_error(*INVALID_REQUEST, None, None))
        rid = req.get("id", _NO_ID)
        bad_id = rid is not _NO_ID and (
            isinstance(rid, (dict, list, bool)))
        method = req.get("method")
        params = req.get("params")
        if (bad_id or req.get("jsonrpc") != "2.0" or not isinstance(method, str)
                or len(method) > MAX_METHOD_LENGTH
                or not (params is None or isinstance(params, (list, dict)))):
            return defer.succeed(_error(*INVALID_REQUEST, None,
                                        None if bad_id or rid is _NO_ID else rid))
        if params is not None and len(params) > MAX_PARAMS:
            return defer.succeed(_error(*INVALID_PARAMS, ARITY_DATA,
                                        None if rid is _NO_ID else rid))
        notification = rid is _NO_ID
        answer_id = None if notification else rid

        d = self.table.call(method, params)
        if self.clock is not None and self.command_timeout:
            d.addTimeout(self.command_timeout, self.clock)

        def ok(result: Any) -> dict[str, Any] | None:
            if notification:
                return None
            try:
                _dumps(result)
            except (TypeError, ValueError):
                log.error("MI command {method} returned a value that is not JSON: "
                          "{value!r}", method=method, value=result)
                return _error(*INTERNAL_ERROR, None, answer_id)
            return {"jsonrpc": "2.0", "result": result, "id": answer_id}

        def failed(f: Failure) -> dict[str, Any]:
            e = f.value
            if isinstance(e, MIError):
                return _error(e.code, e.message, None, answer_id)
            if isinstance(e, ParamsError):
                return _error(*INVALID_PARAMS, e.data, answer_id)
            if isinstance(e, _RPCError):
                return _error(e.code, e.message, e.data, answer_id)
            if isinstance(e, defer.TimeoutError):
                log.error("MI command {method} timed out", method=method)
                return _error(500, "Command timed out", None, answer_id)
            log.failure("MI command {method} failed", f, method=method)
            return _error(*INTERNAL_ERROR, None, answer_id)

        return d.addCallbacks(ok, failed)


class _BoundedRequest(server.Request):
    """Refuses a body over the site's limit with 413 while it is still arriving.

    Like twisted.web's own answer to a malformed request, the 413 is written
    straight to the connection, which is then closed: the rest of an
    oversized body is never read into memory.
    """

    _mi_seen = 0
    _mi_refused = False

    def _mi_limit(self) -> int | None:
        site = getattr(self.channel, "site", None)
        return getattr(site, "max_body", None)

    def gotLength(self, length: int | None) -> None:
        limit = self._mi_limit()
        if limit is not None and length is not None and length > limit:
            self._mi_refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._mi_refused:
            return
        self._mi_seen += len(data)
        limit = self._mi_limit()
        if limit is not None and self._mi_seen > limit:
            self._mi_refuse()
            return
        super().handleContentChunk(data)

    def _mi_refuse(self) -> None:
        self._mi_refused = True
        channel = self.channel
        if channel is not None and channel.transport is not None:
            channel.transport.write(
                b"HTTP/1.1 413 Request Entity Too Large\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            channel.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._mi_refused:
            return
        super().requestReceived(command, path, version)


class _Root(resource.Resource):
    """Serves its children only; everything else is a plain 404."""

    def getChild(self, path: bytes, request: server.Request) -> resource.IResource:
        return pages.notFound()

    def render(self, request: server.Request) -> bytes:
        return pages.notFound().render(request)


class MISite(server.Site):
    """A Site serving ``resource`` at ``/mi`` (404 elsewhere), bodies bounded."""

    requestFactory = _BoundedRequest

    def __init__(self, mi: MIResource, *, path: bytes = b"mi", idle_timeout: float = 60.0,
                 max_connections: int = 64, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", idle_timeout)  # idle HTTP connections are closed
        root = _Root()
        root.putChild(path, mi)
        super().__init__(root, **kwargs)
        self.max_body = mi.max_body
        self.max_connections = max_connections
        self.open_connections = 0
        self.displayTracebacks = False
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        """At most ``max_connections`` open at once; one more is closed at once."""
        if self.open_connections >= self.max_connections:
            log.warn("MI connection from {addr} refused: {n} connections open (max_connections)",
                     addr=addr, n=self.open_connections)
            return None
        channel = super().buildProtocol(addr)
        self.open_connections += 1
        lost = channel.connectionLost

        def connection_lost(reason: Any) -> None:
            self.open_connections -= 1
            lost(reason)

        channel.connectionLost = connection_lost
        return channel


def make_site(table: CommandTable, *, idle_timeout: float = 60.0, max_connections: int = 64,
              **kwargs: Any) -> MISite:
    """The MI site for ``[mi] http``: ``MIResource(table, **kwargs)`` at ``/mi``."""
    return MISite(MIResource(table, **kwargs), idle_timeout=idle_timeout,
                  max_connections=max_connections)
