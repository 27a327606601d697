"""SDP offer/answer for MSRP media (RFC 4975 s.8, RFC 4566, RFC 3264, RFC 6135).

Sans-IO: bytes in, records out, and the reverse. Only what an MSRP user agent needs is
read (connection address, the ``message`` media lines and their MSRP attributes); every
other line is kept as written so an answer can reject foreign media in offer order.
Every failure is an :class:`SDPError` carrying the SIP status (488) and a Warning text.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

__all__ = [
    "SDPError",
    "MediaLine",
    "SessionDescription",
    "MSRPMedia",
    "Negotiated",
    "parse_sdp",
    "find_msrp_media",
    "build_offer",
    "build_answer",
    "read_answer",
    "intersect_types",
    "new_session_id",
    "local_path",
    "proto_for_uri",
    "MAX_SDP_SIZE",
]

# Bounds for hostile input: a real MSRP offer is a few hundred bytes.
MAX_SDP_SIZE = 16384
MAX_LINES = 256
MAX_MEDIA = 32
MAX_PATH_URIS = 16
MAX_TYPES = 64

PROTO_TCP = "TCP/MSRP"
PROTO_TLS = "TCP/TLS/MSRP"
SETUP_VALUES = ("active", "passive", "actpass", "holdconn")

# RFC 3261 s.20.43 Warning code 304 "Media type not available", 305 "Incompatible media format".
WARN_MEDIA = 304
WARN_FORMAT = 305


class SDPError(Exception):
    """An SDP body we cannot use: ``code`` is the SIP status, ``warning`` the Warning text."""

    def __init__(self, reason: str, code: int = 488, warn_code: int = WARN_FORMAT) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.warn_code = warn_code

    def warning(self, agent: str = "msrpgw") -> str:
        """The Warning header value (RFC 3261 s.20.43) to send with the refusal."""
        text = self.reason.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.warn_code} {agent} "{text}"'


@dataclass(slots=True)
class MediaLine:
    """One ``m=`` section: the line's fields and its attributes in order (name, value|None)."""

    media: str
    port: int
    proto: str
    fmts: list[str]
    connection: str | None = None  # media-level c= address, if any
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None


@dataclass(slots=True)
class SessionDescription:
    """A parsed SDP body: session-level connection/attributes and the media sections."""

    origin: str
    connection: str | None
    attributes: list[tuple[str, str | None]]
    media: list[MediaLine]


@dataclass(slots=True)
class MSRPMedia:
    """What a peer's MSRP media line tells us (RFC 4975 s.8)."""

    index: int  # position among the m= lines
    proto: str  # TCP/MSRP or TCP/TLS/MSRP
    port: int
    address: str | None
    path: list[str]  # a=path, first hop first (relays before the peer's own URI)
    accept_types: list[str]
    accept_wrapped_types: list[str]
    setup: str | None  # a=setup as written (lower-cased) or None when absent
    max_size: int | None

    @property
    def tls(self) -> bool:
        return self.proto == PROTO_TLS


@dataclass(slots=True)
class Negotiated:
    """An answer we built: the body, the peer's stream, the types agreed, who connects."""

    body: bytes
    peer: MSRPMedia
    accept_types: list[str]
    accept_wrapped_types: list[str]
    active: bool  # True: we open the MSRP connection and bind; False: we wait for the peer


# ---------------------------------------------------------------- helpers


def new_session_id() -> str:
    """An unguessable MSRP session-id (RFC 4975 s.14.1: at least 80 bits of randomness)."""
    return secrets.token_urlsafe(15)


def _split_uri(uri: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, rest) of an msrp(s) URI, host without IPv6 brackets."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in ("msrp", "msrps"):
        raise SDPError(f"not an MSRP URI: {uri[:80]!r}")
    end = len(rest)
    for ch in "/;":
        pos = rest.find(ch)
        if pos != -1 and pos < end:
            end = pos
    authority, tail = rest[:end], rest[end:]
    authority = authority.rpartition("@")[2]
    port: int | None = None
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise SDPError(f"bad IPv6 reference in {uri[:80]!r}")
        host = authority[1:close]
        after = authority[close + 1 :]
        if after.startswith(":"):
            port = _port(after[1:], uri)
        elif after:
            raise SDPError(f"bad authority in {uri[:80]!r}")
    else:
        host, colon, port_text = authority.partition(":")
        if colon:
            port = _port(port_text, uri)
    if not host:
        raise SDPError(f"no host in {uri[:80]!r}")
    return scheme.lower(), host, port, tail


