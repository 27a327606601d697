"""MSRP frames (RFC 4975 s.7, s.9): records, a serializer and an incremental parser.

Sans-IO: `FrameParser.feed(bytes)` returns complete frames as they arrive, whatever the
piece boundaries; nothing here touches a socket or a clock (the caller passes `now` if
it wants `pending_since` to enforce a time bound on a frame that never ends).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Union

__all__ = [
    "ByteRange",
    "DEFAULT_LIMITS",
    "FrameParser",
    "Limits",
    "MSRPFrame",
    "MSRPHeaders",
    "MSRPParseError",
    "MSRPRequest",
    "MSRPResponse",
    "ReportStatus",
    "new_ident",
    "parse_frames",
]


class MSRPParseError(Exception):
    """What was wrong with MSRP input, and what to tell the peer.

    `code` is the MSRP status to answer (400, or 413 for a body over the bound);
    `transaction_id` is set when the broken frame's id is known (answer it, keep the
    connection); `response` is True when the broken frame was a response (never
    answered); `to_path`/`from_path` are the broken frame's paths (lists of URI strings)
    when its headers held them, else None. Raised (not returned) only when framing is
    lost: close the connection.
    """

    def __init__(
        self,
        reason: str,
        code: int = 400,
        transaction_id: str | None = None,
        *,
        response: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.transaction_id = transaction_id
        self.response = response
        self.to_path: list[str] | None = None
        self.from_path: list[str] | None = None

    def __repr__(self) -> str:
        return (
            f"MSRPParseError({self.reason!r}, code={self.code}, "
            f"transaction_id={self.transaction_id!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MSRPParseError):
            return NotImplemented
        return (self.reason, self.code, self.transaction_id, self.response) == (
            other.reason,
            other.code,
            other.transaction_id,
            other.response,
        )

    def __hash__(self) -> int:
        return hash((self.reason, self.code, self.transaction_id, self.response))


@dataclass(slots=True, frozen=True)
class Limits:
    """Bounds the parser enforces on hostile input (all in bytes or counts)."""

    max_line_length: int = 4096  # start line and each header line
    max_header_bytes: int = 16384  # whole header block of one frame
    max_headers: int = 64  # header lines per frame
    max_body_size: int = 16 * 1024 * 1024  # one chunk's body; over it: 413, skipped

    def __post_init__(self) -> None:
        for name in ("max_line_length", "max_header_bytes", "max_headers", "max_body_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"MSRP limit {name} must be a positive integer")


DEFAULT_LIMITS = Limits()

# ident = ALPHANUM 3*31ident-char (RFC 4975 s.9); we accept 1..64 on input, write 4..32.
_IDENT_IN_RE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9.\-+%=]{0,63}\Z")
_IDENT_OUT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}\Z")
_IDENT_STR_IN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{0,63}\Z")
_METHOD_RE = re.compile(r"[A-Z]+\Z")
_STATUS_START_RE = re.compile(r"[0-9]{3}(?: |\Z)")
_HNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~\-]*\Z")
_BYTE_RANGE_RE = re.compile(r"([0-9]{1,18})-([0-9]{1,18}|\*)/([0-9]{1,18}|\*)\Z")
_STATUS_HDR_RE = re.compile(r"([0-9]{3}) ([0-9]{3})(?: (.*))?\Z")
_UTF8TEXT_BAD_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BLOCK_BAD_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_KNOWN_NAMES = frozenset({
    "To-Path", "From-Path", "Message-ID", "Success-Report", "Failure-Report", "Byte-Range",
    "Status", "Content-Type", "Content-ID", "Content-Description", "Content-Disposition",
    "Use-Path", "WWW-Authenticate", "Authorization", "Authentication-Info", "Expires",
    "Min-Expires", "Max-Expires", "Use-Nickname",
})
_KNOWN_LOWER = {n: n.lower() for n in _KNOWN_NAMES}
# Headers that may appear once only (a second one makes the request ambiguous: 400).
_SINGLE = frozenset({"to-path", "from-path", "message-id", "byte-range", "status",
                     "success-report", "failure-report", "content-type"})

_END_MARK = b"-------"
_FLAGS = b"+$#"
_REPORT_VALUES = {"Success-Report": ("yes", "no"), "Failure-Report": ("yes", "no", "partial")}


def new_ident(nbytes: int = 10) -> str:
    """A fresh unguessable ident (transaction id, Message-ID): hex, so always valid."""
    return secrets.token_hex(min(max(nbytes, 2), 16))


class MSRPHeaders:
    """Ordered, case-insensitive multimap of header name -> str value; names kept as written."""

    __slots__ = ("_items",)

    def __init__(
        self, items: Iterable[tuple[str, str]] | Mapping[str, str] | None = None
    ) -> None:
        self._items: list[tuple[str, str, str]] = []
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self._items.append((name, name.lower(), value))

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> "MSRPHeaders":
        h = cls.__new__(cls)
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        for _, k, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for _, k, v in self._items if k == key]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, name.lower(), value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one, at the first one's place (else append)."""
        key = name.lower()
        for i, (_, k, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (name, key, value)
                self._items[i + 1 :] = [t for t in self._items[i + 1 :] if t[1] != key]
                return
        self._items.append((name, key, value))

    def remove(self, name: str) -> int:
        key = name.lower()
        before = len(self._items)
        self._items = [t for t in self._items if t[1] != key]
        return before - len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(n, v) for n, _, v in self._items]

    def copy(self) -> "MSRPHeaders":
        return MSRPHeaders._from_parsed(list(self._items))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(k == key for _, k, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MSRPHeaders):
            return NotImplemented
        return self.items() == other.items()

    def __repr__(self) -> str:
        return f"MSRPHeaders({self.items()!r})"


