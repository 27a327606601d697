"""Sans-IO SIP messages: headers, typed views, serialization, bounds and stream framing."""

from __future__ import annotations

import pytest

from msrp_gateway.sip.message import (
    Headers,
    Limits,
    SIPParseError,
    SIPRequest,
    SIPResponse,
    StreamParser,
    Via,
    make_response,
    parse_message,
    parse_via,
    reason_phrase,
)

BASE = (
    "MESSAGE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n"
    "From: \"Alice\" <sip:alice@example.com>;tag=f1\r\n"
    "To: <sip:bob@example.com>\r\n"
    "Call-ID: abc@192.0.2.1\r\n"
    "CSeq: 7 MESSAGE\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 5\r\n\r\nhello"
).encode()


def msg_with(*extra: str, body: bytes = b"hello") -> bytes:
    head = BASE.split(b"\r\n\r\n")[0].decode()
    head = head.replace("Content-Length: 5", f"Content-Length: {len(body)}")
    return (head + "".join("\r\n" + e for e in extra)).encode() + b"\r\n\r\n" + body


def test_typed_accessors_of_a_plain_message():
    m = parse_message(BASE)
    assert isinstance(m, SIPRequest)
    assert (m.method, m.uri, m.version, m.body) == ("MESSAGE", "sip:bob@example.com", "SIP/2.0", b"hello")
    assert m.call_id == "abc@192.0.2.1"
    assert m.cseq == (7, "MESSAGE")
    assert (m.from_tag, m.to_tag) == ("f1", None)
    assert m.max_forwards == 70
    assert m.content_type == "text/plain"
    assert m.top_via == Via("UDP", "192.0.2.1", 5060, {"branch": "z9hG4bK1", "rport": None})


def test_compact_forms_become_long_names_and_lookups_ignore_case():
    raw = (b"MESSAGE sip:b@h SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bKx\r\nf: <sip:a@h>;tag=1\r\n"
           b"t: <sip:b@h>\r\ni: id1\r\nCSeq: 1 MESSAGE\r\nc: text/plain\r\nk: path\r\n"
           b"s: hi\r\nm: <sip:a@10.0.0.1>\r\ne: gzip\r\no: presence\r\nu: talk\r\n"
           b"x: 90\r\nl: 2\r\n\r\nok")
    m = parse_message(raw)
    names = [n for n, _ in m.headers.items()]
    assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Content-Type", "Supported",
                     "Subject", "Contact", "Content-Encoding", "Event", "Allow-Events",
                     "Session-Expires", "Content-Length"]
    assert m.headers.get("call-id") == m.headers.get("I") == "id1"
    assert "CONTENT-TYPE" in m.headers and "Route" not in m.headers
    assert m.body == b"ok"


def test_comma_lists_split_for_list_headers_respecting_quotes_and_angles():
    m = parse_message(msg_with(
        'Contact: "Doe, John" <sip:j,k@h;x=a>, <sip:k@h>;q=0.5',
        "Route: <sip:p1@h;lr>, <sip:p2@h;lr>",
        "Route: <sip:p3@h;lr>",
        'Subject: one, two',
    ))
    assert m.headers.get_all("Contact") == ['"Doe, John" <sip:j,k@h;x=a>', "<sip:k@h>;q=0.5"]
    assert m.headers.get_all("route") == ["<sip:p1@h;lr>", "<sip:p2@h;lr>", "<sip:p3@h;lr>"]
    assert m.headers.get_all("Subject") == ["one, two"]  # not a list header


def test_folded_lines_are_joined_with_one_space():
    raw = BASE.replace(b"Content-Type: text/plain", b"Content-Type:\r\n  text/plain\r\nX-Long: a\r\n\tb")
    m = parse_message(raw)
    assert m.content_type == "text/plain"
    assert m.headers.get("X-Long") == "a b"


def test_headers_multimap_operations():
    h = Headers([("Via", "v1"), ("To", "t"), ("via", "v2")])
    assert h.get_all("VIA") == ["v1", "v2"] and h.count("Via") == 2
    h.prepend("v", "v0")
    assert h.get("Via") == "v0"
    h.set("Via", "only")
    assert h.get_all("Via") == ["only"] and h.items()[0] == ("Via", "only")
    assert h.remove("via") == 1 and "Via" not in h
    h.add("Record-Route", "<sip:a>, <sip:b>")
    h.replace_first_value("Record-Route", "<sip:z>")
    assert h.get_all("Record-Route") == ["<sip:z>", "<sip:b>"]
    c = h.copy()
    c.add("X", "1")
    assert "X" not in h and len(c) == len(h) + 1
    assert h.get("Missing") is None and h.get("Missing", "d") == "d"


