"""The MI HTTP side: access control, the JSON-RPC resource and the bounded site.

Built on txjsonrpc-ng's ``JSONRPC`` resource through a thin subclass: the
library looks methods up as ``jsonrpc_<name>`` (no ``:``), renders ``None`` as
an empty body, reports arity errors as code 8002 with a Python repr and answers
malformed JSON and batches in a pre-1.0 envelope.  ``MIResource`` keeps the
resource and its hooks (``_getFunction``, ``auth``) and replaces only the
request handling, which it hands to ``rpc.JSONRPCDispatcher``, so every answer
follows DESIGN.md's MI wire rules.

Body size: a request whose body is over ``max_body`` bytes gets HTTP 413 with an
empty body, before any JSON is parsed (``MISite`` refuses it while it is still
arriving; the resource checks again when mounted elsewhere).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server
from txjsonrpc_ng import jsonrpclib
from txjsonrpc_ng.web.jsonrpc import JSONRPC

from .rpc import DEFAULT_COMMAND_TIMEOUT, DEFAULT_MAX_BATCH, JSONRPCDispatcher
from .table import METHOD_NOT_FOUND, CommandTable

__all__ = ["MIAuth", "MIResource", "MISite", "make_site", "DEFAULT_MAX_BODY"]

log = Logger(namespace="msrp_gateway.mi")

DEFAULT_MAX_BODY = 64 * 1024


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


class MIResource(JSONRPC):
    """JSON-RPC 2.0 over HTTP POST, answering exactly as OpenSIPS mi_http does.

    - POST only (else 405, empty body); empty body 400; over ``max_body`` 413;
      with ``auth`` set, a request without valid credentials gets 401 and runs
      nothing.
    - Every JSON-RPC answer is HTTP 200 ``application/json``; a request that
      needs no answer (a notification that succeeded) gets 202 and no body.
    - The answers themselves are ``JSONRPCDispatcher``'s (``handle_body``,
      ``handle_request`` are its, re-exposed here).
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
        self.dispatcher = JSONRPCDispatcher(table, clock=clock, max_batch=max_batch,
                                            command_timeout=command_timeout)
        self.max_body = max_body
        self.auth_config = auth or MIAuth()

    # The dispatcher's settings, readable and settable here as before the split.
    @property
    def table(self) -> CommandTable:
        return self.dispatcher.table

    @table.setter
    def table(self, value: CommandTable) -> None:
        self.dispatcher.table = value

    @property
    def clock(self) -> IReactorTime | None:
        return self.dispatcher.clock

    @clock.setter
    def clock(self, value: IReactorTime | None) -> None:
        self.dispatcher.clock = value

    @property
    def max_batch(self) -> int:
        return self.dispatcher.max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self.dispatcher.max_batch = value

    @property
    def command_timeout(self) -> float:
        return self.dispatcher.command_timeout

    @command_timeout.setter
    def command_timeout(self, value: float) -> None:
        self.dispatcher.command_timeout = value

    def handle_body(self, body: bytes) -> defer.Deferred:
        """Answer one HTTP body: Deferred of the response bytes, or None (202)."""
        return self.dispatcher.handle_body(body)

    def handle_request(self, req: Any) -> defer.Deferred:
        """Answer one request object: Deferred of the response dict, or None."""
        return self.dispatcher.handle_request(req)

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
