"""SIP header fields (RFC 3261 s.7.3, s.20), sans-IO: the ``Headers`` multimap with compact
forms and comma lists, and the ``Via`` value. No message, no parser: those build on this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .uri import SIPParseError, parse_params

__all__ = ["COMPACT_FORMS", "Headers", "Via", "parse_via", "split_list"]

# RFC 3261 s.7.3.3 and later RFCs' compact forms -> canonical long names.
COMPACT_FORMS = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
    "l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject",
    "e": "Content-Encoding", "o": "Event", "r": "Refer-To", "u": "Allow-Events",
    "x": "Session-Expires", "a": "Accept-Contact", "b": "Referred-By",
    "y": "Request-Disposition", "j": "Reject-Contact",
}
# Headers whose values are comma-separated lists (RFC 3261 s.7.3.1) and that get_all splits.
LIST_HEADERS = frozenset(
    n.lower() for n in (
        "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Allow-Events", "Content-Encoding", "Content-Language", "In-Reply-To", "Path",
        "Service-Route", "Alert-Info", "Call-Info", "Error-Info", "Warning",
        "Accept-Contact", "Reject-Contact", "Request-Disposition",
    )
)
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VIA_RE = re.compile(
    r"[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t\r\n]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t\r\n]*:[ \t\r\n]*(\d{1,5}))?"
)
# The common Via shape, without LWS: parsed by one match and str.split (about 1 us).
FAST_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]{2,10}) ((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*)"
)
KNOWN_NAMES: dict[str, tuple[str, str]] = {}  # spelling as received -> (canonical, lower); filled below


def canonical(name: str) -> tuple[str, str]:
    """(name to keep, lower-case key); compact forms become long names."""
    known = KNOWN_NAMES.get(name)
    if known is not None:
        return known
    if len(name) == 1:
        long = COMPACT_FORMS.get(name.lower())
        if long is not None:
            return long, long.lower()
    return name, name.lower()


for _n in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type",
    "Max-Forwards", "Route", "Record-Route", "User-Agent", "Server", "Allow", "Supported",
    "Expires", "Date", "Accept", "Require", "Subject", "Event", "P-Asserted-Identity",
):
    KNOWN_NAMES[_n] = (_n, _n.lower())
for _c, _n in COMPACT_FORMS.items():
    KNOWN_NAMES[_c] = KNOWN_NAMES[_c.upper()] = (_n, _n.lower())
KNOWN_NAMES["Call-Id"] = ("Call-Id", "call-id")
KNOWN_NAMES["Cseq"] = ("Cseq", "cseq")


def split_list(value: str) -> list[str]:
    """Split a comma list, ignoring commas inside quotes, ``<...>`` and escapes."""
    if "," not in value:
        return [value]
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            item = value[start:i].strip(" \t\r\n")
            if item:
                out.append(item)
            start = i + 1
        i += 1
    item = value[start:].strip(" \t\r\n")
    if item:
        out.append(item)
    return out


class Headers:
    """Ordered, case-insensitive multimap of header name -> value (str).

    Values are stored as they came (one entry per header line); ``get_all`` splits comma
    lists of list headers. Compact names are stored under their long names.
    ``_typed`` holds values the message accessors parsed from these lines (top Via, CSeq,
    tags...): every method that changes a line clears it, so a value is parsed once per
    message and never outlives the text it came from. Code in this package that writes
    ``_items`` directly calls ``_changed()``.
    """

    __slots__ = ("_items", "_typed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower name, name, value)
        self._typed: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    def _changed(self) -> None:
        """Forget the parsed values (a line was added, changed or removed)."""
        if self._typed:
            self._typed.clear()

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name)[1]
        for lname, _, value in self._items:
            if lname == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)[1]
        values = [value for lname, _, value in self._items if lname == key]
        if key in LIST_HEADERS:
            out: list[str] = []
            for value in values:
                out.extend(split_list(value))
            return out
        return values

    def count(self, name: str) -> int:
        key = canonical(name)[1]
        return sum(1 for item in self._items if item[0] == key)

    def add(self, name: str, value: str) -> None:
        canon, key = canonical(name)
        self._items.append((key, canon, value))
        if self._typed:
            self._typed.clear()

    def prepend(self, name: str, value: str) -> None:
        canon, key = canonical(name)
        self._items.insert(0, (key, canon, value))
        if self._typed:
            self._typed.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by one, kept at the first one's place."""
        canon, key = canonical(name)
        self._changed()
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items[i] = (key, item[1], value)
                self._items[i + 1:] = [it for it in self._items[i + 1:] if it[0] != key]
                return
        self._items.append((key, canon, value))

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first list element of ``name`` (e.g. the top Via), keeping the rest."""
        key = canonical(name)[1]
        self._changed()
        for i, (lname, canon, old) in enumerate(self._items):
            if lname == key:
                rest = split_list(old)[1:] if key in LIST_HEADERS else []
                self._items[i] = (key, canon, ", ".join([value, *rest]))
                return
        raise KeyError(name)

    def remove(self, name: str) -> int:
        key = canonical(name)[1]
        self._changed()
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        return before - len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        if self._typed:  # values are immutable or copied on the way out: safe to share
            new._typed = dict(self._typed)
        return new

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical(name)[1]
        return any(item[0] == key for item in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


@dataclass(slots=True)
class Via:
    """One Via value. ``protocol`` is the transport token as sent (``UDP``, ``TCP``, ``TLS``);
    ``host`` has no IPv6 brackets; ``params`` keeps order, names lower-cased, a valueless
    parameter (``rport`` as sent by a client) maps to None."""

    protocol: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by a server; None if absent or still empty
        (test ``"rport" in via.params`` for the client's request)."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        out = f"SIP/2.0/{self.protocol} {host}" if self.port is None else \
            f"SIP/2.0/{self.protocol} {host}:{self.port}"
        if self.params:
            out += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return out


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma list); LWS around ``/`` and ``:`` is allowed."""
    fast = FAST_VIA_RE.fullmatch(value)
    if fast is not None:
        proto, host, port, ptext = fast.groups()
        port_num = int(port) if port is not None else None
        if port_num is None or 0 < port_num <= 65535:
            if host[0] == "[":
                host = host[1:-1]
            fparams: dict[str, str | None] = {}
            if ptext:
                for item in ptext[1:].split(";"):
                    k, eq, v = item.partition("=")
                    fparams[k.lower()] = v if eq else None
            return Via(proto.upper(), host, port_num, fparams)
    m = _VIA_RE.match(value)
    if m is None:
        raise SIPParseError(f"malformed Via {value[:80]!r}")
    name, version, proto, host, port = m.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise SIPParseError(f"unsupported Via protocol {name}/{version}")
    if host.startswith("["):
        host = host[1:-1]
    port_num = int(port) if port is not None else None
    if port_num is not None and not 0 < port_num <= 65535:
        raise SIPParseError(f"bad Via port {port}")
    rest = value[m.end():]
    params: dict[str, str | None] = {}
    if rest.strip(" \t\r\n"):
        for k, v in parse_params(rest, "Via").items():
            params[k.lower()] = v
    return Via(proto.upper(), host, port_num, params)