HeadersArg = Union[MSRPHeaders, Iterable[tuple[str, str]], Mapping[str, str], None]


def _as_headers(value: HeadersArg) -> MSRPHeaders:
    return value if isinstance(value, MSRPHeaders) else MSRPHeaders(value)


@dataclass(slots=True, frozen=True)
class ByteRange:
    """Byte-Range `start-end/total`, 1-based and inclusive; `end`/`total` None for `*`."""

    start: int
    end: int | None
    total: int | None

    def __str__(self) -> str:
        end = "*" if self.end is None else str(self.end)
        total = "*" if self.total is None else str(self.total)
        return f"{self.start}-{end}/{total}"


@dataclass(slots=True, frozen=True)
class ReportStatus:
    """A REPORT's Status header: `namespace code [comment]` (namespace 000 in RFC 4975)."""

    namespace: int
    code: int
    comment: str | None = None

    def __str__(self) -> str:
        text = f"{self.namespace:03d} {self.code:03d}"
        return text if self.comment is None else f"{text} {self.comment}"


def parse_byte_range(value: str) -> ByteRange:
    """Parse and check a Byte-Range value (start >= 1, start <= end + 1, end <= total)."""
    m = _BYTE_RANGE_RE.match(value.strip())
    if m is None:
        raise MSRPParseError(f"bad Byte-Range {value[:40]!r}")
    start = int(m.group(1))
    end = None if m.group(2) == "*" else int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if start < 1:
        raise MSRPParseError("Byte-Range start must be 1 or more")
    if end is not None and end < start - 1:
        raise MSRPParseError("Byte-Range end is before its start")
    if total is not None and end is not None and end > total:
        raise MSRPParseError("Byte-Range end is past its total")
    if total is not None and start > total + 1:
        raise MSRPParseError("Byte-Range start is past its total")
    return ByteRange(start, end, total)


def parse_report_status(value: str) -> ReportStatus:
    m = _STATUS_HDR_RE.match(value.strip())
    if m is None:
        raise MSRPParseError(f"bad Status {value[:40]!r}")
    return ReportStatus(int(m.group(1)), int(m.group(2)), m.group(3))


