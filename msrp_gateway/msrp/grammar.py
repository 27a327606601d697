"""The lexical rules of MSRP (RFC 4975 s.9) shared by the records, serializer and parser.

Sans-IO and dependency-free: one error type (`MSRPParseError`), the parser's bounds
(`Limits`), the compiled grammar pieces, and the small value parsers (Byte-Range, Status,
paths) that both directions check against.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "ByteRange",
    "DEFAULT_LIMITS",
    "Limits",
    "MSRPParseError",
    "ReportStatus",
    "new_ident",
    "parse_byte_range",
    "parse_report_status",
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


@functools.lru_cache(maxsize=4096)
def byte_range_cached(value: str) -> ByteRange:
    """`parse_byte_range` for the parser's hot path: chat messages repeat their few sizes,
    so a bounded cache of the (immutable) results saves the regex; errors are not kept."""
    return parse_byte_range(value)


def parse_report_status(value: str) -> ReportStatus:
    m = _STATUS_HDR_RE.match(value.strip())
    if m is None:
        raise MSRPParseError(f"bad Status {value[:40]!r}")
    return ReportStatus(int(m.group(1)), int(m.group(2)), m.group(3))



def _check_text(name: str, value: str) -> None:
    if _UTF8TEXT_BAD_RE.search(value):
        raise ValueError(f"MSRP header {name} contains a control character")



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

