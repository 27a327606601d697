"""MSRP frame records (RFC 4975 s.7): headers, requests, responses and their typed views.

Sans-IO. `to_bytes()` hands the record to `serializer.serialize`, which writes only what
s.9 allows; the parser builds these records from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, TypeVar, Union

from .grammar import (
    ByteRange,
    MSRPParseError,
    ReportStatus,
    parse_byte_range,
    parse_report_status,
)
from .serializer import serialize

__all__ = ["HeadersArg", "MSRPFrame", "MSRPHeaders", "MSRPRequest", "MSRPResponse"]

_T = TypeVar("_T")


class MSRPHeaders:
    """Ordered, case-insensitive multimap of header name -> str value; names kept as written.

    An incoming SEND is asked for the same headers many times on its way (matching,
    reassembly, the response): the first `get` indexes the block, and typed values (paths,
    Byte-Range, report flags) are kept in `_memo`; every change forgets both.
    """

    __slots__ = ("_items", "_index", "_memo")

    def __init__(
        self, items: Iterable[tuple[str, str]] | Mapping[str, str] | None = None
    ) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._index: dict[str, str] | None = None
        self._memo: dict[str, object] | None = None
        if items is None:
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            self._items.append((name, name.lower(), value))

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]],
                     memo: dict[str, object] | None = None) -> "MSRPHeaders":
        h = cls.__new__(cls)
        h._items = items
        h._index = None
        h._memo = memo
        return h

    def _changed(self) -> None:
        self._index = None
        self._memo = None

    def get(self, name: str, default: str | None = None) -> str | None:
        index = self._index
        if index is None:
            index = {}
            for _, k, v in self._items:
                if k not in index:
                    index[k] = v
            self._index = index
        return index.get(name.lower(), default)

    def _typed(self, key: str, make: Callable[[str | None], _T]) -> _T:
        """`make(value of header key)`, computed once until the headers change."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        elif key in memo:
            return memo[key]  # type: ignore[return-value]  # stored by `make` below
        value = make(self.get(key))
        memo[key] = value
        return value

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for _, k, v in self._items if k == key]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, name.lower(), value))
        if self._index is not None or self._memo is not None:
            self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` by one, at the first one's place (else append)."""
        key = name.lower()
        self._changed()
        for i, (_, k, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (name, key, value)
                self._items[i + 1 :] = [t for t in self._items[i + 1 :] if t[1] != key]
                return
        self._items.append((name, key, value))

    def remove(self, name: str) -> int:
        key = name.lower()
        before = len(self._items)
        self._changed()
        self._items = [t for t in self._items if t[1] != key]
        return before - len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(n, v) for n, _, v in self._items]

    def copy(self) -> "MSRPHeaders":
        return MSRPHeaders._from_parsed(list(self._items), None)

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


def _split(value: str | None) -> tuple[str, ...]:
    return tuple((value or "").split())


def _stripped(value: str | None) -> str | None:
    return None if value is None else value.strip()


def _byte_range(value: str | None) -> ByteRange | None:
    # A bad value raises MSRPParseError each time it is asked for (nothing is kept).
    return None if value is None else parse_byte_range(value)


def _failure(value: str | None) -> str:
    return "yes" if value is None else value.strip().lower()


def _success(value: str | None) -> str:
    return "no" if value is None else value.strip().lower()


HeadersArg = Union[MSRPHeaders, Iterable[tuple[str, str]], Mapping[str, str], None]


def _as_headers(value: HeadersArg) -> MSRPHeaders:
    return value if isinstance(value, MSRPHeaders) else MSRPHeaders(value)


class _Accessors:
    """Typed views of the headers both requests and responses carry."""

    __slots__ = ()
    headers: MSRPHeaders

    @property
    def to_path(self) -> list[str]:
        return list(self.headers._typed("to-path", _split))

    @property
    def from_path(self) -> list[str]:
        return list(self.headers._typed("from-path", _split))

    @property
    def message_id(self) -> str | None:
        return self.headers._typed("message-id", _stripped)

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
        br = self.headers._typed("byte-range", _byte_range)
        if br is None:  # absent: depends on the body, so not kept
            n = len(self.body)
            return ByteRange(1, n, n)
        return br

    @property
    def content_type(self) -> str | None:
        return self.headers._typed("content-type", _stripped)

    @property
    def failure_report(self) -> str:
        return self.headers._typed("failure-report", _failure)

    @property
    def success_report(self) -> str:
        return self.headers._typed("success-report", _success)

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
