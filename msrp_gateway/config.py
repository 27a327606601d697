"""TOML configuration file -> typed, frozen settings.

Sans-IO apart from reading the file: no Twisted here, so every layer (and its tests) can
build a :class:`Settings` from a dict.  Every key is optional; defaults are OpenSIPS'
defaults.  A bad file raises :class:`ConfigError` whose ``str()`` is one line naming the
key, what was expected and what was found — start-up prints exactly that line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from msrp_gateway import sockets
from msrp_gateway.sockets import SocketAddress

__all__ = [
    "ConfigError",
    "Settings",
    "SIPSettings",
    "MSRPSettings",
    "MSRPUASettings",
    "GatewaySettings",
    "TLSSettings",
    "MISettings",
    "EventsSettings",
    "RoutingSettings",
    "LogSettings",
    "ProcessSettings",
    "SocketAddress",
    "parse_socket",
    "parse_host_port",
    "load",
    "load_default",
    "from_dict",
    "LOG_LEVELS",
]

SIP_PROTOCOLS = ("udp", "tcp", "tls")
MSRP_PROTOCOLS = ("msrp", "msrps")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "msrp": 2855, "msrps": 2855}
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
RELAY_MAX_EXPIRES = 2**32 - 1  # s, the largest Expires an AUTH may carry (RFC 4976 s.12)

# msrp://host[:port]/session-id;transport -- my_uri / relay_uri have no session-id part
# (RFC 4975 s.9 msrp-uri; msrp_ua's my_uri is written without one).
_MSRP_URI = re.compile(r"^(msrps?)://(?:[^@/;]+@)?(\[[0-9A-Fa-f:.]+\]|[^:/;\[\]]+)"
                       r"(?::(\d{1,5}))?(?:/[^;]*)?;([A-Za-z0-9-]+)(?:;.*)?$")
_SIP_URI = re.compile(r"^sips?:[^\s<>\"]+$")


class ConfigError(ValueError):
    """A configuration problem; ``str(err)`` is the single line shown to the operator."""

    def __init__(self, key: str, expected: str, found: object, source: str = "") -> None:
        self.key = key
        self.expected = expected
        self.found = found
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: expected {expected}, found {_show(found)}")


class _Unknown(str):
    """A description of what was found (shown bare, not quoted, in a ConfigError)."""


def _show(value: object) -> str:
    if isinstance(value, _Unknown):
        return str(value)
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = "an array " + repr(value)
    else:
        text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int] | None:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``HOST`` (with a default port) -> (host, port), or None."""
    try:
        return sockets.parse_host_port(text, default_port)
    except sockets.SocketStringError:
        return None


def parse_socket(text: str, protocols: tuple[str, ...] = SIP_PROTOCOLS + MSRP_PROTOCOLS
                 ) -> SocketAddress:
    """Parse an OpenSIPS-style socket string (``udp:127.0.0.1:5060``, ``msrps:[::1]:2856``).

    The port may be left out (5060, 5061 for tls, 2855 for msrp/msrps); port 0 asks the OS
    for a free one.  Raises ``ValueError`` with the reason (what a ConfigError expects).
    """
    try:
        return sockets.parse_socket_string(text, {p: DEFAULT_PORTS[p] for p in protocols})
    except sockets.SocketStringError as e:
        if e.part == "protocol":
            raise ValueError(f"a socket string starting with one of "
                             f"{', '.join(p + ':' for p in protocols)}") from None
        proto = text.partition(":")[0].lower()
        raise ValueError(f"'{proto}:HOST:PORT' with an IP address or host name and a "
                         f"port 0..65535") from None


# --- the sections -------------------------------------------------------------------------
# Field metadata: "check" is a callable(value) -> str | None returning what was expected
# when the value is wrong.  Types come from the annotations.

