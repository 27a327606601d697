"""Hypothesis properties of the SIP parser: round trips, and hostile bytes that never raise
anything but SIPParseError (datagrams, streams split anywhere, mutated messages)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msrp_gateway.sip.message import (
    Headers,
    Limits,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    StreamParser,
    parse_message,
)
from msrp_gateway.sip.uri import parse_name_addr, parse_uri

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# generating whole messages is the slow part: fewer, larger examples for the stream test
STREAMS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
token = st.text(TOKEN_CHARS, min_size=1, max_size=12)
label = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
host = st.one_of(hostname, ipv4, st.just("[2001:db8::1]"))
port = st.one_of(st.none(), st.integers(1, 65535))
user = st.from_regex(r"[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,10}|[a-z]{1,4}%[0-9A-F]{2}[a-z]{0,3}",
                     fullmatch=True)
uri_param = st.tuples(st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True),
                      st.one_of(st.none(), st.from_regex(r"[a-zA-Z0-9.]{1,8}", fullmatch=True)))


@st.composite
def sip_uris(draw) -> str:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    u = draw(st.one_of(st.none(), user))
    text = f"{scheme}:" + (f"{u}@" if u else "") + draw(host)
    p = draw(port)
    if p is not None:
        text += f":{p}"
    for name, value in draw(st.lists(uri_param, max_size=3, unique_by=lambda x: x[0])):
        text += f";{name}" if value is None else f";{name}={value}"
    return text


display = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, exclude_characters="\x7f"),
                  max_size=12)


@st.composite
def name_addrs(draw, tag: bool) -> str:
    d = draw(st.one_of(st.none(), display))
    uri = draw(sip_uris())
    out = f"<{uri}>"
    if d is not None:
        quoted = d.replace("\\", "\\\\").replace('"', '\\"')
        out = f'"{quoted}" {out}'
    if tag:
        out += f";tag={draw(token)}"
    return out


header_value = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"),
                       max_size=30).map(lambda s: s.strip(" \t"))


@st.composite
def vias(draw) -> str:
    proto = draw(st.sampled_from(["UDP", "TCP", "TLS"]))
    h = draw(host)
    p = draw(port)
    text = f"SIP/2.0/{proto} {h}" + (f":{p}" if p else "")
    text += f";branch=z9hG4bK{draw(st.from_regex(r'[a-zA-Z0-9]{1,12}', fullmatch=True))}"
    if draw(st.booleans()):
        text += ";rport"
    return text


@st.composite
def common_headers(draw, method: str) -> list[tuple[str, str]]:
    headers = [("Via", v) for v in draw(st.lists(vias(), min_size=1, max_size=3))]
    headers += [
        ("From", draw(name_addrs(tag=True))),
        ("To", draw(name_addrs(tag=draw(st.booleans())))),
        ("Call-ID", draw(st.from_regex(r"[a-zA-Z0-9.@-]{1,20}", fullmatch=True))),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    extra = draw(st.lists(st.tuples(token.map(lambda t: "X-" + t), header_value), max_size=4))
    headers += extra
    return draw(st.permutations(headers))


@st.composite
def requests(draw) -> SIPRequest:
    method = draw(st.sampled_from(["MESSAGE", "INVITE", "OPTIONS", "BYE", "X-Custom.1"]))
    hs = draw(common_headers(method))
    body = draw(st.binary(max_size=200))
    m = SIPRequest(method, draw(sip_uris()), Headers(hs), body)
    m.to_bytes()  # sets Content-Length in the headers
    return m


@st.composite
def responses(draw) -> SIPResponse:
    method = draw(st.sampled_from(["MESSAGE", "INVITE"]))
    hs = draw(common_headers(method))
    reason = draw(header_value)
    m = SIPResponse(draw(st.integers(100, 699)), reason, Headers(hs),
                    draw(st.binary(max_size=100)))
    m.to_bytes()
    return m


messages = st.one_of(requests(), responses())


def touch_everything(m) -> None:
    """Every typed accessor either works or raises SIPParseError."""
    for attr in ("call_id", "cseq", "from_tag", "to_tag", "top_via", "vias", "content_type",
                 "max_forwards"):
        try:
            getattr(m, attr)
        except SIPParseError:
            pass
    for name in ("From", "To", "Contact", "Route"):
        for value in m.headers.get_all(name):
            try:
                parse_name_addr(value)
            except SIPParseError:
                pass
    if isinstance(m, SIPRequest):
        try:
            parse_uri(m.uri)
        except SIPParseError:
            pass


@FAST
@given(messages)
def test_parse_of_serialize_is_identity(m):
    parsed = parse_message(m.to_bytes())
    assert parsed == m
    assert parse_message(parsed.to_bytes()).to_bytes() == m.to_bytes()


@FAST
@given(messages)
def test_wire_length_equals_the_serialized_length(m):
    from msrp_gateway.sip.records import wire_length

    assert wire_length(m) == len(m.to_bytes())
    assert wire_length(parse_message(m.to_bytes())) == len(m.to_bytes())


@FAST
@given(requests())
def test_typed_views_of_generated_requests_match_what_was_generated(m):
    parsed = parse_message(m.to_bytes())
    number, method = parsed.cseq
    assert method == m.method and f"{number} {method}" == m.headers.get("CSeq")
    assert parsed.from_tag == parse_name_addr(m.headers.get("From")).tag
    assert len(parsed.vias) == len(m.headers.get_all("Via"))
    assert str(parse_uri(parsed.uri)) == m.uri


@STREAMS
@given(st.lists(messages, min_size=1, max_size=4),
       st.lists(st.integers(0, 10_000), max_size=6), st.integers(0, 2))
def test_random_splits_of_a_valid_stream_give_the_same_messages(msgs, cuts, pings):
    data = b"".join(b"\r\n\r\n" * pings + m.to_bytes() for m in msgs)
    points = sorted({c % (len(data) + 1) for c in cuts})
    sp = StreamParser()
    out = []
    last = 0
    for p in points + [len(data)]:
        out += sp.feed(data[last:p])
        last = p
    assert out == msgs
    assert sp.pings == pings * len(msgs)
    assert sp.buffered == 0


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_SIPParseError(data):
    try:
        m = parse_message(data)
    except SIPParseError:
        return
    touch_everything(m)


@FAST
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_random_chunks_on_a_stream_never_raise_anything_but_SIPParseError(chunks):
    sp = StreamParser(Limits(max_message_size=2000))
    try:
        for c in chunks:
            for event in sp.feed(c):
                if not isinstance(event, SIPParseError):
                    touch_everything(event)
    except SIPParseError:
        pass


@FAST
@given(messages, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2),
                                    st.binary(min_size=1, max_size=3)), min_size=1, max_size=5))
def test_mutated_messages_never_raise_anything_but_SIPParseError(m, edits):
    data = bytearray(m.to_bytes())
    for pos, op, chunk in edits:
        pos %= len(data) + 1
        if op == 0:
            data[pos:pos] = chunk
        elif op == 1:
            del data[pos:pos + len(chunk)]
        else:
            data[pos:pos + len(chunk)] = chunk
    raw = bytes(data)
    for parse in (parse_message, lambda b: StreamParser().feed(b)):
        try:
            result = parse(raw)
        except SIPParseError:
            continue
        for event in result if isinstance(result, list) else [result]:
            if not isinstance(event, SIPParseError):
                touch_everything(event)


@FAST
@given(st.text(max_size=80))
def test_uri_and_name_addr_parsers_raise_only_their_error(text):
    for parse in (parse_uri, parse_name_addr):
        try:
            parse(text)
        except SIPParseError:
            pass