class _Accessors:
    """Typed views of the headers both requests and responses carry."""

    __slots__ = ()
    headers: MSRPHeaders

    @property
    def to_path(self) -> list[str]:
        return (self.headers.get("To-Path") or "").split()

    @property
    def from_path(self) -> list[str]:
        return (self.headers.get("From-Path") or "").split()

    @property
    def message_id(self) -> str | None:
        value = self.headers.get("Message-ID")
        return None if value is None else value.strip()

    @property
    def use_path(self) -> list[str]:
        """RFC 4976 Use-Path (a relay's 200 to AUTH): the URIs to put before ours."""
        return (self.headers.get("Use-Path") or "").split()

    @property
    def expires(self) -> int | None:
        """RFC 4976 Expires, in seconds; MSRPParseError when not a number."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        value = value.strip()
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            raise MSRPParseError(f"bad Expires {value[:20]!r}")
        return int(value)


@dataclass(slots=True, eq=True)
class MSRPRequest(_Accessors):
    """A request frame: SEND, REPORT, AUTH or any other method (the session answers 501).

    `flag` is the end-line continuation flag: `$` last chunk, `+` more follow, `#` aborted.
    """

    transaction_id: str
    method: str
    headers: MSRPHeaders = field(default_factory=MSRPHeaders)
    body: bytes = b""
    flag: str = "$"

    def __post_init__(self) -> None:
        if not isinstance(self.headers, MSRPHeaders):
            self.headers = _as_headers(self.headers)

    @property
    def byte_range(self) -> ByteRange:
        """The Byte-Range header; absent means the body is the whole message."""
        value = self.headers.get("Byte-Range")
        if value is None:
            n = len(self.body)
            return ByteRange(1, n, n)
        return parse_byte_range(value)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return None if value is None else value.strip()

    @property
    def failure_report(self) -> str:
        value = self.headers.get("Failure-Report")
        return "yes" if value is None else value.strip().lower()

    @property
    def success_report(self) -> str:
        value = self.headers.get("Success-Report")
        return "no" if value is None else value.strip().lower()

    @property
    def status(self) -> ReportStatus | None:
        """A REPORT's Status header (None when absent)."""
        value = self.headers.get("Status")
        return None if value is None else parse_report_status(value)

    def to_bytes(self) -> bytes:
        return _serialize(self.transaction_id, self.method, self.headers, self.body, self.flag, True)


@dataclass(slots=True, eq=True)
class MSRPResponse(_Accessors):
    """A response frame (hop by hop): status code and optional comment, no body."""

    transaction_id: str
    status: int
    comment: str | None = None
    headers: MSRPHeaders = field(default_factory=MSRPHeaders)

    def __post_init__(self) -> None:
        if not isinstance(self.headers, MSRPHeaders):
            self.headers = _as_headers(self.headers)

    def to_bytes(self) -> bytes:
        start = f"{self.status:03d}" if self.comment is None else f"{self.status:03d} {self.comment}"
        return _serialize(self.transaction_id, start, self.headers, b"", "$", False)


MSRPFrame = Union[MSRPRequest, MSRPResponse]

# Header order on the wire (s.9): To-Path, From-Path, other headers, MIME headers,
# Content-Type last (it precedes the blank line).
_MIME_PREFIX = "content-"


def _check_text(name: str, value: str) -> None:
    if _UTF8TEXT_BAD_RE.search(value):
        raise ValueError(f"MSRP header {name} contains a control character")


