"""SIP requests and responses on bytes (RFC 3261 s.7, s.18.3, s.20), sans-IO.

The header block is decoded and split once; typed views (Via, CSeq, tags) are parsed only
when asked. Everything a peer controls is bounded by ``Limits``; every failure is a
``SIPParseError`` carrying the status the peer should get.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Union

from .uri import (
    SIPParseError,
    parse_params,
    parse_uri,
    tag_of,
    validate_name_addr,
    validate_uri,
)

__all__ = [
    "SIPParseError",
    "Limits",
    "DEFAULT_LIMITS",
    "Headers",
    "SIPRequest",
    "SIPResponse",
    "SIPMessage",
    "Via",
    "parse_via",
    "parse_message",
    "StreamParser",
    "make_response",
    "reason_phrase",
    "COMPACT_FORMS",
]

SIP_VERSION = "SIP/2.0"
MAX_CSEQ = 2**31 - 1  # RFC 3261 s.8.1.1.5: CSeq number < 2**31


@dataclass(slots=True, frozen=True)
class Limits:
    """Bounds on what a peer may send; past them we answer 513 (or 413 for a body)."""

    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192


DEFAULT_LIMITS = Limits()

# RFC 3261 s.7.3.3 and later RFCs' compact forms -> canonical long names.
COMPACT_FORMS = {
    "v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
    "l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject",
    "e": "Content-Encoding", "o": "Event", "r": "Refer-To", "u": "Allow-Events",
    "x": "Session-Expires", "a": "Accept-Contact", "b": "Referred-By",
    "y": "Request-Disposition", "j": "Reject-Contact",
}
# Headers whose values are comma-separated lists (RFC 3261 s.7.3.1) and that get_all splits.
_LIST_HEADERS = frozenset(
    n.lower() for n in (
        "Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Allow-Events", "Content-Encoding", "Content-Language", "In-Reply-To", "Path",
        "Service-Route", "Alert-Info", "Call-Info", "Error-Info", "Warning",
        "Accept-Contact", "Reject-Contact", "Request-Disposition",
    )
)
_SINGLE_HEADERS = ("call-id", "cseq", "from", "to")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)", re.IGNORECASE)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):[^\s<>]")
_CSEQ_RE = re.compile(r"(\d{1,10})[ \t\r\n]+([A-Za-z0-9\-.!%*_+`'~]+)")
_VIA_RE = re.compile(
    r"[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t\r\n]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t\r\n]*:[ \t\r\n]*(\d{1,5}))?"
)
# The common Via shape, without LWS: parsed by one match and str.split (about 1 us).
_FAST_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]{2,10}) ((?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*)"
)
_KNOWN_NAMES: dict[str, tuple[str, str]] = {}  # spelling as received -> (canonical, lower); filled below


def _canonical(name: str) -> tuple[str, str]:
    """(name to keep, lower-case key); compact forms become long names."""
    known = _KNOWN_NAMES.get(name)
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
    _KNOWN_NAMES[_n] = (_n, _n.lower())
for _c, _n in COMPACT_FORMS.items():
    _KNOWN_NAMES[_c] = _KNOWN_NAMES[_c.upper()] = (_n, _n.lower())
_KNOWN_NAMES["Call-Id"] = ("Call-Id", "call-id")
_KNOWN_NAMES["Cseq"] = ("Cseq", "cseq")


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
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower name, name, value)
        for name, value in items:
            self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _canonical(name)[1]
        for lname, _, value in self._items:
            if lname == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        key = _canonical(name)[1]
        values = [value for lname, _, value in self._items if lname == key]
        if key in _LIST_HEADERS:
            out: list[str] = []
            for value in values:
                out.extend(split_list(value))
            return out
        return values

    def count(self, name: str) -> int:
        key = _canonical(name)[1]
        return sum(1 for item in self._items if item[0] == key)

    def add(self, name: str, value: str) -> None:
        canon, key = _canonical(name)
        self._items.append((key, canon, value))

    def prepend(self, name: str, value: str) -> None:
        canon, key = _canonical(name)
        self._items.insert(0, (key, canon, value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by one, kept at the first one's place."""
        canon, key = _canonical(name)
        for i, item in enumerate(self._items):
            if item[0] == key:
                self._items[i] = (key, item[1], value)
                self._items[i + 1:] = [it for it in self._items[i + 1:] if it[0] != key]
                return
        self._items.append((key, canon, value))

    def replace_first_value(self, name: str, value: str) -> None:
        """Replace the first list element of ``name`` (e.g. the top Via), keeping the rest."""
        key = _canonical(name)[1]
        for i, (lname, canon, old) in enumerate(self._items):
            if lname == key:
                rest = split_list(old)[1:] if key in _LIST_HEADERS else []
                self._items[i] = (key, canon, ", ".join([value, *rest]))
                return
        raise KeyError(name)

    def remove(self, name: str) -> int:
        key = _canonical(name)[1]
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        return before - len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _canonical(name)[1]
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
    fast = _FAST_VIA_RE.fullmatch(value)
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


