"""SDP offer/answer for MSRP media (RFC 4975 s.8, RFC 4566, RFC 3264, RFC 6135).

Sans-IO. This module builds offers and answers and negotiates (types, a=setup, who
connects); parsing and the records it yields are in `sdp_parse`, re-exported here so
``from msrp_gateway import sdp`` gives the whole SDP API. Every failure is an `SDPError`
carrying the SIP status (488) and a Warning text.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Sequence

from .sdp_parse import (
    MAX_FINGERPRINTS,
    MAX_LINES,
    MAX_MEDIA,
    MAX_PATH_URIS,
    MAX_SDP_SIZE,
    MAX_TYPES,
    PROTO_TCP,
    PROTO_TLS,
    SETUP_VALUES,
    WARN_FORMAT,
    WARN_MEDIA,
    Fingerprint,
    MediaLine,
    MSRPMedia,
    SDPError,
    SessionDescription,
    find_msrp_media,
    parse_sdp,
    proto_for_uri,
    split_uri,
)

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
    "MAX_LINES",
    "MAX_MEDIA",
    "MAX_PATH_URIS",
    "MAX_TYPES",
    "MAX_FINGERPRINTS",
    "Fingerprint",
    "PROTO_TCP",
    "PROTO_TLS",
    "SETUP_VALUES",
    "WARN_MEDIA",
    "WARN_FORMAT",
]


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


def local_path(my_uri: str, session_id: str, relay_path: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Our a=path: relays (first hop first), then my_uri with ``/session_id`` inserted."""
    scheme, host, port, tail = split_uri(my_uri)
    params = tail[tail.find(";") :] if ";" in tail else ";tcp"
    hostpart = f"[{host}]" if ":" in host else host
    portpart = f":{port}" if port is not None else ""
    return [*relay_path, f"{scheme}://{hostpart}{portpart}/{session_id}{params}"]


def _addr(host: str) -> str:
    """``IN IP4 host`` / ``IN IP6 host`` for a c= or o= line."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"IN IP4 {host}"  # an FQDN (RFC 4566 s.5.7 allows it)
    return f"IN IP{ip.version} {ip.compressed}"


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
    fingerprints: Sequence[Fingerprint | str] = (),
) -> tuple[list[str], str]:
    if not path:
        raise ValueError("empty local path")
    if not accept_types:
        raise ValueError("no accept-types")
    if setup not in SETUP_VALUES:
        raise ValueError(f"bad setup {setup!r}")
    own = path[-1]
    _, host, uri_port, _ = split_uri(own)
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
    if proto == PROTO_TLS:
        # RFC 8122 s.5 / RFC 4975 s.14.4: the certificate our TLS side presents
        lines.extend(f"a=fingerprint:{fp}" for fp in fingerprints)
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
    fingerprints: Sequence[Fingerprint | str] = (),
) -> bytes:
    """An offer with one MSRP stream; c=, port and proto come from our own (last) path URI.

    `fingerprints` (``Fingerprint`` or ``"sha-256 AB:..."``) become ``a=fingerprint`` lines
    when that proto is ``TCP/TLS/MSRP``; a plain TCP offer carries none."""
    lines, _ = _lines(
        path,
        accept_types,
        setup,
        accept_wrapped_types=accept_wrapped_types,
        max_size=max_size,
        sess_id=sess_id,
        sess_version=sess_version,
        fingerprints=fingerprints,
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
    fingerprints: Sequence[Fingerprint | str] = (),
) -> Negotiated:
    """Answer an offer: accept its first usable MSRP stream, reject every other m= (port 0).

    accept-types is the intersection of the offer's and ours; none in common is a 488.
    `fingerprints` as in `build_offer` (TLS answers only); the peer's are in ``peer``.
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
        fingerprints=fingerprints,
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
