"""SIP and SIPS URIs (RFC 3261 s.19.1, s.25.1) and name-addr values, sans-IO.

Hosts are stored without IPv6 brackets; ``str()`` puts them back. User, password,
parameter and header texts are kept exactly as written (still %-escaped) so that a URI
prints back as it came; comparisons that need unescaping do it themselves.
This module imports nothing else of ours: ``SIPParseError`` lives here and
``message.py`` re-exports it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

__all__ = [
    "SIPParseError",
    "SIPURI",
    "NameAddr",
    "parse_uri",
    "parse_name_addr",
    "parse_params",
    "aor",
    "validate_uri",
    "validate_name_addr",
    "validate_absolute_uri",
    "tag_of",
    "MAX_URI_LENGTH",
]

MAX_URI_LENGTH = 4096  # longer URIs are refused outright: no legitimate peer sends them


class SIPParseError(Exception):
    """A SIP message or value we will not accept; ``code``/``reason`` is what the peer is told.

    ``message`` is the partly parsed message when the start line and headers could be read,
    so that a transport can still answer (e.g. 400 built from the request's Via).
    """

    def __init__(self, reason: str, code: int = 400, *, message: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"SIPParseError({self.reason!r}, {self.code})"


_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# RFC 3261 s.25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_PORT_RE = re.compile(r"\d{1,5}")
_PARAMCHARS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
_HCHARS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PVALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")  # token, or a host / IPv6 reference
_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*")
_LWS = " \t\r\n"
# RFC 3261 s.25.1 absoluteURI = scheme ":" ( hier-part / opaque-part ): at least one
# character after the colon, all of them uric (reserved / unreserved / escaped, plus "[" "]"
# of an IPv6 authority); so no whitespace, "<", ">", '"', "#", "{", "|", "\\", "^" or "`".
_ABSOLUTE_URI_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9+\-.]*:(?:[A-Za-z0-9\-_.!~*'();/?:@&=+$,\[\]]|%[0-9A-Fa-f]{2})+"
)

# Fast paths: the common, plainly valid shapes are recognised by one regex each; anything
# else (escapes in odd places, IPv6, quoted-pairs, long ports) takes the careful parser.
_FAST_HOST = (
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
    r"|(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})"
)
_FAST_URI_BASE = (
    r"[Ss][Ii][Pp][Ss]?:(?:[A-Za-z0-9\-_.!~*'()&=+$,]+(?::[A-Za-z0-9\-_.!~*'()&=+$,]*)?@)?"
    + _FAST_HOST + r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4}))?"
)
_FAST_PARAM = r"(?:;[A-Za-z0-9\-_.!~*'()]+(?:=[A-Za-z0-9\-_.!~*'()]+)?)"
_FAST_URI_RE = re.compile(_FAST_URI_BASE + _FAST_PARAM + "*")
_FAST_HPARAMS = r"(?:[ \t]*;[ \t]*[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~]+)?)*"
_FAST_NAME_ADDR_RE = re.compile(
    r"[ \t]*(?:(?:\"[^\"\\\r\n]*\"[ \t]*)|(?:[A-Za-z0-9\-.!%*_+`'~]+[ \t]+)*)?"
    r"<" + _FAST_URI_BASE + _FAST_PARAM + "*>" + _FAST_HPARAMS + r"[ \t]*"
    r"|[ \t]*" + _FAST_URI_BASE + _FAST_HPARAMS + r"[ \t]*"
)
_TAG_RE = re.compile(r";[ \t]*[Tt][Aa][Gg][ \t]*=[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)")


def validate_uri(text: str) -> None:
    """Raise SIPParseError unless ``text`` is a valid sip/sips URI (fast for plain ones)."""
    if _FAST_URI_RE.fullmatch(text) is None:
        parse_uri(text)


def validate_name_addr(text: str) -> None:
    """Raise SIPParseError unless ``text`` is a valid name-addr/addr-spec header value."""
    if _FAST_NAME_ADDR_RE.fullmatch(text) is None:
        parse_name_addr(text)


def tag_of(text: str) -> str | None:
    """The ``tag`` parameter of an already validated name-addr/addr-spec value."""
    gt = text.rfind(">")
    if gt >= 0:
        m = _TAG_RE.search(text, gt)
    else:
        semi = text.find(";")
        if semi < 0:
            return None
        m = _TAG_RE.search(text, semi)
    return m.group(1) if m is not None else None


def _check_host(host: str, text: str) -> str:
    """Return the host without brackets, or raise 400; IPv6 literals must be bracketed."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise SIPParseError(f"bad IPv6 reference in URI {text!r}")
        inner = host[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise SIPParseError(f"bad IPv6 address in URI {text!r}") from None
        return inner
    if _IPV4_RE.fullmatch(host):
        if any(int(p) > 255 for p in host.split(".")):
            raise SIPParseError(f"bad IPv4 address in URI {text!r}")
        return host
    if not _HOSTNAME_RE.fullmatch(host):
        raise SIPParseError(f"bad host in URI {text!r}")
    return host


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(slots=True)
class SIPURI:
    """A sip: or sips: URI; ``params`` and ``headers`` keep their order and spelling."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":" + self.password)
            parts.append("@")
        parts.append(_bracket(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        for k, v in self.params.items():
            parts.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers:
            parts.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def param(self, name: str) -> str | None:
        """A URI parameter by case-insensitive name (None if absent or valueless)."""
        name = name.lower()
        for k, v in self.params.items():
            if k.lower() == name:
                return v
        return None

    def has_param(self, name: str) -> bool:
        name = name.lower()
        return any(k.lower() == name for k in self.params)

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def aor(self) -> str:
        """``scheme:user@host`` with the host lower-cased: stable across ports and params."""
        host = _bracket(self.host.lower())
        if self.user is None:
            return f"{self.scheme}:{host}"
        return f"{self.scheme}:{self.user}@{host}"


def parse_uri(text: str) -> SIPURI:
    """Parse a sip:/sips: URI; other schemes raise 416, malformed ones 400."""
    if len(text) > MAX_URI_LENGTH:
        raise SIPParseError("URI too long", 414)
    m = _SCHEME_RE.match(text)
    if m is None:
        raise SIPParseError(f"URI without a scheme: {text[:80]!r}")
    scheme = m.group(1).lower()
    if scheme != "sip" and scheme != "sips":
        raise SIPParseError(f"unsupported URI scheme {scheme!r}", 416)
    rest = text[m.end():]
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1:]
        colon = userinfo.find(":")
        if colon >= 0:
            user, password = userinfo[:colon], userinfo[colon + 1:]
            if not _PASSWORD_RE.fullmatch(password):
                raise SIPParseError(f"bad password in URI {text!r}")
        else:
            user = userinfo
        if not _USER_RE.fullmatch(user):
            raise SIPParseError(f"bad user part in URI {text!r}")
    headers_text: str | None = None
    q = rest.find("?")
    if q >= 0:
        rest, headers_text = rest[:q], rest[q + 1:]
    # host[:port] *(;param)
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise SIPParseError(f"unterminated IPv6 reference in URI {text!r}")
        hostport_end = close + 1
        semi = rest.find(";", hostport_end)
    else:
        semi = rest.find(";")
        hostport_end = -1
    hostport = rest if semi < 0 else rest[:semi]
    params_text = "" if semi < 0 else rest[semi + 1:]
    port: int | None = None
    colon = hostport.rfind(":")
    if colon >= 0 and colon >= hostport_end:
        port_text = hostport[colon + 1:]
        if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
            raise SIPParseError(f"bad port in URI {text!r}")
        port = int(port_text)
        hostport = hostport[:colon]
    if not hostport:
        raise SIPParseError(f"URI without a host: {text!r}")
    host = _check_host(hostport, text)
    params: dict[str, str | None] = {}
    if params_text or semi >= 0:
        for item in params_text.split(";"):
            name, eq, value = item.partition("=")
            if not _PARAMCHARS_RE.fullmatch(name) or (eq and not _PARAMCHARS_RE.fullmatch(value)):
                raise SIPParseError(f"bad parameter {item!r} in URI {text!r}")
            params[name] = value if eq else None
    headers: dict[str, str] = {}
    if headers_text is not None:
        for item in headers_text.split("&"):
            name, eq, value = item.partition("=")
            if not eq or not name or not _HCHARS_RE.fullmatch(name) or not _HCHARS_RE.fullmatch(value):
                raise SIPParseError(f"bad header {item!r} in URI {text!r}")
            headers[name] = value
    return SIPURI(scheme, user, password, host, port, params, headers)


def aor(uri_text: str) -> str:
    """The address-of-record key of a URI: ``scheme:user@host`` for sip/sips (host
    lower-cased, no port or params); any other scheme lower-cased as written."""
    text = uri_text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    m = _SCHEME_RE.match(text)
    if m is not None and m.group(1).lower() in ("sip", "sips"):
        try:
            return parse_uri(text).aor
        except SIPParseError:
            pass
    return text.lower()


def _unquote(quoted: str) -> str:
    """Content of a quoted-string without the quotes, backslash escapes resolved."""
    out = []
    i = 1
    end = len(quoted) - 1
    while i < end:
        c = quoted[i]
        if c == "\\":
            i += 1
            c = quoted[i]
        out.append(c)
        i += 1
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quoted_end(text: str, start: int) -> int:
    """Index just after the quoted-string that opens at ``start``; raise 400 if unbalanced."""
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            i += 2
            continue
        if c == '"':
            return i + 1
        if c in "\r\n":
            break
        i += 1
    raise SIPParseError(f"unbalanced quotes in {text[:80]!r}")


def parse_params(text: str, where: str = "header") -> dict[str, str | None]:
    """``;name[=value]`` header parameters (values: token, host or quoted-string).

    Names keep their spelling; quoted values keep their quotes so they print back unchanged.
    """
    params: dict[str, str | None] = {}
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in _LWS:
            i += 1
        if i >= n:
            break
        if text[i] != ";":
            raise SIPParseError(f"junk after {where}: {text[i:i + 40]!r}")
        i += 1
        while i < n and text[i] in _LWS:
            i += 1
        j = i
        while j < n and text[j] not in "=;" and text[j] not in _LWS:
            j += 1
        name = text[i:j]
        while j < n and text[j] in _LWS:
            j += 1
        if not _TOKEN_RE.fullmatch(name):
            raise SIPParseError(f"bad parameter name {name!r} in {where}")
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in _LWS:
                j += 1
            if j < n and text[j] == '"':
                end = _quoted_end(text, j)
                value = text[j:end]
                j = end
            else:
                k = j
                while k < n and text[k] != ";" and text[k] not in _LWS:
                    k += 1
                value = text[j:k]
                # token, or an IPv6 reference / host (received=, maddr=)
                if not value or not _PVALUE_RE.fullmatch(value):
                    raise SIPParseError(f"bad value for parameter {name!r} in {where}")
                j = k
            params[name] = value
        else:
            params[name] = None
        i = j
    return params


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, the URI text, header params.

    ``display`` is the unquoted display name (None when absent); ``uri`` is the URI as
    written (any scheme); ``sip_uri`` parses it.
    """

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        for k, v in self.params.items():
            if k.lower() == "tag":
                return v
        return None

    @property
    def sip_uri(self) -> SIPURI:
        return parse_uri(self.uri)

    @property
    def aor(self) -> str:
        return aor(self.uri)

    def __str__(self) -> str:
        head = f"{_quote(self.display)} <{self.uri}>" if self.display else f"<{self.uri}>"
        if not self.params:
            return head
        return head + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())


def validate_absolute_uri(text: str) -> None:
    """Raise SIPParseError(400) unless ``text`` is an RFC 3261 s.25.1 absoluteURI (the
    form a tel:, im: or other non-SIP URI must have): a scheme, a colon, then only URI
    characters. A stray ``<>"``, whitespace or an empty remainder is refused here, so that
    such text never becomes a gateway key."""
    if len(text) > MAX_URI_LENGTH:
        raise SIPParseError("URI too long", 414)
    if _ABSOLUTE_URI_RE.fullmatch(text) is None:
        raise SIPParseError(f"bad URI {text[:80]!r}")


def _check_uri(uri: str, text: str) -> None:
    m = _SCHEME_RE.match(uri)
    if m is None:
        raise SIPParseError(f"no URI scheme in {text[:80]!r}")
    scheme = m.group(1).lower()
    if scheme == "sip" or scheme == "sips":
        parse_uri(uri)
    else:
        validate_absolute_uri(uri)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``name-addr`` (``"Name" <uri>;p=v``) or ``addr-spec`` (``uri;p=v``).

    In the addr-spec form every ``;`` parameter belongs to the header (RFC 3261 s.20.10).
    Raises SIPParseError(400) on a malformed value, e.g. an unquoted display name with
    separators, unbalanced quotes or a bad sip URI.
    """
    if len(text) > MAX_URI_LENGTH * 2:
        raise SIPParseError("header value too long", 400)
    s = text.strip(_LWS)
    display: str | None = None
    if s.startswith('"'):
        end = _quoted_end(s, 0)
        display = _unquote(s[:end])
        i = end
        while i < len(s) and s[i] in _LWS:
            i += 1
        if i >= len(s) or s[i] != "<":
            raise SIPParseError(f"quoted display name without <uri> in {text[:80]!r}")
        lt = i
    else:
        lt = s.find("<")
        if lt > 0:
            shown = s[:lt].strip(_LWS)
            if shown:
                if not _DISPLAY_TOKENS_RE.fullmatch(shown):
                    raise SIPParseError(f"bad display name {shown!r}")
                display = shown
    if lt >= 0:
        gt = s.find(">", lt)
        if gt < 0:
            raise SIPParseError(f"unterminated <uri> in {text[:80]!r}")
        uri = s[lt + 1:gt]
        rest = s[gt + 1:]
    else:
        semi = s.find(";")
        uri, rest = (s, "") if semi < 0 else (s[:semi].rstrip(_LWS), s[semi:])
        if not uri or "," in uri or "?" in uri:
            raise SIPParseError(f"bad addr-spec {text[:80]!r}")
    _check_uri(uri, text)
    params = parse_params(rest, "name-addr") if rest else {}
    return NameAddr(display, uri, params)