def _serialize(
    tid: str, start: str, headers: MSRPHeaders, body: bytes, flag: str, is_request: bool
) -> bytes:
    # Our own requests get RFC-size ids (4-32); a response echoes the peer's id, which
    # the parser accepted (1-64), or the peer would never hear back.
    if not (_IDENT_OUT_RE if is_request else _IDENT_STR_IN_RE).match(tid):
        raise ValueError(f"MSRP transaction id {tid!r} is not a valid ident")
    if is_request:
        if not _METHOD_RE.match(start):
            raise ValueError(f"MSRP method {start!r} must be upper-case letters")
    else:
        code, _, comment = start.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise ValueError(f"MSRP status {code!r} must be three digits")
        _check_text("comment", comment)
    if flag not in ("$", "+", "#") or len(flag) != 1:
        raise ValueError(f"MSRP continuation flag {flag!r} must be one of + $ #")
    to_path = headers.get("To-Path")
    from_path = headers.get("From-Path")
    if not to_path or not from_path:
        raise ValueError("MSRP frames need To-Path and From-Path headers")
    content_type = headers.get("Content-Type")
    if not is_request and (body or content_type is not None):
        raise ValueError("MSRP responses carry no body")
    if body and content_type is None:
        raise ValueError("an MSRP body needs a Content-Type header")
    plain: list[str] = [f"To-Path: {to_path}", f"From-Path: {from_path}"]
    mime: list[str] = []
    seen: set[str] = set()
    for name, key, value in headers._items:
        if not _HNAME_RE.match(name):
            raise ValueError(f"bad MSRP header name {name!r}")
        _check_text(name, value)
        if key in _SINGLE:
            if key in seen:
                raise ValueError(f"MSRP header {name} given twice")
            seen.add(key)
            _check_value(name, key, value)
            if key in ("to-path", "from-path", "content-type"):
                continue
        (mime if key.startswith(_MIME_PREFIX) else plain).append(f"{name}: {value}")
    if content_type is not None:
        mime.append(f"Content-Type: {content_type}")
    end_line = _END_MARK + tid.encode("ascii")
    parts = [f"MSRP {tid} {start}\r\n".encode("utf-8"), "\r\n".join(plain).encode("utf-8"), b"\r\n"]
    if content_type is not None:
        if end_line in body and _contains_end_line(body, end_line):
            raise ValueError("MSRP body contains its own end-line; pick another id")
        parts += ["\r\n".join(mime).encode("utf-8"), b"\r\n\r\n", body, b"\r\n"]
    parts += [end_line, flag.encode("ascii"), b"\r\n"]
    return b"".join(parts)


def _check_value(name: str, key: str, value: str) -> None:
    """The headers s.9 gives a syntax must have it on the way out (ValueError if not)."""
    try:
        if key in ("to-path", "from-path"):
            _check_path(name, value)
        elif key == "message-id":
            if not _IDENT_STR_IN_RE.match(value):
                raise ValueError(f"Message-ID {value!r} is not an ident")
        elif key == "byte-range":
            parse_byte_range(value)
        elif key == "status":
            parse_report_status(value)
        elif key in ("success-report", "failure-report"):
            allowed = _REPORT_VALUES["Success-Report" if key[0] == "s" else "Failure-Report"]
            if value.lower() not in allowed:  # ABNF literals are case-insensitive
                raise ValueError(f"{name}: {value!r} is not allowed")
        elif key == "content-type" and "/" not in value:
            raise ValueError(f"Content-Type {value!r} is not a media type")
    except MSRPParseError as e:
        raise ValueError(e.reason) from None


def _contains_end_line(body: bytes, end_line: bytes) -> bool:
    """Would a parser see `end_line` + flag + CRLF inside (or closing early) this body?"""
    framed = b"\r\n" + body + b"\r\n"
    return any(b"\r\n" + end_line + bytes((f,)) + b"\r\n" in framed for f in _FLAGS)


# ----------------------------------------------------------------------------------
# The incremental parser

_S_START, _S_HEADERS, _S_BODY, _S_SKIP, _S_DEAD = range(5)


