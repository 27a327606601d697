"""What the script functions give back: their return codes and the SIP answers they send.

Shared by both directions of the gateway; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "SETUP_FAILED_EVENT",
    "OK",
    "PENDING",
    "ERR_PARAMS",
    "ERR_DUPLICATE",
    "ERR_LIMIT",
    "ERR_UA",
    "RETRY_AFTER",
    "reply",
    "reason_of",
    "status_of",
]

SETUP_FAILED_EVENT = "E_MSRP_GW_SETUP_FAILED"

# Script function return codes: 1 ok, negative on error (as OpenSIPS; the negatives tell why).
OK = 1
# delivery = "end_to_end": the body is accepted, the MESSAGE's final answer follows the MSRP
# outcome (positive, so `if rc > 0` scripts read it as success; the request is then owned).
PENDING = 2
ERR_PARAMS = -1  # bad key, URI, body or content type: nothing created
ERR_DUPLICATE = -2  # msrp_gw_answer with a key already in use
ERR_LIMIT = -3  # max_sessions or the per-session queue bound: 503
ERR_UA = -4  # the UA refused or the gateway is stopping

# Seconds a page-mode sender is asked to wait (Retry-After) when a bound refuses its MESSAGE.
RETRY_AFTER = 5


def reply(req: Any, code: int, reason: str | None = None, *,
          headers: Iterable[tuple[str, str]] = ()) -> None:
    """Answer the script's request unless something already did."""
    if getattr(req, "responded", False):
        return
    req.reply(code, reason, headers=list(headers))


def reason_of(code: int) -> str:
    """The reason phrase the gateway sends with ``code``."""
    return {400: "Bad Request", 415: "Unsupported Media Type", 486: "Busy Here",
            488: "Not Acceptable Here", 500: "Server Internal Error",
            503: "Service Unavailable"}.get(code, "Error")


def status_of(error: BaseException | None) -> int:
    """The SIP status an error carries (its ``code``), 500 when it carries none."""
    code = getattr(error, "code", None)
    return code if isinstance(code, int) and 400 <= code <= 699 else 500
