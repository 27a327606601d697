"""MSRP frame records (RFC 4975 s.7): headers, requests, responses and their typed views.

Sans-IO. `to_bytes()` hands the record to `serializer.serialize`, which writes only what
s.9 allows; the parser builds these records from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Union

from .grammar import (
    ByteRange,
    MSRPParseError,
    ReportStatus,
    parse_byte_range,
    parse_report_status,
)
from .serializer import serialize

__all__ = ["HeadersArg", "MSRPFrame", "MSRPHeaders", "MSRPRequest", "MSRPResponse"]


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
        return serialize(self.transaction_id, self.method, self.headers, self.body, self.flag, True)


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
        return serialize(self.transaction_id, start, self.headers, b"", "$", False)


MSRPFrame = Union[MSRPRequest, MSRPResponse]
