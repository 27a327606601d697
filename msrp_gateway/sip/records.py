"""SIP requests and responses as records (RFC 3261 s.7), sans-IO: typed accessors parsed
on demand, serialization with Content-Length from the body, and ``make_response``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Union

from .headers import Headers, Via, parse_via, split_list
from .uri import SIPParseError, tag_of

__all__ = ["MAX_CSEQ", "REASON_PHRASES", "SIPMessage", "SIPRequest", "SIPResponse",
           "SIP_VERSION", "make_response", "reason_phrase", "wire_length"]

SIP_VERSION = "SIP/2.0"
MAX_CSEQ = 2**31 - 1  # RFC 3261 s.8.1.1.5: CSeq number < 2**31
CSEQ_RE = re.compile(r"(\d{1,10})[ \t\r\n]+([A-Za-z0-9\-.!%*_+`'~]+)")


_MISSING = object()


class _MessageBase:
    """Typed header accessors shared by requests and responses. Each value is parsed once
    per message and kept in ``headers._typed`` until a header line changes; only immutable
    values are kept there (the top Via is handed out as a fresh copy), so a caller can
    never change what the next caller reads. Malformed values raise every time."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str | None:
        typed = self.headers._typed
        value = typed.get("call-id", _MISSING)
        if value is _MISSING:
            value = typed["call-id"] = self.headers.get("Call-ID")
        return value  # type: ignore[return-value]  # str | None, stored just above

    @property
    def cseq(self) -> tuple[int, str]:
        typed = self.headers._typed
        cached = typed.get("cseq")
        if cached is not None:
            return cached  # type: ignore[return-value]  # a tuple, stored below
        value = self.headers.get("CSeq")
        if value is None:
            raise SIPParseError("missing CSeq")
        m = CSEQ_RE.fullmatch(value.strip(" \t\r\n"))
        if m is None or int(m.group(1)) > MAX_CSEQ:
            raise SIPParseError(f"malformed CSeq {value[:40]!r}")
        result = typed["cseq"] = (int(m.group(1)), m.group(2))
        return result

    @property
    def from_tag(self) -> str | None:
        typed = self.headers._typed
        tag = typed.get("from-tag", _MISSING)
        if tag is _MISSING:
            value = self.headers.get("From")
            tag = typed["from-tag"] = tag_of(value) if value is not None else None
        return tag  # type: ignore[return-value]  # str | None, stored just above

    @property
    def to_tag(self) -> str | None:
        typed = self.headers._typed
        tag = typed.get("to-tag", _MISSING)
        if tag is _MISSING:
            value = self.headers.get("To")
            tag = typed["to-tag"] = tag_of(value) if value is not None else None
        return tag  # type: ignore[return-value]  # str | None, stored just above

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        """The top Via, a copy the caller may change (``set_top_via`` writes it back)."""
        via = self._peek_top_via()
        return Via(via.protocol, via.host, via.port, dict(via.params))

    def _peek_top_via(self) -> Via:
        """The kept top Via itself, for this package's read-only uses (transaction keys,
        response routing): never change it."""
        via = self.headers._typed.get("via")
        if via is None:
            value = self.headers.get("Via")
            if value is None:
                raise SIPParseError("missing Via")
            via = self.headers._typed["via"] = parse_via(split_list(value)[0])
        return via  # type: ignore[return-value]  # a Via, stored just above

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via (e.g. after adding received/rport), keeping the others; a
        copy of ``via`` becomes the kept top Via (the caller may go on changing its own)."""
        self.headers.replace_first_value("Via", str(via))
        self.headers._typed["via"] = Via(via.protocol, via.host, via.port, dict(via.params))

    @property
    def content_type(self) -> str | None:
        typed = self.headers._typed
        ct = typed.get("content-type", _MISSING)
        if ct is _MISSING:
            value = self.headers.get("Content-Type")
            ct = typed["content-type"] = value.strip(" \t\r\n") if value is not None else None
        return ct  # type: ignore[return-value]  # str | None, stored just above

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        value = value.strip(" \t\r\n")
        if not value.isdigit() or len(value) > 10 or int(value) > 255:
            raise SIPParseError(f"malformed Max-Forwards {value[:20]!r}")
        return int(value)


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    """Wire bytes; the (first) Content-Length header is set from the body, in the headers
    too, so a message equals its own parse; later duplicates are dropped."""
    out = [start]
    n = str(len(body))
    items = headers._items
    cl_at = -1
    for i, (lname, name, value) in enumerate(items):
        if lname == "content-length":
            if cl_at >= 0:
                continue
            cl_at = i
            if value != n:
                items[i] = (lname, name, n)
            out.append(f"{name}: {n}")
        else:
            out.append(f"{name}: {value}")
    if cl_at < 0:
        items.append(("content-length", "Content-Length", n))
        out.append(f"Content-Length: {n}")
    elif len(out) != len(items) + 1:
        headers._items = [it for i, it in enumerate(items)
                          if it[0] != "content-length" or i == cl_at]
    out.append("")
    out.append("")
    return "\r\n".join(out).encode("utf-8", "surrogateescape") + body


def _encoded_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


def wire_length(msg: SIPMessage) -> int:
    """``len(msg.to_bytes())`` without building the bytes or touching the headers (the
    stack sizes a request for s.18.1.1 before its Via is added and it is sent)."""
    if isinstance(msg, SIPRequest):
        total = _encoded_len(msg.method) + _encoded_len(msg.uri) + _encoded_len(msg.version) + 2
    else:
        total = _encoded_len(f"{msg.version} {msg.status} {msg.reason}")
    n = str(len(msg.body))
    seen_cl = False
    for lname, name, value in msg.headers._items:
        if lname == "content-length":
            if seen_cl:
                continue
            seen_cl = True
            value = n
        total += _encoded_len(name) + len(value) + 4 if value.isascii() else \
            _encoded_len(name) + _encoded_len(value) + 4  # name, ": ", value, CRLF
    if not seen_cl:
        total += 16 + len(n) + 2  # "Content-Length: " n CRLF
    return total + 4 + len(msg.body)  # CRLF after the start line, CRLF ending the head


@dataclass(slots=True, eq=True)
class SIPRequest(_MessageBase):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is written from the body (one header, in place)."""
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass(slots=True, eq=True)
class SIPResponse(_MessageBase):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        return _serialize(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


SIPMessage = Union[SIPRequest, SIPResponse]


REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}
_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}


def reason_phrase(status: int) -> str:
    """The RFC's phrase for ``status`` (a generic one per class for unknown codes)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


_TAG_SPLIT_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def make_response(
    req: SIPRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SIPResponse:
    """A response to ``req`` (RFC 3261 s.8.2.6): Via, From, To, Call-ID, CSeq copied; the
    To tag added when To has none; Record-Route copied for 1xx/2xx to INVITE (s.12.1.1)."""
    out = Headers()
    items = out._items
    rr = status < 300 and req.method == "INVITE"
    for item in req.headers._items:
        key = item[0]
        if key in ("via", "from", "call-id", "cseq") or (rr and key == "record-route"):
            items.append(item)
        elif key == "to":
            value = item[2]
            if to_tag is not None and _TAG_SPLIT_RE.search(value) is None and status != 100:
                value = f"{value};tag={to_tag}"
            items.append((key, item[1], value))
    for name, value in headers:
        out.add(name, value)
    if content_type is not None:
        out.set("Content-Type", content_type)
    return SIPResponse(status, reason if reason is not None else reason_phrase(status),
                       out, body)
