"""Parsing SIP on bytes (RFC 3261 s.7, s.18.3), sans-IO: one datagram (``parse_message``)
or a stream framed by Content-Length (``StreamParser``). The header block is decoded and
split once; everything a peer controls is bounded by ``Limits``; every failure is a
``SIPParseError`` carrying the status the peer should get (and, when the start line and
headers were readable, the partial message, so it can still be answered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .headers import KNOWN_NAMES, TOKEN_RE, Headers, canonical
from .records import CSEQ_RE, MAX_CSEQ, SIP_VERSION, SIPMessage, SIPRequest, SIPResponse
from .uri import SIPParseError, parse_uri, validate_absolute_uri, validate_name_addr, validate_uri

__all__ = ["DEFAULT_LIMITS", "Limits", "StreamParser", "parse_message"]


@dataclass(slots=True, frozen=True)
class Limits:
    """Bounds on what a peer may send; past them we answer 513 Message Too Large."""

    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = Limits()

_SINGLE_HEADERS = ("call-id", "cseq", "from", "to")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)", re.IGNORECASE)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):[^\s<>]")

_TRACKED = frozenset(("call-id", "cseq", "from", "to", "content-length", "via", "contact",
                      "max-forwards"))
_ANSWER_KEYS = frozenset(("via", "from", "to", "call-id", "cseq"))  # what a response copies


def _answerable(lines: list[str], limits: Limits) -> SIPRequest | None:
    """A request too large to parse, reduced to what its 513 copies (s.8.2.6.2: Via,
    From, To, Call-ID, CSeq), or None when that is not readable: a response, a bad request
    line, or one of those headers on a line over ``max_line_length``. The other header
    lines are skipped unread (their count and length are the problem); the work is one
    pass over lines the caller already bounded by ``max_message_size``."""
    start = lines[0] if lines else ""
    parts = start.split(" ")
    if len(start) > limits.max_line_length or len(parts) != 3 or parts[2] != SIP_VERSION \
            or not TOKEN_RE.fullmatch(parts[0]):
        return None
    msg = SIPRequest(parts[0], parts[1], Headers(), b"", SIP_VERSION)
    items = msg.headers._items
    keep = False
    for line in lines[1:]:
        first = line[:1]
        if first == " " or first == "\t":
            if keep:
                if len(line) > limits.max_line_length:
                    return None
                key, name, value = items[-1]
                cont = line.strip(" \t")
                items[-1] = (key, name, f"{value} {cont}" if value else cont)
            continue
        colon = line.find(":")
        known = KNOWN_NAMES.get(line[:colon]) if colon > 0 else None
        if known is None and colon > 0:
            raw = line[:colon].rstrip(" \t")
            known = canonical(raw) if TOKEN_RE.fullmatch(raw) else None
        keep = known is not None and known[1] in _ANSWER_KEYS
        if keep:
            assert known is not None
            if len(line) > limits.max_line_length:
                return None
            items.append((known[1], known[0], line[colon + 1:].strip(" \t")))
    return msg


def _too_large(reason: str, head: str, limits: Limits) -> SIPParseError:
    """A 513 carrying what is needed to answer it, when that is readable."""
    return SIPParseError(reason, 513, message=_answerable(head.split("\r\n"), limits))


def _parse_head(head: str, limits: Limits) -> tuple[SIPMessage, int | None, dict[str, int]]:
    """Start line and headers -> (message without body, its Content-Length or None, index
    of the first line of each header ``_validate`` reads).

    Raises SIPParseError; once the start line is read, the error carries the partial
    message so a transport can still answer it.
    """
    lines = head.split("\r\n")
    if len(lines) - 1 > limits.max_headers:
        raise SIPParseError("too many header lines", 513,
                            message=_answerable(lines, limits))
    if len(head) > limits.max_line_length and any(
        len(line) > limits.max_line_length for line in lines
    ):
        raise SIPParseError("header line too long", 513, message=_answerable(lines, limits))
    start = lines[0]
    msg: SIPMessage
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SIPParseError("malformed status line")
        version = parts[0]
        if version.upper() != SIP_VERSION:
            raise SIPParseError(f"unsupported version {version[:16]!r}",
                                505 if _VERSION_RE.fullmatch(version) else 400)
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SIPParseError(f"bad status code {code[:16]!r}")
        msg = SIPResponse(int(code), parts[2] if len(parts) == 3 else "", Headers(), b"",
                          SIP_VERSION)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise SIPParseError("malformed request line")
        method, uri, version = parts
        if not TOKEN_RE.fullmatch(method):
            raise SIPParseError(f"bad method {method[:32]!r}")
        if version != SIP_VERSION:
            if _VERSION_RE.fullmatch(version):
                if version.upper() != SIP_VERSION:
                    raise SIPParseError(f"unsupported version {version[:16]!r}", 505)
            else:
                raise SIPParseError(f"bad version {version[:16]!r}")
            version = SIP_VERSION
        msg = SIPRequest(method, uri, Headers(), b"", version)
    items = msg.headers._items
    clen: int | None = None
    index: dict[str, int] = {}
    counts: dict[str, int] = {}
    cl_lines: list[int] = []
    try:
        for line in lines[1:]:
            first = line[:1]
            if first == " " or first == "\t":
                if not items:
                    raise SIPParseError("continuation line before any header")
                key, name, value = items[-1]
                cont = line.strip(" \t")
                items[-1] = (key, name, f"{value} {cont}" if value else cont)
                continue
            colon = line.find(":")
            if colon <= 0:
                raise SIPParseError(f"malformed header line {line[:40]!r}")
            raw = line[:colon]
            known = KNOWN_NAMES.get(raw)
            if known is None:
                raw = raw.rstrip(" \t")
                if not TOKEN_RE.fullmatch(raw):
                    raise SIPParseError(f"bad header name {raw[:40]!r}")
                known = canonical(raw)
            key = known[1]
            if key in _TRACKED:
                if key in counts:
                    counts[key] += 1
                else:
                    counts[key] = 1
                    index[key] = len(items)
                if key == "content-length":
                    cl_lines.append(len(items))
            items.append((key, known[0], line[colon + 1:].strip(" \t")))
        for i in cl_lines:
            v = items[i][2]
            if not v.isdigit() or len(v) > 10:
                raise SIPParseError(f"bad Content-Length {v[:20]!r}")
            n = int(v)
            if clen is not None and n != clen:
                raise SIPParseError("conflicting Content-Length values")
            clen = n
        for key in _SINGLE_HEADERS:
            c = counts.get(key, 0)
            if c != 1:
                raise SIPParseError(f"{'missing' if c == 0 else 'repeated'} {key} header")
        if "via" not in counts:
            raise SIPParseError("missing Via header")
    except SIPParseError as e:
        e.message = msg
        raise
    return msg, clen, index


def _validate(msg: SIPMessage, index: dict[str, int]) -> None:
    """Checks on values a UA relies on; done after framing so the error carries the
    whole message. ``index`` comes from ``_parse_head`` (no header scans here)."""
    items = msg.headers._items
    try:
        cseq = items[index["cseq"]][2]
        m = CSEQ_RE.fullmatch(cseq)
        if m is None or int(m.group(1)) > MAX_CSEQ:
            raise SIPParseError(f"malformed CSeq {cseq[:40]!r}")
        msg.headers._typed["cseq"] = (int(m.group(1)), m.group(2))
        if isinstance(msg, SIPRequest):
            if m.group(2) != msg.method:
                raise SIPParseError("CSeq method does not match the request method")
            uri = msg.uri
            sm = _SCHEME_RE.match(uri)
            if sm is None:
                raise SIPParseError(f"bad Request-URI {uri[:80]!r}")
            scheme = sm.group(1).lower()
            if scheme == "sip" or scheme == "sips":
                if "?" in uri and parse_uri(uri).headers:
                    raise SIPParseError("headers in the Request-URI")
                validate_uri(uri)
            elif scheme == "tel":
                validate_absolute_uri(uri)
            else:
                raise SIPParseError(f"unsupported URI scheme {scheme!r}", 416)
            if "max-forwards" in index:
                mf = items[index["max-forwards"]][2]
                if not mf.isdigit() or len(mf) > 10 or int(mf) > 255:
                    raise SIPParseError(f"malformed Max-Forwards {mf[:20]!r}")
        validate_name_addr(items[index["from"]][2])
        validate_name_addr(items[index["to"]][2])
        if "contact" in index:
            for contact in msg.headers.get_all("Contact"):
                if contact != "*":
                    validate_name_addr(contact)
        msg._peek_top_via()  # validates, and keeps it for stamp_via, response routing, keys
    except SIPParseError as e:
        e.message = msg
        raise


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SIPMessage:
    """Parse one datagram. A body longer than Content-Length is cut to it; a shorter one
    is a 400 (RFC 3261 s.18.3); without Content-Length the rest is the body."""
    if len(data) > limits.max_message_size:
        # read what a 513 copies anyway, so that the sender can be told
        end = data.find(b"\r\n\r\n", 0, limits.max_message_size)
        if end < 0:
            end = data.rfind(b"\r\n", 0, limits.max_message_size)
        head = data[:max(end, 0)].lstrip(b"\r\n").decode("utf-8", "surrogateescape")
        raise _too_large("message too large", head, limits)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # s.7.5: ignore CRLFs before the start line
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SIPParseError("no blank line after the headers")
    head = data[:end].decode("utf-8", "surrogateescape")
    msg, clen, index = _parse_head(head, limits)
    body_start = end + 4
    if clen is None:
        msg.body = data[body_start:]
    else:
        if clen > len(data) - body_start:
            raise SIPParseError("Content-Length larger than the body", message=msg)
        msg.body = data[body_start:body_start + clen]
    _validate(msg, index)
    return msg


class StreamParser:
    """Frames SIP messages on a stream by Content-Length (RFC 3261 s.18.3).

    ``feed`` returns every complete message, plus a ``SIPParseError`` for each framed
    message that was malformed (answer it 400; the stream stays usable). It raises
    ``SIPParseError`` when framing itself fails: close the connection then.
    CRLF keep-alives between messages are skipped; ``pings`` counts double-CRLF pings
    (RFC 5626 s.3.5.1), to be answered by one CRLF.
    Work per byte is constant however the peer splits its data: the search for the end of
    the headers resumes where it stopped, and headers are parsed once while the body comes.
    """

    __slots__ = ("limits", "_buf", "_crlf", "pings", "_broken", "_scan", "_pending")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._crlf = 0
        self.pings = 0
        self._broken = False
        self._scan = 0  # where to resume looking for the blank line
        # headers parsed, body not complete: (message or None, error or None, body length,
        # header index, header bytes incl. the blank line)
        self._pending: tuple[Any, Any, int, Any, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[SIPMessage | SIPParseError]:
        if self._broken:
            raise SIPParseError("stream already failed")
        buf = self._buf
        buf += data
        out: list[SIPMessage | SIPParseError] = []
        limits = self.limits
        pos = 0
        try:
            while True:
                if self._pending is None:
                    # keep-alives between messages
                    while pos < len(buf) and buf[pos] in (13, 10):
                        if buf[pos] == 13:
                            if pos + 1 >= len(buf):
                                break
                            if buf[pos + 1] != 10:
                                raise SIPParseError("bare CR between messages")
                            pos += 2
                        else:
                            pos += 1  # lenient: bare LF
                        self._crlf += 1
                        if self._crlf == 2:
                            self.pings += 1
                            self._crlf = 0
                    if pos >= len(buf) or buf[pos] in (13, 10):
                        break
                    self._crlf = 0
                    end = buf.find(b"\r\n\r\n", max(pos, self._scan))
                    if end < 0 and len(buf) - pos <= limits.max_message_size:
                        self._scan = max(pos, len(buf) - 3)
                        break
                    self._scan = 0
                    if end < 0 or end - pos > limits.max_message_size:
                        limit = pos + limits.max_message_size
                        cut = buf.rfind(b"\r\n", pos, limit)
                        head = bytes(buf[pos:max(cut, pos)]).decode("utf-8", "surrogateescape")
                        raise _too_large("message headers too large", head, limits)
                    head = bytes(buf[pos:end]).decode("utf-8", "surrogateescape")
                    msg: Any = None
                    index: Any = None
                    error: SIPParseError | None = None
                    try:
                        msg, clen, index = _parse_head(head, limits)
                    except SIPParseError as e:
                        if e.code == 513 or e.message is None:
                            raise
                        error = e
                        clen = _lenient_length(head)
                    if clen is None:
                        clen = 0  # s.18.3: mandatory on streams; absent means no body
                    head_len = end + 4 - pos
                    if head_len + clen > limits.max_message_size:
                        # the body will not be read, so the stream's framing is lost:
                        # 513 (answered from the headers, then the connection closes)
                        partial = msg if msg is not None else (
                            error.message if error is not None else None)
                        raise SIPParseError("message too large", 513, message=partial)
                    self._pending = (msg, error, clen, index, head_len)
                msg, error, clen, index, head_len = self._pending
                body_start = pos + head_len
                if len(buf) < body_start + clen:
                    break
                self._pending = None
                if error is not None:
                    out.append(error)
                else:
                    msg.body = bytes(buf[body_start:body_start + clen])
                    try:
                        _validate(msg, index)
                        out.append(msg)
                    except SIPParseError as e:
                        out.append(e)
                pos = body_start + clen
        except SIPParseError:
            self._broken = True
            self._pending = None
            del buf[:]
            raise
        if pos:
            del buf[:pos]
            self._scan = max(0, self._scan - pos)
        return out


_CL_LINE_RE = re.compile(r"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*$",
                         re.IGNORECASE | re.MULTILINE)


def _lenient_length(head: str) -> int | None:
    """Content-Length of a message whose other headers failed, to skip it on a stream.
    An unreadable or conflicting one means the stream cannot be framed: raise."""
    values = set(_CL_LINE_RE.findall(head.replace("\r\n", "\n")))
    if len(values) > 1:
        raise SIPParseError("conflicting Content-Length values on a stream")
    if not values:
        return None
    value = values.pop()
    if not value.isdigit() or len(value) > 10:
        raise SIPParseError("unreadable Content-Length on a stream")
    return int(value)