def test_serialization_writes_content_length_from_the_body_and_round_trips():
    m = parse_message(BASE)
    m.body = b"longer body"
    out = m.to_bytes()
    assert b"Content-Length: 11\r\n" in out and out.count(b"Content-Length") == 1
    assert parse_message(out) == m and m.headers.get("Content-Length") == "11"
    dup = parse_message(out)
    dup.headers.add("l", "99")
    assert dup.to_bytes() == out
    fresh = SIPRequest("MESSAGE", "sip:b@h", Headers([
        ("Via", "SIP/2.0/UDP h;branch=z9hG4bK9"), ("From", "<sip:a@h>;tag=1"), ("To", "<sip:b@h>"),
        ("Call-ID", "x"), ("CSeq", "1 MESSAGE")]), b"hi")
    again = parse_message(fresh.to_bytes())
    assert again.body == b"hi" and again.headers.get("Content-Length") == "2"


def test_set_top_via_keeps_the_other_vias():
    m = parse_message(msg_with("Via: SIP/2.0/TCP p2.example.com;branch=z9hG4bK2").replace(
        b";rport\r\n", b";rport, SIP/2.0/TCP p1.example.com;branch=z9hG4bKp1\r\n"))
    via = m.top_via
    via.params["received"] = "198.51.100.7"
    via.params["rport"] = "40000"
    m.set_top_via(via)
    vias = parse_message(m.to_bytes()).vias
    assert [v.host for v in vias] == ["192.0.2.1", "p1.example.com", "p2.example.com"]
    assert (vias[0].received, vias[0].rport) == ("198.51.100.7", 40000)


def test_via_parsing_ipv6_and_lws():
    v = parse_via("SIP / 2.0 / tls [2001:db8::1] : 5061 ; branch = z9hG4bKq ; received=::1")
    assert (v.protocol, v.host, v.port, v.branch, v.received) == (
        "TLS", "2001:db8::1", 5061, "z9hG4bKq", "::1")
    assert str(v) == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKq;received=::1"
    for bad in ("SIP/2.0/UDP", "SIP/3.0/UDP h", "HTTP/2.0/UDP h", "SIP/2.0/UDP h:0",
                "SIP/2.0/UDP h;;"):
        with pytest.raises(SIPParseError):
            parse_via(bad)


def test_response_parsing_and_make_response_copies_the_right_headers():
    req = parse_message(msg_with("Record-Route: <sip:rr@h;lr>").replace(
        b"MESSAGE sip", b"INVITE sip").replace(b"7 MESSAGE", b"7 INVITE"))
    r = make_response(req, 180, to_tag="tt")
    assert [n for n, _ in r.headers.items()] == ["Via", "From", "To", "Call-ID", "CSeq",
                                                 "Record-Route"]
    assert r.to_tag == "tt" and r.reason == "Ringing"
    ok = make_response(req, 486, "Busy Here Now", headers=[("Retry-After", "5")],
                       body=b"x", content_type="text/plain")
    assert "Record-Route" not in ok.headers and ok.headers.get("Retry-After") == "5"
    assert ok.to_tag is None and ok.content_type == "text/plain"
    parsed = parse_message(ok.to_bytes())
    assert isinstance(parsed, SIPResponse)
    assert (parsed.status, parsed.reason, parsed.body, parsed.cseq) == (486, "Busy Here Now", b"x", (7, "INVITE"))
    tagged = make_response(parse_message(BASE.replace(b"To: <sip:bob@example.com>",
                                                      b"To: <sip:bob@example.com>;tag=old")),
                           200, to_tag="new")
    assert tagged.to_tag == "old"


def test_reason_phrases():
    assert reason_phrase(200) == "OK" and reason_phrase(416) == "Unsupported URI Scheme"
    assert reason_phrase(513) == "Message Too Large" and reason_phrase(499) == "Client Error"