class FrameParser:
    """Incremental MSRP frame parser: feed pieces, get frames and recoverable errors.

    Work is linear in the bytes fed: each search resumes where the last one stopped.
    A frame that breaks a bound or the grammar but whose end-line can still be found
    comes out as an `MSRPParseError` event carrying its transaction id (answer 400, or
    413 for a body over `max_body_size`, which is skipped without being buffered).
    Lost framing (no `MSRP <id>` start line) raises `MSRPParseError`; the parser is
    then dead and raises again on every feed: close the connection.
    """

    __slots__ = (
        "limits",
        "_buf",
        "_state",
        "_scan",
        "_tid",
        "_tid_b",
        "_end_pat",
        "_start_line",
        "_line_start",
        "_header_block",
        "_body_start",
        "_error",
        "_skipped",
        "_pending_since",
        "_fatal",
    )

    def __init__(self, limits: Limits | None = DEFAULT_LIMITS) -> None:
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self._buf = bytearray()
        self._state = _S_START
        self._scan = 0
        self._tid = ""
        self._tid_b = b""
        self._end_pat = b""
        self._start_line = b""
        self._line_start = 0
        self._header_block = b""
        self._body_start = 0
        self._error: MSRPParseError | None = None
        self._skipped = 0
        self._pending_since: float | None = None
        self._fatal: MSRPParseError | None = None

    # -- what the caller may watch to bound time and memory ----------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of the current incomplete frame received so far (skipped ones included)."""
        return len(self._buf) + self._skipped

    @property
    def pending_since(self) -> float | None:
        """The `now` given to the feed that began the incomplete frame; None when idle."""
        return self._pending_since

    @property
    def buffered(self) -> int:
        """Bytes held in memory right now (bounded by the limits)."""
        return len(self._buf)

    # -- feeding ------------------------------------------------------------------------

    def feed(
        self, data: bytes, now: float | None = None
    ) -> list[MSRPRequest | MSRPResponse | MSRPParseError]:
        if self._fatal is not None:
            raise self._fatal
        if data:
            self._buf += data
        out: list[MSRPRequest | MSRPResponse | MSRPParseError] = []
        try:
            self._run(out)
        except MSRPParseError as e:
            self._fatal = e
            self._state = _S_DEAD
            self._buf = bytearray()
            raise
        if self._buf or self._state != _S_START:
            if self._pending_since is None:
                self._pending_since = now
        else:
            self._pending_since = None
        return out

    def _run(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> None:
        while True:
            state = self._state
            if state == _S_START:
                if not self._parse_start():
                    return
            elif state == _S_HEADERS:
                if not self._parse_headers(out):
                    return
            elif state == _S_BODY:
                if not self._parse_body(out):
                    return
            elif state == _S_SKIP:
                if not self._skip(out):
                    return
            else:  # pragma: no cover - feed() refuses a dead parser
                return

    def _consume(self, end: int) -> None:
        del self._buf[:end]
        self._scan = 0
        self._state = _S_START
        self._pending_since = None
        self._skipped = 0

    def _parse_start(self) -> bool:
        buf = self._buf
        # Tolerate blank lines between frames (some stacks send CRLF keep-alives).
        while buf[:2] == b"\r\n":
            del buf[:2]
        if not buf:
            return False
        if buf[:1] == b"\r" and len(buf) == 1:
            return False
        head = bytes(buf[:5])
        if not b"MSRP ".startswith(head[: len(head)]):
            raise MSRPParseError("stream does not start with an MSRP frame; framing lost")
        i = buf.find(b"\r\n", self._scan)
        if i < 0:
            if len(buf) > self.limits.max_line_length:
                raise MSRPParseError("MSRP start line too long; framing lost")
            self._scan = max(0, len(buf) - 1)
            return False
        if i > self.limits.max_line_length:
            raise MSRPParseError("MSRP start line too long; framing lost")
        line = bytes(buf[:i])
        parts = line.split(b" ", 2)
        if len(parts) < 3 or parts[0] != b"MSRP":
            # Without a transaction id there is no end-line to look for.
            raise MSRPParseError("malformed MSRP start line; framing lost")
        tid_b = parts[1]
        if not _IDENT_IN_RE.match(tid_b):
            raise MSRPParseError("malformed MSRP transaction id; framing lost")
        self._tid_b = tid_b
        self._tid = tid_b.decode("ascii")
        self._end_pat = b"\r\n" + _END_MARK + tid_b
        self._start_line = parts[2]
        self._error = None
        self._header_block = b""
        self._line_start = i + 2
        self._scan = i  # the start line's CRLF may begin the end-line (no headers)
        self._state = _S_HEADERS
        return True

    def _fail(self, reason: str, code: int = 400) -> None:
        if self._error is None:
            self._error = MSRPParseError(
                reason, code, self._tid, response=self._start_line[:1].isdigit()
            )

    def _annotate(self, err: MSRPParseError) -> MSRPParseError:
        """Give a frame-level error the frame's paths, so the 400 can be addressed."""
        err.transaction_id = self._tid
        err.response = self._start_line[:1].isdigit()
        for line in self._header_block.split(b"\r\n"):
            key = line[:10].lower()
            if key.startswith(b"to-path:"):
                err.to_path = line[8:].decode("utf-8", "replace").split()
            elif key.startswith(b"from-path:"):
                err.from_path = line[10:].decode("utf-8", "replace").split()
        return err

    def _enter_skip(self, keep_from: int) -> None:
        # Keep the CRLF before `keep_from` so an end-line right there is still found.
        cut = max(0, keep_from - 2)
        self._skipped += cut
        del self._buf[:cut]
        self._scan = 0
        self._state = _S_SKIP

    def _parse_headers(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        """Find where the header block ends: a blank line (body follows) or our end-line."""
        buf = self._buf
        first = self._line_start - 2  # the start line's own CRLF
        pos = max(self._scan, first)
        i, f = self._find_end(buf, pos)
        j = buf.find(b"\r\n\r\n", pos, i + 2 if i >= 0 else len(buf))
        if j >= 0:
            # A body follows; it ends at the first complete end-line after the blank line.
            self._header_block = bytes(buf[self._line_start : j]) if j > first else b""
            self._body_start = j + 4
            self._scan = j  # lets "\r\n\r\n-------id$" (empty body) match
            self._state = _S_BODY
            if j - self._line_start > self.limits.max_header_bytes:
                self._fail("MSRP header block too large")
            return True
        if i >= 0 and f >= 0:
            self._header_block = bytes(buf[self._line_start : i]) if i > first else b""
            if i - self._line_start > self.limits.max_header_bytes:
                self._fail("MSRP header block too large")
            out.append(self._finish(b"", chr(f), False))
            self._consume(i + len(self._end_pat) + 3)
            return True
        self._scan = i if i >= 0 else max(pos, len(buf) - len(self._end_pat))
        if len(buf) - self._line_start > self.limits.max_header_bytes:
            self._header_block = bytes(buf[self._line_start : self._line_start + 4096])
            self._fail("MSRP header block too large")
            self._enter_skip(self._scan + 2)
            return True
        return False

    def _find_end(self, buf: bytearray, pos: int) -> tuple[int, int]:
        """(index of CRLF-------id, flag byte) from `pos`; (-1, 0) if none, (i, -1) if partial."""
        pat = self._end_pat
        plen = len(pat)
        while True:
            i = buf.find(pat, pos)
            if i < 0:
                return -1, 0
            if len(buf) < i + plen + 3:
                return i, -1
            f = buf[i + plen]
            if f in _FLAGS and buf[i + plen + 1 : i + plen + 3] == b"\r\n":
                return i, f
            pos = i + 1

    def _parse_body(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        buf = self._buf
        i, f = self._find_end(buf, self._scan)
        if i >= 0 and f >= 0:
            if i - self._body_start > self.limits.max_body_size:
                self._fail(f"MSRP body larger than {self.limits.max_body_size} bytes", code=413)
                body = b""
            else:
                body = bytes(buf[self._body_start : i]) if i > self._body_start else b""
            out.append(self._finish(body, chr(f), True))
            self._consume(i + len(self._end_pat) + 3)
            return True
        if i >= 0:  # end-line candidate not complete yet
            self._scan = i
        else:
            self._scan = max(self._scan, len(buf) - len(self._end_pat) + 1)
        if len(buf) - self._body_start > self.limits.max_body_size:
            self._fail(
                f"MSRP body larger than {self.limits.max_body_size} bytes", code=413
            )
            self._enter_skip(self._scan + 2)
            return True
        return False

    def _skip(self, out: list[MSRPRequest | MSRPResponse | MSRPParseError]) -> bool:
        buf = self._buf
        i, f = self._find_end(buf, 0)
        if i >= 0 and f >= 0:
            assert self._error is not None
            out.append(self._annotate(self._error))
            self._consume(i + len(self._end_pat) + 3)
            return True
        keep_from = i if i >= 0 else max(0, len(buf) - len(self._end_pat) + 1)
        self._skipped += keep_from
        del buf[:keep_from]
        return False

    # -- building the frame -------------------------------------------------------------

    def _finish(
        self, body: bytes, flag: str, has_body: bool
    ) -> MSRPRequest | MSRPResponse | MSRPParseError:
        if self._error is not None:
            return self._annotate(self._error)
        try:
            return _build(self._tid, self._start_line, self._header_block, body, flag,
                          has_body, self.limits)
        except MSRPParseError as e:
            return self._annotate(e)


_path_ok: dict[str, bool] = {}
_PATH_CACHE_MAX = 4096


def _check_path(name: str, value: str) -> None:
    """Every URI of a path must parse; results cached (paths repeat for a session)."""
    if _path_ok.get(value):
        return
    from .uri import parse_msrp_uri

    uris = value.split()
    if not uris:
        raise MSRPParseError(f"empty {name}")
    for u in uris:
        parse_msrp_uri(u)
    if len(_path_ok) >= _PATH_CACHE_MAX:
        _path_ok.clear()
    _path_ok[value] = True


def _build(
    tid: str,
    start: bytes,
    raw_block: bytes,
    body: bytes,
    flag: str,
    has_body: bool,
    limits: Limits = DEFAULT_LIMITS,
) -> MSRPRequest | MSRPResponse:
    try:
        start_s = start.decode("utf-8")
        block = raw_block.decode("utf-8")
    except UnicodeDecodeError:
        raise MSRPParseError("MSRP start line or headers are not UTF-8") from None
    items: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    if block:
        lines = block.split("\r\n")
        if len(lines) > limits.max_headers:
            raise MSRPParseError("too many MSRP header lines")
        # One scan for control characters; bare CR or LF would end a line in other stacks.
        if _BLOCK_BAD_RE.search(block) or block.count("\r") != len(lines) - 1 or (
            block.count("\n") != len(lines) - 1
        ):
            raise MSRPParseError("control character in MSRP headers")
        max_line = limits.max_line_length
        for line in lines:
            name, colon, value = line.partition(":")
            key = _KNOWN_LOWER.get(name)
            if key is None:
                if not colon or not _HNAME_RE.match(name):
                    raise MSRPParseError(f"malformed MSRP header line {line[:40]!r}")
                key = name.lower()
            elif not colon:
                raise MSRPParseError(f"malformed MSRP header line {line[:40]!r}")
            if len(line) > max_line:
                raise MSRPParseError(f"MSRP header {name} too long")
            value = value.strip(" \t")
            if key in _SINGLE:
                if key in seen:
                    raise MSRPParseError(f"duplicate MSRP header {name}")
                seen[key] = value
            items.append((name, key, value))
    headers = MSRPHeaders._from_parsed(items)
    for key, label in (("to-path", "To-Path"), ("from-path", "From-Path")):
        if key not in seen:
            raise MSRPParseError(f"missing {label}")
        _check_path(label, seen[key])
    if _STATUS_START_RE.match(start_s):
        if has_body and (body or "content-type" in seen):
            raise MSRPParseError("an MSRP response carries no body")
        comment = start_s[4:] if len(start_s) > 3 else None
        if comment is not None and _UTF8TEXT_BAD_RE.search(comment):
            raise MSRPParseError("control character in response comment")
        return MSRPResponse(tid, int(start_s[:3]), comment, headers)
    if not _METHOD_RE.match(start_s):
        raise MSRPParseError(f"malformed MSRP method {start_s[:20]!r}")
    if start_s in ("SEND", "REPORT"):
        mid = seen.get("message-id")
        if mid is None:
            raise MSRPParseError(f"{start_s} without Message-ID")
        if not _IDENT_STR_IN_RE.match(mid):
            raise MSRPParseError("malformed Message-ID")
    br = seen.get("byte-range")
    if br is not None:
        parse_byte_range(br)
    st = seen.get("status")
    if st is not None:
        parse_report_status(st)
    if start_s == "REPORT" and st is None:
        raise MSRPParseError("REPORT without Status")
    for hname, allowed in _REPORT_VALUES.items():
        v = seen.get(hname.lower())
        if v is not None and v.lower() not in allowed:
            raise MSRPParseError(f"{hname} must be one of {', '.join(allowed)}")
    return MSRPRequest(tid, start_s, headers, body, flag)


def parse_frames(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[MSRPRequest | MSRPResponse | MSRPParseError]:
    """Parse complete frames held in one buffer (tests, tools); trailing bytes must be none."""
    parser = FrameParser(limits)
    frames = parser.feed(data)
    if parser.pending_bytes:
        raise MSRPParseError("incomplete MSRP frame at end of data")
    return frames
