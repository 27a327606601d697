"""JSON-RPC 2.0 envelope and dispatch over a CommandTable, independent of HTTP.

``JSONRPCDispatcher.handle_body(bytes)`` answers one HTTP body exactly as OpenSIPS
mi_http does (DESIGN.md's MI wire rules); the HTTP resource only frames it.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .table import (
    ARITY_DATA,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    CommandTable,
    MIError,
    ParamsError,
    RPCError,
)

__all__ = [
    "JSONRPCDispatcher",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_COMMAND_TIMEOUT",
    "MAX_PARAMS",
    "MAX_METHOD_LENGTH",
]

log = Logger(namespace="msrp_gateway.mi")

DEFAULT_MAX_BATCH = 32
DEFAULT_COMMAND_TIMEOUT = 30.0
MAX_PARAMS = 32
MAX_METHOD_LENGTH = 128


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; NaN/Infinity refused (they are not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def error(code: int, message: str, data: str | None, rid: Any) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response object (``data`` left out when None)."""
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": rid}


_NO_ID = object()


class JSONRPCDispatcher:
    """Answers JSON-RPC 2.0 bodies from a CommandTable.

    - Every answer has members ``jsonrpc``, ``result``|``error``, ``id`` (the
      request's id, same type).
    - A notification (no ``id``) that succeeds gets no answer (None); one that
      fails is answered with its error (``id`` null) so it is not lost.
    - Batches (JSON arrays, at most ``max_batch`` entries) are answered with an
      array, notifications left out; an empty array is -32600.
    - With ``clock`` set, a command still running after ``command_timeout``
      seconds is answered 500 "Command timed out".
    """

    def __init__(
        self,
        table: CommandTable,
        *,
        clock: IReactorTime | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
    ) -> None:
        self.table = table
        self.clock = clock
        self.max_batch = max_batch
        self.command_timeout = command_timeout

    def handle_body(self, body: bytes) -> defer.Deferred:
        """Answer one HTTP body: Deferred of the response bytes, or None (202)."""
        try:
            parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return defer.succeed(dumps(error(*PARSE_ERROR, None, None)))
        if isinstance(parsed, list):
            if not parsed:
                return defer.succeed(dumps(error(*INVALID_REQUEST, None, None)))
            if len(parsed) > self.max_batch:
                return defer.succeed(dumps(error(
                    *INVALID_REQUEST, f"Batch too large (at most {self.max_batch} requests)",
                    None)))
            ds = [self.handle_request(item) for item in parsed]

            def collect(answers: list[Any]) -> bytes | None:
                kept = [a for a in answers if a is not None]
                return dumps(kept) if kept else None

            return defer.gatherResults(ds, consumeErrors=True).addCallback(collect)
        return self.handle_request(parsed).addCallback(
            lambda a: None if a is None else dumps(a))

    def handle_request(self, req: Any) -> defer.Deferred:
        """Answer one request object: Deferred of the response dict, or None."""
        if not isinstance(req, dict):
            return defer.succeed(error(*INVALID_REQUEST, None, None))
        rid = req.get("id", _NO_ID)
        bad_id = rid is not _NO_ID and (
            isinstance(rid, (dict, list, bool)))
        method = req.get("method")
        params = req.get("params")
        if (bad_id or req.get("jsonrpc") != "2.0" or not isinstance(method, str)
                or len(method) > MAX_METHOD_LENGTH
                or not (params is None or isinstance(params, (list, dict)))):
            return defer.succeed(error(*INVALID_REQUEST, None,
                                       None if bad_id or rid is _NO_ID else rid))
        if params is not None and len(params) > MAX_PARAMS:
            return defer.succeed(error(*INVALID_PARAMS, ARITY_DATA,
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
                dumps(result)
            except (TypeError, ValueError):
                log.error("MI command {method} returned a value that is not JSON: "
                          "{value!r}", method=method, value=result)
                return error(*INTERNAL_ERROR, None, answer_id)
            return {"jsonrpc": "2.0", "result": result, "id": answer_id}

        def failed(f: Failure) -> dict[str, Any]:
            e = f.value
            if isinstance(e, MIError):
                return error(e.code, e.message, None, answer_id)
            if isinstance(e, ParamsError):
                return error(*INVALID_PARAMS, e.data, answer_id)
            if isinstance(e, RPCError):
                return error(e.code, e.message, e.data, answer_id)
            if isinstance(e, defer.TimeoutError):
                log.error("MI command {method} timed out", method=method)
                return error(500, "Command timed out", None, answer_id)
            log.failure("MI command {method} failed", f, method=method)
            return error(*INTERNAL_ERROR, None, answer_id)

        return d.addCallbacks(ok, failed)
