"""MSRP URIs: parsing (RFC 4975 s.6, s.9) and comparison (s.6.1)."""

from __future__ import annotations

import pytest

from msrp_gateway.msrp.message import MSRPParseError
from msrp_gateway.msrp.uri import DEFAULT_PORT, MSRPURI, parse_msrp_uri, uris_match


def test_full_uri_parses_into_its_parts() -> None:
    u = parse_msrp_uri("msrp://bob@biloxi.example.com:12763/kjhd37s2s20w2a;tcp;foo=bar;baz")
    assert u == MSRPURI(
        scheme="msrp", host="biloxi.example.com", port=12763, session_id="kjhd37s2s20w2a",
        transport="tcp", user="bob", params=(("foo", "bar"), ("baz", None)),
    )
    assert not u.secure and u.effective_port == 12763


def test_relay_uri_without_port_or_session_uses_default_port() -> None:
    u = parse_msrp_uri("msrps://alice@intra.example.com;tcp")
    assert (u.scheme, u.user, u.host, u.port, u.session_id) == ("msrps", "alice", "intra.example.com", None, None)
    assert u.secure and u.effective_port == DEFAULT_PORT == 2855


def test_ipv6_literal_with_and_without_port() -> None:
    u = parse_msrp_uri("msrp://[2001:db8::1]:2855/abc;tcp")
    assert (u.host, u.port, u.hostport) == ("2001:db8::1", 2855, "[2001:db8::1]:2855")
    v = parse_msrp_uri("msrp://[::1]/abc;tcp")
    assert (v.host, v.port, v.is_ipv6) == ("::1", None, True)


def test_scheme_and_transport_come_out_lower_cased_and_host_as_written() -> None:
    u = parse_msrp_uri("MSRP://Host.Example.COM:9/Sess+ID=/x;TCP")
    assert (u.scheme, u.transport, u.host, u.session_id) == ("msrp", "tcp", "Host.Example.COM", "Sess+ID=/x")


@pytest.mark.parametrize(
    "text",
    [
        "msrp://a.example.com:7654/jshA7weztas;tcp",
        "msrps://u:p@[fe80::1]:1/s;tls;a=b",
        "msrp://10.0.0.1/s-._~+=/;ws",
        "msrp://h;tcp",
    ],
)
def test_str_gives_the_uri_back(text: str) -> None:
    assert str(parse_msrp_uri(text)) == text


@pytest.mark.parametrize(
    "text, why",
    [
        ("sip://a.example.com/s;tcp", "wrong scheme"),
        ("msrp:a.example.com/s;tcp", "no //"),
        ("msrp://a.example.com/s", "no transport"),
        ("msrp://a.example.com:0/s;tcp", "port 0"),
        ("msrp://a.example.com:65536/s;tcp", "port too big"),
        ("msrp://a.example.com:12ab/s;tcp", "port not numeric"),
        ("msrp://[::g]/s;tcp", "bad IPv6"),
        ("msrp://[::1/s;tcp", "unterminated IPv6"),
        ("msrp://[::1]x/s;tcp", "junk after IPv6"),
        ("msrp:///s;tcp", "empty host"),
        ("msrp://h/s?x;tcp", "bad session-id character"),
        ("msrp://h/s;t-p", "bad transport"),
        ("msrp://h/s;tcp;a b", "bad parameter"),
        ("msrp://u ser@h/s;tcp", "bad userinfo"),
        ("msrp://h/" + "s" * 2000 + ";tcp", "over the length bound"),
    ],
)
def test_malformed_uris_raise_msrp_parse_error(text: str, why: str) -> None:
    with pytest.raises(MSRPParseError) as e:
        parse_msrp_uri(text)
    assert e.value.code == 400


@pytest.mark.parametrize(
    "a, b",
    [
        ("msrp://h.example.com:7/s;tcp", "MSRP://H.EXAMPLE.COM:7/s;TCP"),  # case of scheme/host/transport
        ("msrp://alice@h:7/s;tcp", "msrp://bob@h:7/s;tcp"),  # userinfo ignored
        ("msrp://[::1]:7/s;tcp", "msrp://[0:0::0:1]:7/s;tcp"),  # addresses compared as addresses
        ("msrp://h:7/s;tcp;x=1", "msrp://h:7/s;tcp"),  # other params ignored
        ("msrp://h;tcp", "msrp://h;tcp"),  # no port, no session on both sides
    ],
)
def test_equivalent_uris_match(a: str, b: str) -> None:
    assert uris_match(a, b) and uris_match(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("msrp://h:7/s;tcp", "msrps://h:7/s;tcp"),  # scheme
        ("msrp://h:7/s;tcp", "msrp://h:8/s;tcp"),  # port
        ("msrp://h:2855/s;tcp", "msrp://h/s;tcp"),  # explicit port never equals none (s.6.1)
        ("msrp://h:7/abc;tcp", "msrp://h:7/ABC;tcp"),  # session-id is case-sensitive
        ("msrp://h:7/abc;tcp", "msrp://h:7;tcp"),  # session-id present on one side only
        ("msrp://h:7/s;tcp", "msrp://h:7/s;tls"),  # transport
        ("msrp://h1:7/s;tcp", "msrp://h2:7/s;tcp"),  # host
    ],
)
def test_different_uris_do_not_match(a: str, b: str) -> None:
    assert not uris_match(a, b) and not uris_match(b, a)


def test_default_port_switch_treats_a_missing_port_as_2855() -> None:
    assert uris_match("msrp://h:2855/s;tcp", "msrp://h/s;tcp", default_port=True)
    assert not uris_match("msrp://h:2856/s;tcp", "msrp://h/s;tcp", default_port=True)


def test_uris_match_accepts_parsed_uris_and_raises_on_bad_text() -> None:
    u = parse_msrp_uri("msrp://h:7/s;tcp")
    assert uris_match(u, "msrp://h:7/s;tcp")
    with pytest.raises(MSRPParseError):
        uris_match(u, "msrp://h:7/s")


def test_userinfo_may_hold_sub_delims_including_semicolon() -> None:
    u = parse_msrp_uri("msrp://al;ice:pw@h.example.com:9/s;tcp")
    assert (u.user, u.host, u.port, u.session_id, u.transport) == ("al;ice:pw", "h.example.com", 9, "s", "tcp")
    assert str(u) == "msrp://al;ice:pw@h.example.com:9/s;tcp"
    with pytest.raises(MSRPParseError):
        parse_msrp_uri("msrp://h/s@x;tcp")  # "@" after the path is not userinfo