@pytest.mark.parametrize("raw,code", [
    (BASE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
    (BASE.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400),
    (BASE.replace(b"sip:bob@example.com SIP", b"mailto:bob@example.com SIP"), 416),
    (BASE.replace(b"Content-Length: 5", b"Content-Length: 6"), 400),
    (BASE.replace(b"Content-Length: 5", b"Content-Length: five"), 400),
    (BASE.replace(b"CSeq: 7 MESSAGE", b"CSeq: 2147483648 MESSAGE"), 400),
    (BASE.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
    (BASE.replace(b"Call-ID: abc@192.0.2.1\r\n", b""), 400),
    (BASE.replace(b"Via: ", b"Bad Name: "), 400),
    (BASE.replace(b"\r\n\r\n", b"\r\n"), 400),
    (b"SIP/2.0 99 Low\r\n\r\n", 400),
    (b"", 400),
])
def test_malformed_messages_get_the_right_status(raw, code):
    with pytest.raises(SIPParseError) as info:
        parse_message(raw)
    assert info.value.code == code


def test_a_to_header_with_a_loose_non_sip_uri_is_400_with_the_message_to_answer_it():
    """The fuzzed To ``p:bob@127.0.0.1>`` once became the gateway key
    ``p:bob@127.0.0.1>-sip:alice@127.0.0.1``; it is not an RFC 3261 absoluteURI."""
    for to in (b"To: p:bob@127.0.0.1>", b"To: <tel:+1 555>", b"To: <im:a\"b@h>"):
        with pytest.raises(SIPParseError) as info:
            parse_message(BASE.replace(b"To: <sip:bob@example.com>", to))
        assert info.value.code == 400
        assert info.value.message.method == "MESSAGE"  # answerable: its Via is readable
    with pytest.raises(SIPParseError) as info:
        parse_message(BASE.replace(b"sip:bob@example.com SIP", b"tel:+1<2 SIP"))
    assert info.value.code == 400
    assert parse_message(BASE.replace(b"sip:bob@example.com SIP", b"tel:+1-555 SIP")).uri == \
        "tel:+1-555"


def test_bounds_on_size_header_count_and_line_length_answer_513():
    small = Limits(max_message_size=300, max_headers=10, max_line_length=100)
    with pytest.raises(SIPParseError) as info:
        parse_message(msg_with(body=b"x" * 400), small)
    assert info.value.code == 513
    with pytest.raises(SIPParseError) as info:
        parse_message(msg_with(*[f"X-{i}: y" for i in range(5)]), Limits(max_headers=10))
    assert info.value.code == 513
    with pytest.raises(SIPParseError) as info:
        parse_message(msg_with("X-Long: " + "y" * 200), Limits(max_line_length=100))
    assert info.value.code == 513


def answerable_fields(m) -> tuple:
    return (m.method, m.top_via.branch, m.from_tag, m.headers.get("To"), m.call_id, m.cseq)


EXPECTED = ("MESSAGE", "z9hG4bK1", "f1", "<sip:bob@example.com>", "abc@192.0.2.1", (7, "MESSAGE"))


@pytest.mark.parametrize("raw,limits", [
    (msg_with(*[f"X-{i}: y" for i in range(20)]), Limits(max_headers=10)),
    (msg_with("X-Long: " + "y" * 200), Limits(max_line_length=100)),
    (msg_with(body=b"x" * 400), Limits(max_message_size=300)),
    (msg_with(*[f"X-{i}: y" for i in range(40)], "Subject: folded\r\n " + "z" * 50),
     Limits(max_message_size=300, max_headers=10)),  # no blank line within the bound
], ids=["header-count", "line-length", "datagram-size", "headers-past-size"])
def test_a_513_carries_the_fields_its_answer_copies(raw, limits):
    """Oversize input must be answerable: the error carries Via, From, To, Call-ID and
    CSeq (s.8.2.6.2) even though the message as a whole was not parsed."""
    with pytest.raises(SIPParseError) as info:
        parse_message(raw, limits)
    assert info.value.code == 513
    assert answerable_fields(info.value.message) == EXPECTED
    assert make_response(info.value.message, 513).headers.get("Call-ID") == "abc@192.0.2.1"


def test_a_513_is_not_answerable_when_a_copied_field_is_itself_too_long_or_a_response():
    long_via = BASE.replace(b"rport\r\n", b"rport;x=" + b"y" * 200 + b"\r\n")
    with pytest.raises(SIPParseError) as info:
        parse_message(long_via, Limits(max_line_length=100))
    assert info.value.code == 513 and info.value.message is None
    resp = b"SIP/2.0 200 OK\r\n" + BASE.split(b"\r\n", 1)[1]
    with pytest.raises(SIPParseError) as info:
        parse_message(resp.replace(b"hello", b"x" * 400), Limits(max_message_size=300))
    assert info.value.code == 513 and info.value.message is None


def test_a_stream_whose_headers_never_end_gets_an_answerable_513():
    sp = StreamParser(Limits(max_message_size=400))
    head = BASE.split(b"\r\n\r\n")[0] + b"\r\n"
    with pytest.raises(SIPParseError) as info:
        sp.feed(head + b"".join(b"X-%d: y\r\n" % i for i in range(60)))
    assert info.value.code == 513
    assert answerable_fields(info.value.message) == EXPECTED


def test_leading_crlfs_before_a_datagram_are_ignored():
    assert parse_message(b"\r\n\r\n" + BASE).body == b"hello"


# -- streams ---------------------------------------------------------------------------

def three_messages() -> tuple[bytes, list]:
    a = BASE
    b = msg_with(body=b"")
    c = msg_with(body=b"x" * 100)
    return a + b"\r\n\r\n" + b + c, [parse_message(a), parse_message(b), parse_message(c)]


def test_stream_parser_frames_several_messages_per_segment():
    data, expected = three_messages()
    sp = StreamParser()
    assert sp.feed(data) == expected
    assert sp.pings == 1 and sp.buffered == 0


def test_stream_parser_handles_a_split_at_every_byte():
    data, expected = three_messages()
    for cut in range(1, len(data)):
        sp = StreamParser()
        assert sp.feed(data[:cut]) + sp.feed(data[cut:]) == expected, cut


def test_stream_parser_byte_by_byte_and_ping_counting():
    data, expected = three_messages()
    sp = StreamParser()
    out = []
    for i in range(len(data)):
        out += sp.feed(data[i:i + 1])
    assert out == expected
    sp.feed(b"\r\n\r\n\r\n\r\n")
    assert sp.pings == 3


def test_stream_parser_reports_framed_bad_messages_and_goes_on():
    bad = BASE.replace(b"CSeq: 7 MESSAGE", b"CSeq: 7 INVITE")
    sp = StreamParser()
    events = sp.feed(bad + BASE)
    assert isinstance(events[0], SIPParseError) and events[0].code == 400
    assert events[0].message.method == "MESSAGE"
    assert events[1] == parse_message(BASE)


def test_stream_parser_raises_when_framing_is_lost_and_stays_failed():
    sp = StreamParser()
    with pytest.raises(SIPParseError):
        sp.feed(BASE.replace(b"Content-Length: 5", b"Content-Length: x"))
    with pytest.raises(SIPParseError):
        sp.feed(BASE)


def test_stream_parser_bounds_headers_and_bodies():
    sp = StreamParser(Limits(max_message_size=200))
    with pytest.raises(SIPParseError) as info:
        sp.feed(b"MESSAGE sip:b@h SIP/2.0\r\nX: " + b"y" * 300)
    assert info.value.code == 513
    sp = StreamParser(Limits(max_message_size=1000))
    with pytest.raises(SIPParseError) as info:
        sp.feed(BASE.replace(b"Content-Length: 5", b"Content-Length: 5000"))
    assert info.value.code == 513  # Message Too Large, answered from the headers
    assert info.value.message.call_id == "abc@192.0.2.1"


def test_stream_without_content_length_means_empty_body():
    raw = BASE.replace(b"Content-Length: 5\r\n", b"")[:-5]
    sp = StreamParser()
    [m] = sp.feed(raw)
    assert m.body == b""


def test_stream_fed_one_byte_at_a_time_gives_the_same_message():
    """A hostile peer dribbling bytes gets the same result as one that writes whole
    messages, and an endless header block is refused once it passes the size bound.
    (That dribbling costs linear CPU is measured by bench/parser_scaling.py: the project
    keeps timing out of its tests.)"""
    head = (b"MESSAGE sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n"
            b"Content-Length: 60000\r\n\r\n")
    data = head + b"x" * 60000
    sp = StreamParser()
    out = []
    for i in range(len(data)):
        out += sp.feed(data[i:i + 1])
    assert len(out) == 1 and out[0].body == b"x" * 60000
    sp = StreamParser()
    junk = b"MESSAGE sip:b@h SIP/2.0\r\nX: " + b"y" * 70000
    with pytest.raises(SIPParseError):
        for i in range(len(junk)):
            sp.feed(junk[i:i + 1])