"""Which MSRP transports the UA can answer on, and our URI on each (RFC 4975 s.8, s.15).

A gateway may listen on ``msrp:`` and ``msrps:`` sockets at once, while the MSRP stack has
one ``my_uri``. An offer says which transport it wants (the ``m=`` proto and the scheme of
its path); the answer must carry a path URI of that kind, naming the listener of that kind,
so a peer that connects reaches a socket speaking its transport. This module derives those
URIs from the stack; `session_on` makes a session whose path uses the one asked for.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Sequence

from .msrp.message import MSRPParseError
from .msrp.uri import MSRPURI, parse_msrp_uri
from .sdp import PROTO_TCP, PROTO_TLS

__all__ = ["local_uris", "proto_of", "session_on"]


def proto_of(secure: bool) -> str:
    """The m= proto of a path URI scheme: msrps -> TCP/TLS/MSRP, msrp -> TCP/MSRP."""
    return PROTO_TLS if secure else PROTO_TCP


def _my_uri(stack: Any) -> MSRPURI | None:
    value = getattr(stack, "my_uri", None)
    if value is None or isinstance(value, MSRPURI):
        return value
    try:
        return parse_msrp_uri(str(value))
    except MSRPParseError:
        return None


def _listeners(stack: Any) -> list[tuple[bool, str, int]]:
    """(secure, host, port) of each socket the stack listens on (`MSRPStack.listening()`).

    A stack without that accessor (a fake, or one that only connects out) lists none.
    """
    listening = getattr(stack, "listening", None)
    if listening is None:
        return []
    return [(bool(lst.secure), str(lst.host), int(lst.port)) for lst in listening()]


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def local_uris(stack: Any) -> dict[str, MSRPURI]:
    """Our base URI (no session id) for each m= proto we can answer on.

    ``my_uri`` serves its own transport, as always. The other transport is offered when a
    listener of that kind exists and no relay is configured (behind a relay every session
    goes through the relay's connection, whatever our listeners). Its host is the
    listener's own address when ``my_uri`` names a local listener; when ``my_uri``
    advertises another address (NAT, a service name) or the listener is a wildcard, that
    advertised host is kept and only scheme and port change.
    """
    mine = _my_uri(stack)
    out: dict[str, MSRPURI] = {}
    if mine is not None:
        out[proto_of(mine.secure)] = dataclasses.replace(mine, session_id=None)
    if getattr(stack, "relay", None) is not None:
        return out
    listeners = _listeners(stack)
    local_hosts = {h.lower() for _, h, _ in listeners}
    advertised = mine is not None and mine.host.lower() not in local_hosts
    for secure, host, port in listeners:
        proto = proto_of(secure)
        if proto in out:
            continue
        if mine is not None and (advertised or _wildcard(host)):
            host = mine.host
        elif _wildcard(host):
            continue  # no address to put in a URI
        out[proto] = MSRPURI("msrps" if secure else "msrp", host, port)
    return out


def session_on(stack: Any, accept_types: Sequence[str], base: MSRPURI) -> Any:
    """A new MSRP session of `stack` whose own URI is `base` with its session id.

    The stack makes every session on ``my_uri``; for another transport the session's URI
    (``local_uri``, the last of ``local_path``) is set before anything is sent or matched,
    so the peer's To-Path is checked against the URI we advertise.
    """
    session = stack.create_session(list(accept_types))
    own = str(dataclasses.replace(base, session_id=session.session_id))
    path = list(session.local_path)
    if path and path[-1] != own:
        session.local_path = [*path[:-1], own]
        session.local_uri = own
    return session
