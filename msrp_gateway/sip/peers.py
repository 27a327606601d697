"""Where SIP messages come from and go to: ``Peer``, listen strings, and the RFC 3261
s.18.2 / RFC 3581 rules on the top Via. Pure functions, no I/O: the transport applies them.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from ..sockets import SocketStringError, parse_socket_string
from .message import SIPRequest, Via

__all__ = ["DEFAULT_PORTS", "MTU_SIZE_LIMIT", "Peer", "TransportError", "family", "is_ip",
           "is_reliable", "parse_listen_string", "response_peer", "stamp_via"]

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MTU_SIZE_LIMIT = 1300  # s.18.1.1: larger requests go over a congestion-controlled transport


class TransportError(Exception):
    """A message could not be sent: no listener for that transport, connect failed, table
    full. The stack turns it into 503 (s.8.1.3.1)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from or goes to; ``host`` is an IP address (no brackets) once
    resolved, ``transport`` one of ``udp``/``tcp``/``tls``."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listen_string(text: str) -> Peer:
    """``udp:HOST:PORT`` / ``tcp:…`` / ``tls:…`` (IPv6 as ``[::1]``; port optional, 0 = any
    free port) -> Peer. Raises ValueError naming what was expected."""
    try:
        addr = parse_socket_string(text.strip(), DEFAULT_PORTS)
    except SocketStringError as e:
        if e.part == "protocol":
            raise ValueError(f"socket {text!r}: expected udp:HOST:PORT, tcp:HOST:PORT or "
                             "tls:HOST:PORT") from None
        raise ValueError(f"socket {text!r}: expected {e.expected}") from None
    return Peer(addr.protocol, addr.host, addr.port)


def is_reliable(peer: Any) -> bool:
    """True for TCP/TLS: no retransmissions (s.17.1.1.2); any object with ``transport``."""
    return bool(peer.transport != "udp")


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def family(host: str) -> int:
    """The address family of an IP literal (no brackets)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def stamp_via(msg: SIPRequest, source: Peer) -> Via:
    """s.18.2.1 / RFC 3581 s.4: ``received`` when the sent-by differs from the source (and
    always with rport), ``rport`` filled with the source port when the client asked.
    Raises SIPParseError when the top Via is unreadable."""
    via = msg.top_via
    changed = False
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(source.port)
        via.params["received"] = source.host
        changed = True
    if changed:
        msg.set_top_via(via)
    return via


def response_peer(request: SIPRequest, source: Peer) -> Peer:
    """Where responses to ``request`` go (s.18.2.2, RFC 3581 s.4): back over the same
    connection for TCP/TLS; for UDP to maddr, else received:rport, else received:sent-by
    port."""
    if source.reliable:
        return source
    via = request._peek_top_via()
    maddr = via.params.get("maddr")
    if maddr:
        return Peer("udp", maddr.strip("[]"), via.port or DEFAULT_PORTS["udp"])
    host = via.received or via.host
    port = via.rport or via.port or DEFAULT_PORTS["udp"]
    return Peer("udp", host, port)