def _between(lo: float, hi: float | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v < lo or (hi is not None and v > hi):
            return (f"a number from {lo} to {hi}" if hi is not None
                    else f"a number >= {lo}")
        return None
    return check


def _opt(check: Callable[[Any], str | None] | None, default: Any = dataclasses.MISSING,
         **kw: Any) -> Any:
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return field(default=value, metadata={"check": check}, **kw)
    return field(default=default, metadata={"check": check}, **kw)


def _socket_check(protocols: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        try:
            parse_socket(v, protocols)
        except ValueError as e:
            return str(e)
        return None
    check.each = True  # type: ignore[attr-defined]
    return check


_sip_sockets = _socket_check(SIP_PROTOCOLS)
_msrp_sockets = _socket_check(MSRP_PROTOCOLS)


def _msrp_uri(v: str) -> str | None:
    if v == "":
        return None
    m = _MSRP_URI.match(v)
    if not m or m.group(4).lower() != "tcp" or (m.group(3) and int(m.group(3)) > 65535):
        return "an MSRP URI such as 'msrp://127.0.0.1:2855;tcp' (msrp or msrps, ;tcp)"
    return None


def _relay_expires(v: int) -> str | None:
    if 0 <= v <= RELAY_MAX_EXPIRES:
        return None
    return (f"seconds from 1 to {RELAY_MAX_EXPIRES} for the relay AUTH's Expires, or 0 "
            "to let the relay choose")


def _sip_uri(v: str) -> str | None:
    if v == "" or _SIP_URI.match(v):
        return None
    return "a SIP URI such as 'sip:proxy.example.net;transport=tcp'"


def _host_port_or_empty(v: str) -> str | None:
    if v == "" or parse_host_port(v) is not None:
        return None
    return "'HOST:PORT' (for example '127.0.0.1:8888'), or '' to turn it off"


MAX_DNS_SERVERS = 8  # twisted.names asks them in turn; more would only lengthen a failure


def dns_server(text: str) -> tuple[str, int] | None:
    """``IP``, ``IP:PORT`` or ``[V6]:PORT`` (a bare IPv6 literal too) -> (ip, port), port
    53 by default; None when it is not one. A name is refused: DNS must not be needed to
    find DNS."""
    try:
        return str(ipaddress.ip_address(text)), 53  # '::1' as resolv.conf writes it
    except ValueError:
        pass
    try:
        return sockets.parse_host_port(text, 53, names=False, min_port=1)
    except sockets.SocketStringError:
        return None


def _dns_server_check(v: str) -> str | None:
    if dns_server(v) is None:
        return ("a DNS server 'IP' or 'IP:PORT' with a port 1..65535 (IPv6 with a port as "
                "'[::1]:53'; no host names)")
    return None


_dns_server_check.each = True  # type: ignore[attr-defined]


def _networks(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return "an IP network such as '127.0.0.0/8' or '::1/128'"
    return None


_networks.each = True  # type: ignore[attr-defined]


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)
    return check


def _file_or_empty(v: str) -> str | None:
    if v == "" or os.path.isfile(v):
        return None
    return "a path to an existing file (or '')"


@dataclass(frozen=True, slots=True)
class SIPSettings:
    """``[sip]``: listeners, next hop, and the SIP layer's bounds."""

    socket: tuple[str, ...] = _opt(_sip_sockets, ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"))
    outbound_proxy: str = _opt(_sip_uri, "")
    max_message_size: int = _opt(_between(512, 16 * 1024 * 1024), 65535)
    max_headers: int = _opt(_between(8, 4096), 128)
    max_line_length: int = _opt(_between(256, 1024 * 1024), 8192)
    max_transactions: int = _opt(_between(1), 65536)
    max_dialogs: int = _opt(_between(1), 100000)
    max_connections: int = _opt(_between(1), 4096)
    tcp_idle_timeout: float = _opt(_between(1), 300.0)
    # RFC 3261 s.17.1.1.1 timers; Timer B/F/H = 64*T1.  T1 < T2 is checked across keys.
    timer_t1: float = _opt(_between(0.001, 60), 0.5)
    timer_t2: float = _opt(_between(0.001, 600), 4.0)
    timer_t4: float = _opt(_between(0.001, 600), 5.0)
    max_completed: int = _opt(_between(1), 400000)
    connect_timeout: float = _opt(_between(0.1), 10.0)
    max_pending_per_connection: int = _opt(_between(1), 256)
    max_write_backlog: int = _opt(_between(4096), 4 * 1024 * 1024)
    # RFC 3263 lookups of the next hop's name; () = the nameservers of /etc/resolv.conf
    dns_servers: tuple[str, ...] = _opt(_dns_server_check, ())
    dns_cache_size: int = _opt(_between(1, 1_000_000), 4096)

    @property
    def sockets(self) -> tuple[SocketAddress, ...]:
        return tuple(parse_socket(s, SIP_PROTOCOLS) for s in self.socket)

    @property
    def dns_server_addresses(self) -> tuple[tuple[str, int], ...]:
        """``dns_servers`` as (ip, port) pairs (validated at load)."""
        return tuple(a for a in map(dns_server, self.dns_servers) if a is not None)


@dataclass(frozen=True, slots=True)
class MSRPSettings:
    """``[msrp]``: listeners, our URI, relay, and the MSRP layer's bounds."""

    socket: tuple[str, ...] = _opt(_msrp_sockets, ("msrp:127.0.0.1:2855",))
    my_uri: str = _opt(_msrp_uri, "msrp://127.0.0.1:2855;tcp")
    relay_uri: str = _opt(_msrp_uri, "")
    relay_username: str = _opt(None, "")
    relay_password: str = _opt(None, "")
    # RFC 4976 s.5.1: the lifetime our AUTH asks for (Expires); 0 sends none, so the relay
    # chooses.  A relay's 423 Min-Expires/Max-Expires still overrides it.
    relay_expires: int = _opt(_relay_expires, 0)
    chunk_size: int = _opt(_between(64, 16 * 1024 * 1024), 2048)
    max_message_size: int = _opt(_between(1024), 4 * 1024 * 1024)
    max_header_size: int = _opt(_between(512, 1024 * 1024), 16384)
    max_reassemblies: int = _opt(_between(1), 16)
    reassembly_timeout: float = _opt(_between(1), 60.0)
    send_timeout: float = _opt(_between(0.1), 30.0)
    connect_timeout: float = _opt(_between(0.1), 10.0)  # TCP connect + TLS handshake
    max_send_queue: int = _opt(_between(1), 1024)
    max_send_queue_bytes: int = _opt(_between(1024), 64 * 1024 * 1024)
    max_in_flight: int = _opt(_between(1), 256)
    idle_timeout: float = _opt(_between(0), 30.0)
    frame_timeout: float = _opt(_between(1), 60.0)
    max_connections: int = _opt(_between(1), 10000)
    max_reassembly_bytes: int = _opt(_between(1024), 268435456)
    session_matching: str = _opt(_one_of("uri", "session-id"), "uri")

    @property
    def sockets(self) -> tuple[SocketAddress, ...]:
        return tuple(parse_socket(s, MSRP_PROTOCOLS) for s in self.socket)


@dataclass(frozen=True, slots=True)
class MSRPUASettings:
    """``[msrp_ua]``: as OpenSIPS' msrp_ua module parameters, plus set-up waits."""

    max_duration: int = _opt(_between(0), 43200)
    advertised_contact: str = _opt(_sip_uri, "")
    setup_timeout: float = _opt(_between(0.1), 30.0)
    actpass_answer: str = _opt(_one_of("passive", "active"), "passive")
    offer_setup: str = _opt(_one_of("actpass", "active", "passive"), "actpass")
    max_sessions: int = _opt(_between(1), 100000)
    max_queued_messages: int = _opt(_between(1), 256)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``[msrp_gateway]``: as OpenSIPS' msrp_gateway module parameters, plus bounds."""

    hash_size: int = _opt(_between(1, 20), 10)
    cleanup_interval: int = _opt(_between(1), 60)
    session_timeout: int = _opt(_between(1), 43200)
    message_timeout: int = _opt(_between(1), 7200)
    max_sessions: int = _opt(_between(1), 100000)
    max_queued_messages: int = _opt(_between(1), 64)
    max_queued_bytes: int = _opt(_between(1), 1048576)
    max_pending_messages: int = _opt(_between(1), 10000)
    stop_timeout: float = _opt(_between(0.1), 5.0)
    failure_message: bool = _opt(None, True)
    # "hop": a MESSAGE gets 202 once its body is on its way, SEND REPORTs are hop by hop;
    # "end_to_end": the MESSAGE's final answer waits for the SEND's outcome (at most
    # delivery_timeout seconds, below the sender's Timer F) and a SEND's success REPORT
    # waits for the MESSAGE's 2xx.
    delivery: str = _opt(_one_of("hop", "end_to_end"), "hop")
    delivery_timeout: float = _opt(_between(1, 30), 25.0)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``[tls]``: files for ``tls:`` and ``msrps:`` sockets and for verifying peers."""

    certificate: str = _opt(_file_or_empty, "")
    private_key: str = _opt(_file_or_empty, "")
    ca_certificates: str = _opt(_file_or_empty, "")
    verify_peers: bool = _opt(None, False)


@dataclass(frozen=True, slots=True)
class MISettings:
    """``[mi]``: the JSON-RPC 2.0 endpoint (``POST /mi``), its bounds and access control."""

    http: str = _opt(_host_port_or_empty, "127.0.0.1:8888")
    max_body_size: int = _opt(_between(256, 64 * 1024 * 1024), 65536)
    max_batch: int = _opt(_between(1, 10000), 32)
    bearer_token: str = _opt(None, "")
    basic_user: str = _opt(None, "")
    basic_password: str = _opt(None, "")

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_host_port(self.http) if self.http else None


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """``[events]``: subscription and delivery bounds (a subscriber that is down costs at
    most a bounded, backed-off retry and a bounded queue)."""

    max_subscribers: int = _opt(_between(1), 256)
    max_queue: int = _opt(_between(1), 1000)
    connect_timeout: float = _opt(_between(0.1), 5.0)
    retry_delay: float = _opt(_between(0.01), 1.0)
    max_retry_delay: float = _opt(_between(0.01), 60.0)


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """``[routing]``: the routing script (``''`` = built-in default route) and trusted sources."""

    script: str = _opt(_file_or_empty, "")
    trusted: tuple[str, ...] = _opt(_networks, ("127.0.0.0/8", "::1/128"))

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.trusted)


def _gc_thresholds(v: tuple[int, ...]) -> str | None:
    # gen-0 0 would turn the collector off for good: cyclic garbage would never be freed.
    if v == () or (len(v) == 3 and 100 <= v[0] <= 10_000_000
                   and all(1 <= x <= 100_000 for x in v[1:])):
        return None
    return ("[] (Python's own) or three integers [gen0, gen1, gen2] with gen0 from 100 to "
            "10000000 and gen1, gen2 from 1 to 100000")


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """``[process]``: interpreter tuning applied once the listeners are open.

    With the defaults the start-up heap is frozen out of the collector and young
    collections run every 50,000 allocations instead of 700: measured on UDP MESSAGE
    (bench/sip_message_rate.py), p99 64-124 ms -> 4 ms at 8,000/s and 208-228 ms -> 4-8 ms
    at 10,000/s, without the retransmissions that collector pauses caused.
    """

    gc_freeze: bool = _opt(None, True)
    gc_thresholds: tuple[int, ...] = _opt(_gc_thresholds, (50000, 20, 1000))


@dataclass(frozen=True, slots=True)
class LogSettings:
    """``[log]``: the starting log level (``--log-level`` overrides it)."""

    level: str = _opt(_one_of(*LOG_LEVELS), "info")


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole file; each attribute is one TOML table."""

    sip: SIPSettings = field(default_factory=SIPSettings)
    msrp: MSRPSettings = field(default_factory=MSRPSettings)
    msrp_ua: MSRPUASettings = field(default_factory=MSRPUASettings)
    msrp_gateway: GatewaySettings = field(default_factory=GatewaySettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    mi: MISettings = field(default_factory=MISettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    log: LogSettings = field(default_factory=LogSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    source: str = field(default="", compare=False)


_SECTIONS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Settings) if f.name != "source"
}

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _expected_word(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "an array of " + ("integers" if typing.get_args(tp)[0] is int else "strings")
    return _TYPE_WORDS.get(tp, str(tp))


def _coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    """Check a TOML value against an annotation; (ok, value as stored)."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        if item is str and isinstance(value, str):
            value = [value]  # OpenSIPS allows one socket written alone; so do we
        ok = isinstance(value, list) and all(_coerce(item, v)[0] for v in value)
        return ok, tuple(value) if ok else value
    raise TypeError(tp)


def _build_section(name: str, cls: type, table: Any, source: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}]", "a table", table, source)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in known:
            raise ConfigError(f"[{name}] {key}",
                              "one of the known keys (" + ", ".join(known) + ")",
                              _Unknown("an unknown key"), source)
        ok, value = _coerce(hints[key], raw)
        if not ok:
            raise ConfigError(f"[{name}] {key}", _expected_word(hints[key]), raw, source)
        check = known[key].metadata.get("check")
        if check is not None and getattr(check, "each", False):
            for i, item in enumerate(value):
                problem = check(item)
                if problem:
                    raise ConfigError(f"[{name}] {key}[{i}]", problem, item, source)
        elif check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"[{name}] {key}", problem, raw, source)
        values[key] = value
    return cls(**values)


def from_dict(data: dict[str, Any], source: str = "") -> Settings:
    """Validate a parsed TOML document; raises :class:`ConfigError` on the first problem."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"[{name}]", "one of the tables " +
                              ", ".join(f"[{n}]" for n in _SECTIONS),
                              _Unknown("an unknown table"), source)
        sections[name] = _build_section(name, cls, table, source)
    settings = Settings(**sections, source=source)
    _cross_checks(settings, source)
    return settings


def _cross_checks(s: Settings, source: str) -> None:
    gw = s.msrp_gateway
    sip = s.sip
    if not sip.socket:
        raise ConfigError("[sip] socket", "at least one SIP socket string (the first one "
                          "gives the Via and Contact of what we send)", [], source)
    if len(sip.dns_servers) > MAX_DNS_SERVERS:
        raise ConfigError("[sip] dns_servers", f"at most {MAX_DNS_SERVERS} DNS servers "
                          "([] = the nameservers of /etc/resolv.conf)",
                          list(sip.dns_servers), source)
    if sip.timer_t1 >= sip.timer_t2:
        raise ConfigError("[sip] timer_t1", f"a value below timer_t2 ({sip.timer_t2})",
                          sip.timer_t1, source)
    # Each session is one INVITE dialog: a session limit above max_dialogs would answer
    # 202 and then fail the set-up on a full dialog table instead of refusing with 503.
    for section, limit in (("msrp_gateway", gw.max_sessions),
                           ("msrp_ua", s.msrp_ua.max_sessions)):
        if limit > sip.max_dialogs:
            raise ConfigError(f"[{section}] max_sessions",
                              f"a value <= [sip] max_dialogs ({sip.max_dialogs}), as each "
                              "session needs a SIP dialog", limit, source)
    # An end-to-end MESSAGE answer must reach the sender before its Timer F (64*T1, RFC
    # 3261 s.17.1.2.2) gives up on the request; our [sip] timer_t1 stands for the peers'.
    # (Unused with delivery = "hop", so not checked then: tests shrink timer_t1.)
    timer_f = 64 * sip.timer_t1
    if gw.delivery == "end_to_end" and gw.delivery_timeout >= timer_f:
        raise ConfigError("[msrp_gateway] delivery_timeout",
                          f"a value below 64 * [sip] timer_t1 ({timer_f:g} s, the sender's "
                          "Timer F)", gw.delivery_timeout, source)
    if gw.session_timeout < gw.message_timeout:
        raise ConfigError("[msrp_gateway] session_timeout",
                          f"a value >= message_timeout ({gw.message_timeout}), as in OpenSIPS",
                          gw.session_timeout, source)
    tls_sockets = [x for x in s.sip.socket if x.lower().startswith("tls:")]
    tls_sockets += [x for x in s.msrp.socket if x.lower().startswith("msrps:")]
    for uri in (s.msrp.my_uri, s.msrp.relay_uri):
        if uri.lower().startswith("msrps:"):
            tls_sockets.append(uri)
    if tls_sockets and not s.tls.certificate:
        raise ConfigError("[tls] certificate", f"a certificate file for {tls_sockets[0]!r}",
                          _Unknown("none"), source)
    if tls_sockets and not s.tls.private_key:
        raise ConfigError("[tls] private_key", f"a private key file for {tls_sockets[0]!r}",
                          _Unknown("none"), source)
    if s.tls.verify_peers and not s.tls.ca_certificates:
        raise ConfigError("[tls] ca_certificates", "a CA file when verify_peers is true",
                          _Unknown("none"), source)
    if s.events.max_retry_delay < s.events.retry_delay:
        raise ConfigError("[events] max_retry_delay",
                          f"a value >= retry_delay ({s.events.retry_delay})",
                          s.events.max_retry_delay, source)
    m = s.msrp
    if m.max_reassembly_bytes < m.max_message_size:
        raise ConfigError("[msrp] max_reassembly_bytes",
                          f"a value >= max_message_size ({m.max_message_size}), or no chunked "
                          "message of that size could ever be reassembled",
                          m.max_reassembly_bytes, source)
    if (m.relay_username or m.relay_password) and not m.relay_uri:
        key = "relay_username" if m.relay_username else "relay_password"
        raise ConfigError(f"[msrp] {key}", "'' when relay_uri is not set (the credentials "
                          "are for an RFC 4976 relay)", _Unknown("a value"), source)
    if m.relay_expires and not m.relay_uri:
        raise ConfigError("[msrp] relay_expires", "0 when relay_uri is not set (it is the "
                          "lifetime asked of an RFC 4976 relay)", m.relay_expires, source)
    if m.relay_username and not m.relay_password:
        raise ConfigError("[msrp] relay_password", "a password when relay_username is set",
                          _Unknown("none"), source)
    if m.relay_password and not m.relay_username:
        raise ConfigError("[msrp] relay_username", "a user name when relay_password is set",
                          _Unknown("none"), source)
    if s.mi.basic_user and not s.mi.basic_password:
        raise ConfigError("[mi] basic_password", "a password when basic_user is set",
                          _Unknown("none"), source)
    if s.mi.basic_password and not s.mi.basic_user:
        raise ConfigError("[mi] basic_user", "a user name when basic_password is set",
                          _Unknown("none"), source)


def load(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a TOML file; every failure is a :class:`ConfigError`."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("file", "a readable TOML file", _Unknown("no such file"),
                          source) from None
    except OSError as e:
        raise ConfigError("file", "a readable TOML file", _Unknown(e.strerror or str(e)),
                          source) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("file", "valid TOML", _Unknown(str(e)), source) from None
    except UnicodeDecodeError:
        raise ConfigError("file", "UTF-8 text", _Unknown("undecodable bytes"),
                          source) from None
    return from_dict(data, source)


def load_default() -> Settings:
    """Settings from the bundled default file (loopback only)."""
    ref = resources.files("msrp_gateway").joinpath("etc/msrpgw.toml")
    with resources.as_file(ref) as path:
        return load(path)