class _MessageBase:
    """Typed header accessors shared by requests and responses (parsed on each call)."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq")
        if value is None:
            raise SIPParseError("missing CSeq")
        m = _CSEQ_RE.fullmatch(value.strip(" \t\r\n"))
        if m is None or int(m.group(1)) > MAX_CSEQ:
            raise SIPParseError(f"malformed CSeq {value[:40]!r}")
        return int(m.group(1)), m.group(2)

    @property
    def from_tag(self) -> str | None:
        value = self.headers.get("From")
        return tag_of(value) if value is not None else None

    @property
    def to_tag(self) -> str | None:
        value = self.headers.get("To")
        return tag_of(value) if value is not None else None

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SIPParseError("missing Via")
        return parse_via(split_list(value)[0])

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via (e.g. after adding received/rport), keeping the others."""
        self.headers.replace_first_value("Via", str(via))

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.strip(" \t\r\n") if value is not None else None

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


_TRACKED = frozenset(("call-id", "cseq", "from", "to", "content-length", "via", "contact",
                      "max-forwards"))


def _parse_head(head: str, limits: Limits) -> tuple[SIPMessage, int | None, dict[str, int]]:
    """Start line and headers -> (message without body, its Content-Length or None, index
    of the first line of each header ``_validate`` reads).

    Raises SIPParseError; once the start line is read, the error carries the partial
    message so a transport can still answer it.
    """
    lines = head.split("\r\n")
    if len(lines) - 1 > limits.max_headers:
        raise SIPParseError("too many header lines", 513)
    if len(head) > limits.max_line_length and any(
        len(line) > limits.max_line_length for line in lines
    ):
        raise SIPParseError("header line too long", 513)
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
        if not _TOKEN_RE.fullmatch(method):
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
            known = _KNOWN_NAMES.get(raw)
            if known is None:
                raw = raw.rstrip(" \t")
                if not _TOKEN_RE.fullmatch(raw):
                    raise SIPParseError(f"bad header name {raw[:40]!r}")
                known = _canonical(raw)
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
        m = _CSEQ_RE.fullmatch(cseq)
        if m is None or int(m.group(1)) > MAX_CSEQ:
            raise SIPParseError(f"malformed CSeq {cseq[:40]!r}")
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
            elif scheme != "tel":
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
        via = items[index["via"]][2]
        if "," in via or _FAST_VIA_RE.fullmatch(via) is None:
            msg.top_via  # noqa: B018 - validates
    except SIPParseError as e:
        e.message = msg
        raise


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SIPMessage:
    """Parse one datagram. A body longer than Content-Length is cut to it; a shorter one
    is a 400 (RFC 3261 s.18.3); without Content-Length the rest is the body."""
    if len(data) > limits.max_message_size:
        error = SIPParseError("message too large", 513)
        end = data.find(b"\r\n\r\n", 0, limits.max_message_size)
        if end > 0:  # read the headers anyway, so that the sender can be told 513
            try:
                error.message = _parse_head(
                    data[:end].decode("utf-8", "surrogateescape"), limits)[0]
            except SIPParseError:
                pass
        raise error
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
                    if end < 0:
                        if len(buf) - pos > limits.max_message_size:
                            raise SIPParseError("message headers too large", 513)
                        self._scan = max(pos, len(buf) - 3)
                        break
                    self._scan = 0
                    if end - pos > limits.max_message_size:
                        raise SIPParseError("message headers too large", 513)
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
                        raise SIPParseError("message too large", 413)
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
