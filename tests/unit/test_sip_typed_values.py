"""Typed header values are parsed once per message and kept until a header line changes:
what a caller reads is always what the current header text says, and nothing it is handed
can change what the next caller reads."""

from __future__ import annotations

import pytest

from msrp_gateway.sip.message import SIPParseError, parse_message
from msrp_gateway.sip.peers import Peer, response_peer, stamp_via

RAW = (
    b"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport, SIP/2.0/TCP 10.0.0.9\r\n"
    b"From: <sip:alice@10.0.0.1>;tag=aaa\r\nTo: <sip:bob@127.0.0.1>\r\n"
    b"Call-ID: c1@10.0.0.1\r\nCSeq: 7 MESSAGE\r\nMax-Forwards: 70\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
)


def test_changing_a_returned_top_via_does_not_change_the_next_read():
    msg = parse_message(RAW)
    via = msg.top_via
    via.params["branch"] = "z9hG4bK-other"
    via.host = "192.0.2.1"
    again = msg.top_via
    assert (again.host, again.branch) == ("10.0.0.1", "z9hG4bK-1")
    assert again is not via


def test_set_top_via_is_what_the_next_read_and_the_wire_show():
    msg = parse_message(RAW)
    via = msg.top_via
    via.params["received"] = "192.0.2.7"
    msg.set_top_via(via)
    via.params["received"] = "changed after the set"
    assert msg.top_via.received == "192.0.2.7"
    reparsed = parse_message(msg.to_bytes())
    assert reparsed.top_via == msg.top_via
    assert [v.host for v in reparsed.vias] == ["10.0.0.1", "10.0.0.9"]


def test_stamp_via_then_response_peer_use_the_stamped_values():
    msg = parse_message(RAW)
    stamp_via(msg, Peer("udp", "192.0.2.5", 4000))
    assert response_peer(msg, Peer("udp", "192.0.2.5", 4000)) == Peer("udp", "192.0.2.5", 4000)
    assert msg.headers.get("Via").startswith(
        "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport=4000;received=192.0.2.5, ")
    # the kept Via is the stamped one, not the one the parser kept before
    assert (msg.top_via.received, msg.top_via.rport) == ("192.0.2.5", 4000)


@pytest.mark.parametrize("change", ["set", "remove_add", "replace_first_value", "prepend"])
def test_header_changes_are_seen_by_typed_accessors(change):
    msg = parse_message(RAW)
    assert (msg.cseq, msg.from_tag, msg.to_tag, msg.call_id, msg.content_type) == \
        ((7, "MESSAGE"), "aaa", None, "c1@10.0.0.1", "text/plain")
    h = msg.headers
    if change == "set":
        h.set("CSeq", "8 MESSAGE")
        h.set("From", "<sip:alice@10.0.0.1>;tag=bbb")
        h.set("To", "<sip:bob@127.0.0.1>;tag=ttt")
        h.set("Call-ID", "c2")
        h.set("Content-Type", "text/html")
    elif change == "remove_add":
        for name, value in (("CSeq", "8 MESSAGE"), ("From", "<sip:a@b>;tag=bbb"),
                            ("To", "<sip:b@c>;tag=ttt"), ("Call-ID", "c2"),
                            ("Content-Type", "text/html")):
            h.remove(name)
            h.add(name, value)
    elif change == "replace_first_value":
        for name, value in (("CSeq", "8 MESSAGE"), ("From", "<sip:a@b>;tag=bbb"),
                            ("To", "<sip:b@c>;tag=ttt"), ("Call-ID", "c2"),
                            ("Content-Type", "text/html")):
            h.replace_first_value(name, value)
    else:  # a new first line of each wins, as get() reads the first
        for name, value in (("CSeq", "8 MESSAGE"), ("From", "<sip:a@b>;tag=bbb"),
                            ("To", "<sip:b@c>;tag=ttt"), ("Call-ID", "c2"),
                            ("Content-Type", "text/html")):
            h.prepend(name, value)
    assert (msg.cseq, msg.from_tag, msg.to_tag, msg.call_id, msg.content_type) == \
        ((8, "MESSAGE"), "bbb", "ttt", "c2", "text/html")


def test_a_new_top_via_line_is_seen():
    msg = parse_message(RAW)
    assert msg.top_via.host == "10.0.0.1"
    msg.headers.prepend("Via", "SIP/2.0/TLS 10.9.9.9:5061;branch=z9hG4bK-2")
    assert (msg.top_via.protocol, msg.top_via.host, msg.top_via.branch) == \
        ("TLS", "10.9.9.9", "z9hG4bK-2")
    msg.headers.remove("Via")
    with pytest.raises(SIPParseError):
        msg.top_via  # noqa: B018


def test_a_malformed_value_raises_on_every_read():
    msg = parse_message(RAW)
    msg.headers.set("CSeq", "x MESSAGE")
    for _ in range(2):
        with pytest.raises(SIPParseError):
            msg.cseq  # noqa: B018


def test_a_copy_of_the_headers_does_not_share_later_changes():
    msg = parse_message(RAW)
    assert msg.cseq == (7, "MESSAGE")
    copy = msg.headers.copy()
    copy.set("CSeq", "9 MESSAGE")
    assert msg.cseq == (7, "MESSAGE")
    assert msg.headers == parse_message(RAW).headers


def test_wire_length_is_the_length_of_the_wire_bytes():
    from msrp_gateway.sip.message import Headers, SIPRequest, SIPResponse
    from msrp_gateway.sip.records import wire_length

    cases = [
        parse_message(RAW),
        SIPRequest("MESSAGE", "sip:b@h", Headers([
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("Content-Length", "99"),
            ("Subject", "h\u00e9llo"), ("l", "3"), ("X-Raw", "\udce9x")]), b"abcde"),
        SIPRequest("MESSAGE", "sip:b\u00e9@h", Headers([("To", "<sip:x@y>")])),
        SIPResponse(200, "OK \u00e9", Headers([("To", "x"), ("Content-Length", "0")]), b"xx"),
    ]
    for msg in cases:
        before = msg.headers.copy()
        size = wire_length(msg)
        assert msg.headers == before  # sizing leaves the headers as they were
        assert size == len(msg.to_bytes())


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]"])
def test_the_via_kept_for_a_request_we_send_is_what_its_line_parses_to(host):
    from twisted.internet import task

    from msrp_gateway.sip.headers import parse_via, split_list
    from msrp_gateway.sip.stack import SIPStack
    from msrp_gateway.testing import FakeSIPTransport

    transport = FakeSIPTransport(host, 5060)
    stack = SIPStack(task.Clock(), transport, local_uri_host="127.0.0.1:5060",
                     router=lambda t: None)
    req = stack.new_request("MESSAGE", "sip:a@127.0.0.1", "sip:b@192.0.2.7",
                            "sip:b@192.0.2.7:5062", body=b"x", content_type="text/plain")
    stack.send_request(req)
    line = split_list(req.headers.get("Via"))[0]
    assert req.top_via == parse_via(line)
    assert transport.sent[0][0].top_via == req.top_via  # and what went on the wire
    stack.stop()
