"""sockets.py: the one socket-string parser every layer uses (config, SIP and MSRP
listeners, event subscribers), each with its own protocols, host and port rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrp_gateway.sockets import (
    MAX_SOCKET_LENGTH,
    SocketAddress,
    SocketStringError,
    parse_host_port,
    parse_socket_string,
)

SIP = {"udp": 5060, "tcp": 5060, "tls": 5061}
MSRP = {"msrp": 2855, "msrps": 2855}
EVENTS = {"udp": None, "tcp": None}


def refused(text, protocols=SIP, **kw) -> SocketStringError:
    with pytest.raises(SocketStringError) as info:
        parse_socket_string(text, protocols, **kw)
    return info.value


@pytest.mark.parametrize("text, protocols, expected", [
    ("udp:127.0.0.1:5060", SIP, SocketAddress("udp", "127.0.0.1", 5060)),
    ("TCP:[::1]:5070", SIP, SocketAddress("tcp", "::1", 5070)),
    ("tls:127.0.0.1", SIP, SocketAddress("tls", "127.0.0.1", 5061)),
    ("udp:gw.example.net", SIP, SocketAddress("udp", "gw.example.net", 5060)),
    ("udp:127.0.0.1:0", SIP, SocketAddress("udp", "127.0.0.1", 0)),
    ("msrps:[2001:DB8::0001]", MSRP, SocketAddress("msrps", "2001:db8::1", 2855)),
    ("msrp:localhost:2999", MSRP, SocketAddress("msrp", "localhost", 2999)),
])
def test_protocols_default_ports_and_hosts(text, protocols, expected):
    assert parse_socket_string(text, protocols) == expected


def test_the_protocols_argument_decides_what_is_accepted():
    assert refused("msrp:127.0.0.1", SIP).part == "protocol"
    assert str(refused("sctp:127.0.0.1", SIP)) == "one of udp:, tcp:, tls: before the host"
    assert refused("udp:127.0.0.1", MSRP).part == "protocol"
    assert refused("127.0.0.1:5060").part == "protocol"


def test_a_protocol_without_default_port_needs_one():
    assert refused("udp:127.0.0.1", EVENTS).part == "port"
    assert parse_socket_string("udp:127.0.0.1:9", EVENTS).port == 9


def test_event_rules_ip_only_port_from_1_and_method_on_tcp_only():
    kw = dict(names=False, min_port=1, methods=frozenset({"tcp"}))
    assert parse_socket_string("tcp:[::1]:80/my_method", EVENTS, **kw) == SocketAddress(
        "tcp", "::1", 80, "my_method")
    assert refused("udp:localhost:9", EVENTS, **kw).part == "host"
    assert refused("udp:127.0.0.1:0", EVENTS, **kw).part == "port"
    assert refused("udp:127.0.0.1:9/m", EVENTS, **kw).part == "method"
    assert refused("tcp:127.0.0.1:9/", EVENTS, **kw).part == "method"
    assert refused("tcp:127.0.0.1:9/a b", EVENTS, **kw).part == "method"
    # without methods, a '/' is refused too
    assert refused("tcp:127.0.0.1:9/m").part == "method"


@pytest.mark.parametrize("text, part", [
    ("udp:", "host"),
    ("udp::5060", "host"),
    ("udp:::1:5060", "host"),  # bare IPv6: brackets required
    ("udp:[::1", "host"),
    ("udp:[127.0.0.1]:5060", "host"),
    ("udp:[::1]5060", "port"),
    ("udp:host_name:5", "host"),
    ("udp:1.2.3.4:70000", "port"),
    ("udp:1.2.3.4:-1", "port"),
    ("udp:1.2.3.4:", "port"),
    ("udp:1.2.3.4:\u00b2", "port"),  # a digit to str.isdigit(), not to int()
    ("udp:1.2.3.4:000005060", "port"),
    ("udp:" + "a" * MAX_SOCKET_LENGTH, "length"),
])
def test_bad_strings_name_the_part_that_is_wrong(text, part):
    assert refused(text).part == part


def test_host_port_without_protocol():
    assert parse_host_port("127.0.0.1:8888") == ("127.0.0.1", 8888)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    assert parse_host_port("example.net", 80) == ("example.net", 80)
    with pytest.raises(SocketStringError):
        parse_host_port("localhost")  # no default port: the port must be written
    with pytest.raises(SocketStringError):
        parse_host_port("::1:9000")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300), st.booleans(), st.integers(0, 1))
def test_any_text_gives_an_address_or_our_error_and_addresses_round_trip(text, names,
                                                                        min_port):
    protocols = {"udp": 5060, "tcp": None, "msrp": 2855}
    kw = dict(names=names, min_port=min_port, methods=frozenset({"tcp"}))
    try:
        addr = parse_socket_string(text, protocols, **kw)
    except SocketStringError:
        return
    assert parse_socket_string(str(addr), protocols, **kw) == addr


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["udp", "tcp", "tls"]), st.ip_addresses(), st.integers(0, 65535))
def test_every_ip_and_port_parses_back(proto, ip, port):
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    assert parse_socket_string(f"{proto}:{host}:{port}", SIP) == SocketAddress(
        proto, str(ip), port)


# --- the callers: one parser, each with its own rules and error type --------------------

def test_config_sip_and_msrp_listeners_and_event_subscribers_share_the_parser():
    from msrp_gateway import config, events
    from msrp_gateway.msrp import transport
    from msrp_gateway.sip.peers import Peer, parse_listen_string

    assert parse_listen_string("TLS:[2001:DB8::0001]") == Peer("tls", "2001:db8::1", 5061)
    with pytest.raises(ValueError, match="expected udp:HOST:PORT, tcp:HOST:PORT or tls:"):
        parse_listen_string("msrp:127.0.0.1")
    with pytest.raises(ValueError, match=r"socket 'udp:::1:5060': expected an IPv6 address "
                                         r"in brackets"):
        parse_listen_string("udp:::1:5060")
    canonical = "msrps:[2001:DB8::0001]"
    assert str(config.parse_socket(canonical)) == "msrps:[2001:db8::1]:2855"
    assert transport.parse_socket(canonical) == (True, "2001:db8::1", 2855)
    assert str(events.parse_socket("tcp:[2001:DB8::0001]:9/m")) == "tcp:[2001:db8::1]:9/m"
    # each keeps its own rules ...
    assert transport.parse_socket(" msrp:gw.example.net ") == (False, "gw.example.net", 2855)
    with pytest.raises(events.EventError, match="host must be an IP address"):
        events.parse_socket("udp:gw.example.net:9")
    with pytest.raises(events.EventError, match="/method is only for tcp:"):
        events.parse_socket("udp:127.0.0.1:9/m")
    # ... and its own error type and wording
    with pytest.raises(ValueError, match=r"bad MSRP socket 'msrp:1\.2\.3\.4:70000': expected "
                                         r"a port 0\.\.65535"):
        transport.parse_socket("msrp:1.2.3.4:70000")
    with pytest.raises(ValueError, match="write msrp:HOST:PORT or msrps:HOST:PORT"):
        transport.parse_socket("udp:127.0.0.1")
    with pytest.raises(ValueError, match="a socket string starting with one of udp:, tcp:"):
        config.parse_socket("sctp:127.0.0.1", ("udp", "tcp"))