def _port(text: str, uri: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise SDPError(f"bad port in {uri[:80]!r}")
    return int(text)


def local_path(my_uri: str, session_id: str, relay_path: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Our a=path: relays (first hop first), then my_uri with ``/session_id`` inserted."""
    scheme, host, port, tail = _split_uri(my_uri)
    params = tail[tail.find(";") :] if ";" in tail else ";tcp"
    hostpart = f"[{host}]" if ":" in host else host
    portpart = f":{port}" if port is not None else ""
    return [*relay_path, f"{scheme}://{hostpart}{portpart}/{session_id}{params}"]


def proto_for_uri(uri: str) -> str:
    """The m= proto that a path URI's scheme implies."""
    return PROTO_TLS if _split_uri(uri)[0] == "msrps" else PROTO_TCP


def _addr(host: str) -> str:
    """``IN IP4 host`` / ``IN IP6 host`` for a c= or o= line."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"IN IP4 {host}"  # an FQDN (RFC 4566 s.5.7 allows it)
    return f"IN IP{ip.version} {ip.compressed}"


def _type_ok(t: str) -> bool:
    if t == "*":
        return True
    major, slash, minor = t.partition("/")
    return bool(slash and major and minor and major != "*" and " " not in t)


def _types(value: str | None, what: str) -> list[str]:
    if value is None:
        return []
    items = value.split()
    if len(items) > MAX_TYPES:
        raise SDPError(f"too many {what} ({len(items)})")
    for t in items:
        if not _type_ok(t):
            raise SDPError(f"bad media type {t[:60]!r} in {what}")
    return items


def _match(a: str, b: str) -> bool:
    if a == "*" or b == "*":
        return True
    ma, _, sa = a.partition("/")
    mb, _, sb = b.partition("/")
    return ma == mb and (sa == sb or sa == "*" or sb == "*")


def _narrower(a: str, b: str) -> str:
    if a == "*" or (a.endswith("/*") and b != "*"):
        return b
    return a


def intersect_types(offered: list[str], ours: list[str]) -> list[str]:
    """The types both sides take, in offer order; ``*`` and ``type/*`` match as wildcards.

    Comparison is case-insensitive (RFC 2045); the narrower of two matching types is kept.
    """
    out: list[str] = []
    seen: set[str] = set()
    ours_l = [u.lower() for u in ours]
    for o in offered:
        ol = o.lower()
        for ul in ours_l:
            if _match(ol, ul):
                chosen = _narrower(ol, ul)
                if chosen not in seen:
                    seen.add(chosen)
                    out.append(chosen)
    return out


# ---------------------------------------------------------------- parsing


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body; tolerant of unknown lines, bounded in size and counts."""
    if len(body) > MAX_SDP_SIZE:
        raise SDPError(f"SDP body too large ({len(body)} bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SDPError("SDP body is not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise SDPError(f"too many SDP lines ({len(lines)})")
    origin = ""
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = []
    media: list[MediaLine] = []
    seen_version = False
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SDPError(f"malformed SDP line {line[:60]!r}")
        kind, value = line[0], line[2:]
        if not seen_version:
            if kind != "v" or value.strip() != "0":
                raise SDPError("SDP does not start with v=0")
            seen_version = True
            continue
        if kind == "m":
            if len(media) >= MAX_MEDIA:
                raise SDPError("too many media lines")
            media.append(_parse_m(value))
        elif kind == "c":
            addr = _parse_c(value)
            if media:
                media[-1].connection = addr
            else:
                connection = addr
        elif kind == "a":
            name, colon, val = value.partition(":")
            item = (name.strip().lower(), val.strip() if colon else None)
            (media[-1].attributes if media else attributes).append(item)
        elif kind == "o" and not media:
            origin = value
    if not seen_version:
        raise SDPError("empty SDP body")
    return SessionDescription(origin, connection, attributes, media)


def _parse_m(value: str) -> MediaLine:
    parts = value.split()
    if len(parts) < 3:
        raise SDPError(f"malformed m= line {value[:60]!r}")
    port_text = parts[1].partition("/")[0]
    if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        raise SDPError(f"bad port in m= line {value[:60]!r}")
    return MediaLine(parts[0].lower(), int(port_text), parts[2], parts[3:])


def _parse_c(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SDPError(f"malformed c= line {value[:60]!r}")
    return parts[2].partition("/")[0]


def _msrp_of(sd: SessionDescription, index: int, m: MediaLine) -> MSRPMedia:
    path_text = m.attr("path")
    if not path_text:
        raise SDPError("MSRP media line without a=path")
    path = path_text.split()
    if len(path) > MAX_PATH_URIS:
        raise SDPError(f"a=path has too many URIs ({len(path)})")
    for uri in path:
        _split_uri(uri)
    # Without relays the one URI is the peer we talk to: its scheme must be the transport
    # the m= line names (msrps: for TCP/TLS/MSRP). With relays the m= line follows the
    # endpoint's own URI, as our offers do, and the hops may differ.
    if len(path) == 1 and (path[0][:6].lower() == "msrps:") != (m.proto.upper() == PROTO_TLS):
        raise SDPError(f"a=path {path[0][:80]!r} does not match the m= proto {m.proto[:20]}",
                       warn_code=WARN_MEDIA)
    setup = m.attr("setup")
    if setup is None:
        for key, val in sd.attributes:
            if key == "setup":
                setup = val or ""
    if setup is not None:
        setup = setup.lower()
        if setup not in SETUP_VALUES:
            raise SDPError(f"bad a=setup value {setup[:20]!r}")
    max_size: int | None = None
    ms = m.attr("max-size")
    if ms is not None:
        if not ms.isdigit() or len(ms) > 19:
            raise SDPError(f"bad a=max-size value {ms[:20]!r}")
        max_size = int(ms)
    accept = _types(m.attr("accept-types"), "accept-types")
    if not accept:
        raise SDPError("MSRP media line without a=accept-types")
    return MSRPMedia(
        index=index,
        proto=m.proto.upper(),
        port=m.port,
        address=m.connection or sd.connection,
        path=path,
        accept_types=accept,
        accept_wrapped_types=_types(m.attr("accept-wrapped-types"), "accept-wrapped-types"),
        setup=setup,
        max_size=max_size,
    )


def _is_msrp_line(m: MediaLine) -> bool:
    return m.media == "message" and m.proto.upper() in (PROTO_TCP, PROTO_TLS)


def find_msrp_media(sd: SessionDescription, protos: tuple[str, ...] = (PROTO_TCP, PROTO_TLS)) -> MSRPMedia:
    """The first usable MSRP stream (non-zero port, a proto we speak, a=path), else 488."""
    why = "no MSRP media line in the offer"
    for i, m in enumerate(sd.media):
        if not _is_msrp_line(m):
            continue
        if m.port == 0:
            why = "MSRP media line is disabled (port 0)"
            continue
        if m.proto.upper() not in protos:
            why = f"MSRP over {m.proto} is not offered here (we use {' or '.join(protos)})"
            continue
        return _msrp_of(sd, i, m)
    raise SDPError(why, warn_code=WARN_MEDIA)


# ---------------------------------------------------------------- building


def _lines(
    path: list[str],
    accept_types: list[str],
    setup: str,
    *,
    port: int | None = None,
    accept_wrapped_types: list[str] | None = None,
    max_size: int | None = None,
    sess_id: int | None = None,
    sess_version: int | None = None,
) -> tuple[list[str], str]:
    if not path:
        raise ValueError("empty local path")
    if not accept_types:
        raise ValueError("no accept-types")
    if setup not in SETUP_VALUES:
        raise ValueError(f"bad setup {setup!r}")
    own = path[-1]
    _, host, uri_port, _ = _split_uri(own)
    if port is None:
        port = uri_port if uri_port is not None else 2855  # RFC 4975 s.15.3 default port
    sid = sess_id if sess_id is not None else secrets.randbelow(2**62)
    ver = sess_version if sess_version is not None else sid
    addr = _addr(host)
    proto = proto_for_uri(own)
    lines = [
        "v=0",
        f"o=- {sid} {ver} {addr}",
        "s=-",
        f"c={addr}",
        "t=0 0",
        f"m=message {port} {proto} *",
        "a=accept-types:" + " ".join(accept_types),
    ]
    if accept_wrapped_types:
        lines.append("a=accept-wrapped-types:" + " ".join(accept_wrapped_types))
    if max_size is not None:
        lines.append(f"a=max-size:{max_size}")
    lines.append("a=path:" + " ".join(path))
    lines.append(f"a=setup:{setup}")
    return lines, proto


def _join(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def build_offer(
    path: list[str],
    accept_types: list[str],
    *,
    setup: str = "actpass",
    accept_wrapped_types: list[str] | None = None,
    max_size: int | None = None,
    sess_id: int | None = None,
    sess_version: int | None = None,
) -> bytes:
    """An offer with one MSRP stream; c=, port and proto come from our own (last) path URI."""
    lines, _ = _lines(
        path,
        accept_types,
        setup,
        accept_wrapped_types=accept_wrapped_types,
        max_size=max_size,
        sess_id=sess_id,
        sess_version=sess_version,
    )
    return _join(lines)


def _answer_setup(offered: str | None, prefer_active: bool) -> tuple[str, bool]:
    """Our a=setup and whether we connect (RFC 4145 s.4.1, RFC 6135 s.4.2)."""
    if offered is None or offered == "active":
        return "passive", False  # absent: the offerer connects, as in RFC 4975
    if offered == "passive":
        return "active", True
    if offered == "actpass":
        return ("active", True) if prefer_active else ("passive", False)
    raise SDPError("a=setup:holdconn: no MSRP connection is wanted", warn_code=WARN_MEDIA)


def build_answer(
    offer: bytes | SessionDescription,
    path: list[str],
    content_types: list[str],
    *,
    prefer_active: bool = False,
    accept_wrapped_types: list[str] | None = None,
    max_size: int | None = None,
    sess_id: int | None = None,
) -> Negotiated:
    """Answer an offer: accept its first usable MSRP stream, reject every other m= (port 0).

    accept-types is the intersection of the offer's and ours; none in common is a 488.
    """
    sd = parse_sdp(offer) if isinstance(offer, bytes) else offer
    proto = proto_for_uri(path[-1])
    peer = find_msrp_media(sd, (proto,))
    common = intersect_types(peer.accept_types, content_types)
    if not common:
        raise SDPError(
            "no common content type: offered " + " ".join(peer.accept_types)[:200]
            + ", accepted " + " ".join(content_types)[:200]
        )
    wrapped: list[str] = []
    if peer.accept_wrapped_types:
        wrapped = intersect_types(peer.accept_wrapped_types, accept_wrapped_types or content_types)
    setup, active = _answer_setup(peer.setup, prefer_active)
    lines, _ = _lines(
        path,
        common,
        setup,
        accept_wrapped_types=wrapped or None,
        max_size=max_size,
        sess_id=sess_id,
    )
    head, ours = lines[:5], lines[5:]
    out = list(head)
    for i, m in enumerate(sd.media):
        if i == peer.index:
            out.extend(ours)
        else:
            out.append(f"m={m.media} 0 {m.proto} {' '.join(m.fmts) or '*'}")
    return Negotiated(_join(out), peer, common, wrapped, active)


def read_answer(answer: bytes, offered_types: list[str], offered_proto: str = PROTO_TCP) -> tuple[MSRPMedia, list[str], bool]:
    """Check an answer to our offer: (peer stream, types in common, whether we connect).

    The offerer connects unless the answer says ``a=setup:active`` (RFC 6135 s.4.2).
    """
    sd = parse_sdp(answer)
    peer = find_msrp_media(sd, (offered_proto,))
    common = intersect_types(peer.accept_types, offered_types)
    if not common:
        raise SDPError("the answer has no content type in common with our offer")
    if peer.setup == "holdconn":
        raise SDPError("the answer holds the connection (a=setup:holdconn)", warn_code=WARN_MEDIA)
    return peer, common, peer.setup != "active"
