"""SIP URIs, name-addr values and AOR keys (RFC 3261 s.19.1, s.20.10, s.25.1)."""

from __future__ import annotations

import pytest

from msrp_gateway.sip.uri import (
    NameAddr,
    SIPParseError,
    SIPURI,
    aor,
    parse_name_addr,
    parse_uri,
    tag_of,
    validate_absolute_uri,
    validate_name_addr,
    validate_uri,
)


def test_full_uri_parts_are_split_and_print_back_unchanged():
    text = "sips:alice:secret@Example.COM:5061;transport=TCP;lr;maddr=10.0.0.1?subject=hi&priority=urgent"
    u = parse_uri(text)
    assert (u.scheme, u.user, u.password, u.host, u.port) == (
        "sips", "alice", "secret", "Example.COM", 5061)
    assert u.params == {"transport": "TCP", "lr": None, "maddr": "10.0.0.1"}
    assert u.headers == {"subject": "hi", "priority": "urgent"}
    assert u.transport == "tcp"
    assert u.has_param("LR") and u.param("MADDR") == "10.0.0.1"
    assert str(u) == text


def test_ipv6_references_lose_their_brackets_inside_and_get_them_back_in_str():
    u = parse_uri("sip:bob@[2001:db8::10]:5070;transport=udp")
    assert (u.host, u.port) == ("2001:db8::10", 5070)
    assert str(u) == "sip:bob@[2001:db8::10]:5070;transport=udp"
    assert u.aor == "sip:bob@[2001:db8::10]"
    assert parse_uri("sip:[::1]").host == "::1"


def test_user_part_may_hold_escapes_semicolons_and_question_marks():
    u = parse_uri("sip:user;par=u%40example.net@example.com")
    assert (u.user, u.host, u.params) == ("user;par=u%40example.net", "example.com", {})
    assert parse_uri("sip:%75se%72@example.com").user == "%75se%72"


def test_scheme_is_case_insensitive_and_other_schemes_are_416():
    assert parse_uri("SIP:bob@example.com").scheme == "sip"
    with pytest.raises(SIPParseError) as info:
        parse_uri("tel:+15551234")
    assert info.value.code == 416


@pytest.mark.parametrize("bad", [
    "sip:", "sip:bob@", "bob@example.com", "sip:bob@exa mple.com", "sip:bob@[::1",
    "sip:bob@[not-ipv6]", "sip:bob@example.com:99999", "sip:bob@example.com:5x",
    "sip:bob@300.1.1.1", "sip:b<o>b@example.com", "sip:bob@example.com;=x",
    "sip:bob@example.com?noequals", "sip:bob@-bad-.com", "sip:bob@example.com;a b",
    "sip:" + "a" * 5000 + "@example.com",
])
def test_malformed_uris_raise_400_class_errors(bad):
    with pytest.raises(SIPParseError) as info:
        parse_uri(bad)
    assert info.value.code in (400, 414)


def test_aor_reduces_to_scheme_user_host_with_host_lower_cased():
    assert aor("sip:Alice@EXAMPLE.com:5070;transport=tcp?x=y") == "sip:Alice@example.com"
    assert aor("<sips:bob@Host.Example>") == "sips:bob@host.example"
    assert aor("sip:Example.COM") == "sip:example.com"
    assert aor("TEL:+1-555") == "tel:+1-555"
    assert parse_uri("sip:carol@H.example:1;x").aor == "sip:carol@h.example"


def test_name_addr_with_quoted_display_name_params_and_tag():
    na = parse_name_addr('"Alice \\"A\\" Smith" <sip:alice@example.com;transport=tcp>;tag=abc;x=1')
    assert na.display == 'Alice "A" Smith'
    assert na.uri == "sip:alice@example.com;transport=tcp"
    assert na.params == {"tag": "abc", "x": "1"}
    assert na.tag == "abc"
    assert na.sip_uri.transport == "tcp"
    assert na.aor == "sip:alice@example.com"
    again = parse_name_addr(str(na))
    assert again == na


def test_addr_spec_form_puts_every_semicolon_param_on_the_header():
    na = parse_name_addr("sip:bob@example.com;tag=xyz;user=phone")
    assert (na.display, na.uri, na.params) == (None, "sip:bob@example.com",
                                               {"tag": "xyz", "user": "phone"})
    assert str(na) == "<sip:bob@example.com>;tag=xyz;user=phone"


def test_unquoted_token_display_names_and_other_schemes_are_accepted():
    assert parse_name_addr("Bob Smith <sip:bob@example.com>").display == "Bob Smith"
    assert parse_name_addr("caller<sip:caller@example.com>").display == "caller"
    assert parse_name_addr("<tel:+15551234>;tag=1").uri == "tel:+15551234"


@pytest.mark.parametrize("bad", [
    '"unterminated <sip:bob@example.com>',
    "Bell, Alexander <sip:a@example.com>",
    "<sip:bob@example.com",
    "< sip:bob@example.com >",
    "sip:bob@example.com?x=y",
    "<sip:bob@example.com>;tag=a b",
    "<sip:bob@example.com> junk",
    '"name" sip:bob@example.com',
    "",
])
def test_malformed_name_addr_values_raise_400(bad):
    with pytest.raises(SIPParseError) as info:
        parse_name_addr(bad)
    assert info.value.code == 400


@pytest.mark.parametrize("text", [
    "<sip:bob@example.com>;tag=1", '"Bob" <sip:bob@example.com:5060;transport=tcp>;tag=x',
    "sip:bob@example.com;tag=2", "<sip:bob@[::1]:5060>", "<sip:b%20ob@example.com>",
    'A B <sip:ab@example.com>;x="quoted;value"',
])
def test_fast_validation_agrees_with_the_full_parser_on_valid_values(text):
    validate_name_addr(text)
    assert tag_of(text) == parse_name_addr(text).tag


@pytest.mark.parametrize("text", ["sip:bob@example.com", "sip:bob@192.0.2.1:5060;lr",
                                  "sips:a:b@h.example;transport=tls"])
def test_fast_uri_validation_accepts_plain_uris(text):
    validate_uri(text)
    assert str(parse_uri(text)) == text


def test_records_compare_by_value():
    assert SIPURI("sip", "a", None, "h") == parse_uri("sip:a@h")
    assert NameAddr(None, "sip:a@h", {"tag": "1"}) == parse_name_addr("<sip:a@h>;tag=1")


@pytest.mark.parametrize("bad", [
    "p:bob@127.0.0.1>",            # the fuzzed To that once became a gateway key
    "<p:bob@127.0.0.1>>",
    '<im:bo"b@example.com>',
    "<tel:+1 555>",
    "<x:>",
    "<urn:a<b>",
    "<1tel:+123>",                 # a scheme starts with a letter
    "<tel:+1#2>",
])
def test_non_sip_uris_must_be_rfc3261_absolute_uris(bad):
    """s.25.1 absoluteURI: scheme chars, then only uric characters (no <>" or whitespace)."""
    with pytest.raises(SIPParseError) as info:
        parse_name_addr(bad)
    assert info.value.code == 400


@pytest.mark.parametrize("good", [
    "tel:+1-201-555-0123;phone-context=example.com", "im:bob@example.com",
    "urn:service:sos", "http://[2001:db8::1]:8080/a/b?c=d&e=f", "mailto:a%40b@example.com",
])
def test_absolute_uris_of_other_schemes_are_accepted_and_keyed_as_written(good):
    validate_absolute_uri(good)
    na = parse_name_addr(f"<{good}>;tag=t1")
    assert na.uri == good and na.tag == "t1"
    assert na.aor == good.lower()
