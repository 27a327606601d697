"""MSRP and MSRPS URIs (RFC 4975 s.6, s.9) and their comparison rules (s.6.1).

Sans-IO and dependency-free: the session layer parses To-Path/From-Path entries with
`parse_msrp_uri` and matches them with `uris_match`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field

from .grammar import MSRPParseError

__all__ = [
    "DEFAULT_PORT",
    "MAX_URI_LENGTH",
    "MSRPURI",
    "parse_msrp_uri",
    "uris_match",
]

#: RFC 4975 s.6.2: the port used to connect when a URI names none.
DEFAULT_PORT = 2855
#: Bound on one URI's text; a path entry longer than this is refused (hostile input).
MAX_URI_LENGTH = 1024

# RFC 3986 pieces.  userinfo = *( unreserved / pct-encoded / sub-delims / ":" )
_USERINFO_RE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*\Z")
# reg-name = *( unreserved / pct-encoded / sub-delims ); we refuse the empty host.
_REGNAME_RE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,=]|%[0-9A-Fa-f]{2})+\Z")
_PORT_RE = re.compile(r"[0-9]{1,5}\Z")
# RFC 4975 s.9: session-id = 1*( unreserved / "+" / "=" / "/" )
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9\-._~+=/]+\Z")
# transport = "tcp" / 1*ALPHANUM ; URI-parameter = token ["=" token]
_TRANSPORT_RE = re.compile(r"[A-Za-z0-9]+\Z")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")


@dataclass(slots=True, frozen=True)
class MSRPURI:
    """One parsed MSRP URI; `str()` gives it back in canonical spelling.

    `port` is None when the URI names none (`effective_port` then says 2855).
    `host` keeps IPv6 literals without brackets. `params` are the parameters after the
    transport, in order, with None for a valueless one.
    """

    scheme: str
    host: str
    port: int | None = None
    session_id: str | None = None
    transport: str = "tcp"
    user: str | None = None
    params: tuple[tuple[str, str | None], ...] = field(default=())

    @property
    def secure(self) -> bool:
        return self.scheme == "msrps"

    @property
    def effective_port(self) -> int:
        return DEFAULT_PORT if self.port is None else self.port

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def hostport(self) -> str:
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        out = [self.scheme, "://"]
        if self.user is not None:
            out += [self.user, "@"]
        out.append(self.hostport)
        if self.session_id is not None:
            out += ["/", self.session_id]
        out += [";", self.transport]
        for name, value in self.params:
            out += [";", name] if value is None else [";", name, "=", value]
        return "".join(out)


def _bad(text: str, why: str) -> MSRPParseError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return MSRPParseError(f"bad MSRP URI {shown!r}: {why}")


@functools.lru_cache(maxsize=4096)
def parse_msrp_uri(text: str) -> MSRPURI:
    """Parse `msrp://[userinfo@]host[:port][/session-id];transport[;param...]`.

    Raises `MSRPParseError` (code 400) for anything RFC 4975 s.9 does not allow; the
    scheme and transport come out lower-cased, the host as written. Results are
    immutable and cached (a session's paths are parsed on every request).
    """
    if len(text) > MAX_URI_LENGTH:
        raise _bad(text, f"longer than {MAX_URI_LENGTH} characters")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("msrp", "msrps"):
        raise _bad(text, "scheme must be msrp:// or msrps://")
    # userinfo may hold ";" (a sub-delim) but never "/" or "@": take it off first.
    user: str | None = None
    at = rest.find("@")
    if at >= 0 and not 0 <= rest.find("/") < at:
        user, rest = rest[:at], rest[at + 1 :]
        if not _USERINFO_RE.match(user):
            raise _bad(text, "bad userinfo")
    hier, semi, tail = rest.partition(";")
    if not semi:
        raise _bad(text, "the transport parameter (;tcp) is missing")
    authority, slash, session_id = hier.partition("/")
    if slash:
        if not _SESSION_ID_RE.match(session_id):
            raise _bad(text, "bad session-id")
    port: int | None = None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _bad(text, "unterminated IPv6 literal")
        host = authority[1:close]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad(text, "bad IPv6 address") from None
        after = authority[close + 1 :]
        if after:
            if not after.startswith(":"):
                raise _bad(text, "junk after IPv6 literal")
            port_text = after[1:]
        else:
            port_text = None
    else:
        host, colon, port_text_s = authority.partition(":")
        port_text = port_text_s if colon else None
        if not _REGNAME_RE.match(host):
            raise _bad(text, "bad or empty host")
    if port_text is not None:
        if not _PORT_RE.match(port_text) or not 0 < int(port_text) < 65536:
            raise _bad(text, "bad port")
        port = int(port_text)
    pieces = tail.split(";")
    transport = pieces[0]
    if not _TRANSPORT_RE.match(transport):
        raise _bad(text, "bad transport")
    params: list[tuple[str, str | None]] = []
    for piece in pieces[1:]:
        name, eq, value = piece.partition("=")
        if not _TOKEN_RE.match(name) or (eq and not _TOKEN_RE.match(value)):
            raise _bad(text, f"bad parameter {piece!r}")
        params.append((name, value if eq else None))
    return MSRPURI(
        scheme=scheme,
        host=host,
        port=port,
        session_id=session_id if slash else None,
        transport=transport.lower(),
        user=user,
        params=tuple(params),
    )


@functools.lru_cache(maxsize=4096)
def _host_key(host: str) -> str:
    """Explicit IP addresses compare as addresses (::1 == 0:0::1); names case-insensitively."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def uris_match(
    a: MSRPURI | str, b: MSRPURI | str, *, default_port: bool = False
) -> bool:
    """RFC 4975 s.6.1 equivalence.

    Scheme case-insensitive; host as an address when it is one, else case-insensitive;
    an explicit port must match exactly and is never equivalent to no port (unless
    `default_port=True`, which treats a missing port as 2855, for peers that add or drop
    it); session-id exact and present in both or neither; transport case-insensitive;
    userinfo and other parameters ignored. Strings are parsed (MSRPParseError if bad).
    """
    ua = parse_msrp_uri(a) if isinstance(a, str) else a
    ub = parse_msrp_uri(b) if isinstance(b, str) else b
    if ua.scheme != ub.scheme or ua.transport != ub.transport:
        return False
    if ua.session_id != ub.session_id:
        return False
    if default_port:
        if ua.effective_port != ub.effective_port:
            return False
    elif ua.port != ub.port:
        return False
    return _host_key(ua.host) == _host_key(ub.host)
