"""SDP parsing for MSRP media (RFC 4566, RFC 4975 s.8): bytes in, records out.

Sans-IO and bounded (size, lines, media, path URIs, types). Only what an MSRP user agent
needs is read (connection address, the ``message`` media lines and their MSRP attributes);
every other line is kept as written so an answer can reject foreign media in offer order.
Every failure is an `SDPError` carrying the SIP status (488) and a Warning text. Building
and negotiation are in `sdp`, which re-exports all of this.

``a=fingerprint`` (RFC 8122, RFC 4975 s.14.4) is read for ``TCP/TLS/MSRP`` lines only:
media-level lines replace session-level ones; unknown hash names are ignored; when every
line is malformed the offer is refused (488), when some are usable the malformed ones are
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .msrp.fingerprint import Fingerprint, FingerprintError, parse_fingerprint

__all__ = [
    "SDPError", "MediaLine", "SessionDescription", "MSRPMedia", "parse_sdp",
    "find_msrp_media", "proto_for_uri", "split_uri", "MAX_SDP_SIZE", "MAX_LINES", "MAX_MEDIA",
    "MAX_PATH_URIS", "MAX_TYPES", "MAX_FINGERPRINTS", "Fingerprint", "PROTO_TCP", "PROTO_TLS", "SETUP_VALUES", "WARN_MEDIA",
    "WARN_FORMAT",
]

# Bounds for hostile input: a real MSRP offer is a few hundred bytes.
MAX_SDP_SIZE = 16384
MAX_LINES = 256
MAX_MEDIA = 32
MAX_PATH_URIS = 16
MAX_TYPES = 64
MAX_FINGERPRINTS = 16  # a=fingerprint lines per stream (RFC 8122 allows several hashes)

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
    # The peer's certificate fingerprints (TCP/TLS/MSRP only; empty: none usable given).
    fingerprints: list[Fingerprint] = field(default_factory=list)
    # Fingerprint lines skipped: unknown hash names, and malformed ones beside usable ones.
    ignored_fingerprints: list[str] = field(default_factory=list)

    @property
    def tls(self) -> bool:
        return self.proto == PROTO_TLS


# ---------------------------------------------------------------- URIs and types


def split_uri(uri: str) -> tuple[str, str, int | None, str]:
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


def proto_for_uri(uri: str) -> str:
    """The m= proto that a path URI's scheme implies."""
    return PROTO_TLS if split_uri(uri)[0] == "msrps" else PROTO_TCP


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
        split_uri(uri)
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
    fingerprints: list[Fingerprint] = []
    ignored: list[str] = []
    if m.proto.upper() == PROTO_TLS:
        fingerprints, ignored = _fingerprints(sd, m)
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
        fingerprints=fingerprints,
        ignored_fingerprints=ignored,
    )


def _fingerprints(sd: SessionDescription, m: MediaLine) -> tuple[list[Fingerprint], list[str]]:
    """The usable a=fingerprint values of a TLS stream, and why others were skipped.

    Media-level lines win over session-level ones (RFC 8122 s.5). Raises `SDPError` when
    lines were given but every one is malformed: a peer that pins a certificate we cannot
    read must not get an unpinned session."""
    values = [v or "" for k, v in m.attributes if k == "fingerprint"]
    if not values:
        values = [v or "" for k, v in sd.attributes if k == "fingerprint"]
    if len(values) > MAX_FINGERPRINTS:
        raise SDPError(f"too many a=fingerprint lines ({len(values)}, at most "
                       f"{MAX_FINGERPRINTS})")
    usable: list[Fingerprint] = []
    unknown: list[str] = []
    malformed: list[str] = []
    for value in values:
        try:
            fp = parse_fingerprint(value)
        except FingerprintError as e:
            malformed.append(e.reason)
            continue
        if fp is None:
            unknown.append(f"unknown hash {value.split()[0][:32]!r}")
        elif fp not in usable:
            usable.append(fp)
    if malformed and not usable:
        raise SDPError("malformed " + "; ".join(malformed)[:300])
    return usable, unknown + malformed


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
