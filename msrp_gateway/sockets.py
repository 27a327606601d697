"""OpenSIPS-style socket strings (``udp:127.0.0.1:5060``, ``msrps:[::1]``, ``tcp:HOST:PORT/m``).

One parser for every place that reads them: configuration, the SIP and MSRP listeners and
event subscribers.  Each caller says which protocols it takes (with their default ports),
whether a host name is allowed and whether ``/method`` may follow; it keeps its own error
type and wording by catching :class:`SocketStringError`, whose ``part`` says what was wrong.
The lowest layer: no imports of ours, no Twisted, no I/O (names are never resolved here).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_SOCKET_LENGTH",
    "SocketAddress",
    "SocketStringError",
    "is_host_name",
    "parse_host_port",
    "parse_socket_string",
]

#: Longest socket string parsed (OpenSIPS has no such bound; we do).
MAX_SOCKET_LENGTH = 256

# RFC 1123 host name: labels of letters, digits and inner hyphens, 253 characters at most.
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")
_METHOD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


class SocketStringError(ValueError):
    """A socket string we refuse.  ``part`` is ``"length"``, ``"protocol"``, ``"host"``,
    ``"port"`` or ``"method"``; ``str()`` says what was expected there."""

    def __init__(self, part: str, expected: str) -> None:
        super().__init__(expected)
        self.part = part
        self.expected = expected


@dataclass(frozen=True, slots=True)
class SocketAddress:
    """One parsed socket string; ``str()`` gives its canonical form back.

    ``host`` is an IP literal (IPv6 without brackets, in canonical form) or a host name as
    written; ``method`` is the ``/method`` suffix of event sockets, else None.
    """

    protocol: str
    host: str
    port: int
    method: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.protocol}:{host}:{self.port}"
        return f"{text}/{self.method}" if self.method else text


def is_host_name(text: str) -> bool:
    """An RFC 1123 host name (not checked for being an IP address)."""
    return _HOSTNAME.match(text) is not None


def _ip(text: str) -> str | None:
    """The canonical form of an IP literal, or None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _split_host_port(text: str) -> tuple[str, str | None]:
    """``[v6]:port`` / ``host:port`` / ``host`` -> (host, port text or None)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or _ip(host) is None or ":" not in host:
            raise SocketStringError("host", "an IPv6 address in brackets, such as [::1]")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SocketStringError("port", "':PORT' after the bracketed address")
        return host, rest[1:]
    host, sep, port_text = text.rpartition(":")
    if not sep:
        return text, None
    if ":" in host:
        raise SocketStringError("host", "an IPv6 address in brackets, such as [::1]:5060")
    return host, port_text


def _host(text: str, names: bool) -> str:
    ip = _ip(text)  # a bare IPv6 address never gets here: _split_host_port refused it
    if ip is not None:
        return ip
    if names and is_host_name(text):
        return text
    raise SocketStringError("host", "an IP address or host name" if names
                            else "an IP address (IPv6 in brackets)")


def _port(text: str | None, default: int | None, min_port: int) -> int:
    if text is None:
        if default is None:
            raise SocketStringError("port", f"':PORT' with a port {min_port}..65535")
        return default
    # isascii: str.isdigit() is true for '²', which int() refuses
    if not (text.isascii() and text.isdigit()) or len(text) > 5 \
            or not min_port <= int(text) <= 65535:
        raise SocketStringError("port", f"a port {min_port}..65535")
    return int(text)


def parse_host_port(text: str, default_port: int | None = None, *, names: bool = True,
                    min_port: int = 0) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``HOST`` (with a default port) -> (host, port).

    Raises :class:`SocketStringError`; a bare IPv6 address must be written in brackets.
    """
    if len(text) > MAX_SOCKET_LENGTH:
        raise SocketStringError("length", f"at most {MAX_SOCKET_LENGTH} characters")
    host_text, port_text = _split_host_port(text)
    return _host(host_text, names), _port(port_text, default_port, min_port)


def parse_socket_string(text: str, protocols: Mapping[str, int | None], *,
                        names: bool = True, min_port: int = 0,
                        methods: frozenset[str] = frozenset()) -> SocketAddress:
    """``proto:HOST[:PORT][/method]`` -> :class:`SocketAddress`.

    ``protocols`` maps each accepted protocol (lower case; matched case-insensitively) to
    its default port, or None when the port must be written.  ``names`` allows host names
    besides IP literals; ``methods`` lists the protocols that may carry ``/method``.
    Port 0 (when ``min_port`` is 0) asks the OS for a free port.  Raises only
    :class:`SocketStringError`.
    """
    if len(text) > MAX_SOCKET_LENGTH:
        raise SocketStringError("length", f"at most {MAX_SOCKET_LENGTH} characters")
    proto, sep, rest = text.partition(":")
    proto = proto.lower()
    if not sep or proto not in protocols:
        raise SocketStringError("protocol", "one of " + ", ".join(p + ":" for p in protocols)
                                + " before the host")
    method: str | None = None
    if "/" in rest:
        rest, _, method = rest.partition("/")
        if proto not in methods:
            raise SocketStringError("method", "no '/method' after a " + proto + ": socket")
        if not method or not _METHOD_CHARS.issuperset(method):
            raise SocketStringError("method", "a method name of letters, digits, '_-.:'")
    host, port = parse_host_port(rest, protocols[proto], names=names, min_port=min_port)
    return SocketAddress(proto, host, port, method)
