"""End-to-end delivery (``[msrp_gateway] delivery = "end_to_end"``): the MESSAGE's final
answer waits for what became of its body on the MSRP side.

This module holds the status tables and ``PendingAnswer``: one MESSAGE whose server
transaction waits, with its timer (the switch itself, ``delivery`` and ``delivery_timeout``,
is a ``registry.GatewaySettings`` field: ``gw.settings.end_to_end``).  The path is short on purpose: the SEND's
Deferred (or the set-up's outcome, for a queued body) settles the ``PendingAnswer``, which
answers the MESSAGE once; the timer answers it first when the MSRP side is slower than
``delivery_timeout``, which is below the sender's Timer F (64*T1 = 32 s), so the sender
always hears a final answer before it gives up.

Statuses (RFC 3428 s.7: 200 says the message reached its destination, 202 only that a
gateway took it on; the MSRP 200 to the SEND is the session-mode peer taking it, so 200):

====================================  =========================================
MSRP outcome of the SEND              SIP final answer to the MESSAGE
====================================  =========================================
200 (transaction response)            200 OK
403                                   403 Forbidden
408 (peer's, or no response in time)  408 Request Timeout
413                                   413 Request Entity Too Large
415                                   415 Unsupported Media Type (+ Accept)
481 (session gone)                    480 Temporarily Unavailable
503 (not connected, queue full,       503 Service Unavailable (+ Retry-After)
connection lost)
anything else (400, 501, 506, ...)    502 Bad Gateway
still queued at delivery_timeout      408 Request Timeout (body dropped: never sent)
sent, no outcome by delivery_timeout  504 Server Time-out (delivery unknown)
session ended before it was sent      480 Temporarily Unavailable
gateway stopping                      503 Service Unavailable
====================================  =========================================

A failed set-up answers every queued MESSAGE from the INVITE's outcome
(``setup_failure_status``): no final answer (Timer B, unusable answer, no MSRP binding) ->
408; 3xx -> 480 (redirects are not followed); 401/407 -> 403; 415/488/606 -> 415 (no common
content type); 487 -> 480; 403, 404, 410, 480, 484, 485, 486, 600, 603, 604 as they are;
other 4xx -> 480; 503, 504 as they are, other 5xx -> 502.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from msrp_gateway.registry import (  # the switch's values, re-exported (__all__)
    DEFAULT_DELIVERY_TIMEOUT,
    END_TO_END,
    HOP,
    MAX_DELIVERY_TIMEOUT,
)
from msrp_gateway.sip.message import reason_phrase

from .replies import RETRY_AFTER, reply

__all__ = [
    "HOP",
    "END_TO_END",
    "DEFAULT_DELIVERY_TIMEOUT",
    "MAX_DELIVERY_TIMEOUT",
    "PendingAnswer",
    "msrp_failure_status",
    "setup_failure_status",
]

log = Logger(namespace="msrp_gateway.gateway")

# MSRP status of a failed SEND (MSRPSendError.code) -> SIP status of the MESSAGE.
_MSRP_TO_SIP = {403: 403, 408: 408, 413: 413, 415: 415, 481: 480, 503: 503}

_SETUP_AS_IS = frozenset({403, 404, 410, 480, 484, 485, 486, 503, 504, 600, 603, 604})


def reason_for(status: int) -> str:
    """RFC 3261's reason phrase for ``status``."""
    return reason_phrase(status)


def msrp_failure_status(code: int | None) -> int:
    """The SIP final answer for a SEND that failed with MSRP status ``code``."""
    return _MSRP_TO_SIP.get(code, 502) if isinstance(code, int) else 502


def setup_failure_status(code: int | None, reason: str | None) -> tuple[int, str]:
    """The SIP final answer for a queued MESSAGE whose session's INVITE failed with
    ``code`` (None: no final answer)."""
    if code is None:
        return 408, "Request Timeout"
    if code in _SETUP_AS_IS:
        return code, reason or reason_for(code)
    if code in (401, 407):
        return 403, "Forbidden"
    if code == 408:
        return 408, "Request Timeout"
    if code in (415, 488, 606):
        return 415, "Unsupported Media Type"
    if 500 <= code < 600:
        return 502, "Bad Gateway"
    return 480, "Temporarily Unavailable"  # 3xx, 487, other 4xx and 6xx


class PendingAnswer:
    """One MESSAGE whose final answer waits for the MSRP side; answered exactly once.

    While its body waits in the session's set-up queue, ``session``/``item`` name it there
    (a timeout then takes the body out: 408, it was never sent); ``on_done`` lets the
    gateway forget it; ``accept`` is the session's types, for a 415's Accept header.
    """

    __slots__ = ("req", "key", "session", "item", "accept", "done", "_timer", "_on_done")

    def __init__(self, req: Any, key: str, clock: Any, timeout: float,
                 on_timeout: Callable[[PendingAnswer], None],
                 on_done: Callable[[PendingAnswer], None]) -> None:
        self.req = req
        self.key = key
        self.session: Any = None
        self.item: Any = None
        self.accept: tuple[str, ...] = ()
        self.done = False
        self._on_done = on_done
        self._timer = clock.callLater(timeout, on_timeout, self)

    @property
    def queued(self) -> bool:
        """Is its body still in the set-up queue (never sent)?"""
        return self.item is not None

    def answer(self, status: int, reason: str | None = None, *,
               headers: Iterable[tuple[str, str]] = ()) -> bool:
        """Send the MESSAGE's final answer (once; later calls do nothing). True if sent."""
        if self.done:
            return False
        self.done = True
        self.item = self.session = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._on_done(self)
        try:
            reply(self.req, status, reason or reason_for(status), headers=headers)
        except Exception as e:  # noqa: BLE001 - a transaction gone away must not break us
            log.warn("gateway session {key}: MESSAGE answer {status} not sent: {error}",
                     key=self.key, status=status, error=str(e))
            return False
        return True

    def outcome(self, code: int) -> int:
        """The SEND's outcome as an MSRP status (200, or the failure's code, already logged
        with the key): answer the MESSAGE with its mapping. Returns ``code`` (for chains)."""
        if 200 <= code < 300:
            self.answer(200, "OK")
            return code
        status = msrp_failure_status(code)
        headers: list[tuple[str, str]] = []
        if status == 503:
            headers.append(("Retry-After", str(RETRY_AFTER)))
        elif status == 415 and self.accept:
            headers.append(("Accept", ", ".join(self.accept)))
        self.answer(status, headers=headers)
        return code
