"""MSRP frame parser and serializer (RFC 4975 s.7, s.9, s.10; RFC 4976 AUTH)."""

from __future__ import annotations

import pytest

from msrp_gateway.msrp.message import (
    ByteRange,
    FrameParser,
    Limits,
    MSRPHeaders,
    MSRPParseError,
    MSRPRequest,
    MSRPResponse,
    ReportStatus,
    new_ident,
    parse_frames,
)


def crlf(text: str) -> bytes:
    """The RFC prints frames one per line; on the wire every line ends in CRLF."""
    return "".join(line + "\r\n" for line in text.split("\n")).encode("utf-8")


# RFC 4975 s.4 (and s.7.1/7.2): Alice's SEND and Bob's 200.
RFC_S4_SEND = crlf(
    "MSRP a786hjs2 SEND\n"
    "To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\n"
    "From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\n"
    "Message-ID: 87652491\n"
    "Byte-Range: 1-25/25\n"
    "Content-Type: text/plain\n"
    "\n"
    "Hey Bob, are you there?\n"
    "-------a786hjs2$"
)
RFC_S4_200 = crlf(
    "MSRP a786hjs2 200 OK\n"
    "To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\n"
    "From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\n"
    "-------a786hjs2$"
)
# RFC 4975 s.10.1: basic IM session.
RFC_S10_1 = [
    crlf(
        "MSRP d93kswow SEND\n"
        "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
        "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
        "Message-ID: 12339sdqwer\n"
        "Byte-Range: 1-16/16\n"
        "Content-Type: text/plain\n"
        "\n"
        "Hi, I'm Alice!\n"
        "-------d93kswow$"
    ),
    crlf(
        "MSRP d93kswow 200 OK\n"
        "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
        "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
        "-------d93kswow$"
    ),
    crlf(
        "MSRP op2nc9a SEND\n"
        "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
        "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
        "Message-ID: 354dwdfsoeirt\n"
        "Byte-Range: 1-21/21\n"
        "Content-Type: text/plain\n"
        "\n"
        "Hi, Alice! I'm Bob!\n"
        "-------op2nc9a$"
    ),
    crlf(
        "MSRP op2nc9a 200 OK\n"
        "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
        "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
        "-------op2nc9a$"
    ),
]
# RFC 4975 s.10.2/10.5: a SEND asking for a success report, and the positive REPORT.
# (The HTML body's exact words could not be checked against the RFC text here; the
# frames' start lines and headers are as printed there.)
RFC_S10_5_SEND = crlf(
    "MSRP d93kswow SEND\n"
    "To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
    "From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
    "Message-ID: 12339sdqwer\n"
    "Byte-Range: 1-106/106\n"
    "Success-Report: yes\n"
    "Failure-Report: no\n"
    "Content-Type: text/html\n"
    "\n"
    "<html><body>\n"
    "<p>Here is that important link...\n"
    '<a href="http://www.example.com/foobar">foobar</a>\n'
    "</p>\n"
    "</body></html>\n"
    "-------d93kswow$"
)
RFC_S10_5_REPORT = crlf(
    "MSRP dkei38sd REPORT\n"
    "To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\n"
    "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\n"
    "Message-ID: 12339sdqwer\n"
    "Byte-Range: 1-106/106\n"
    "Status: 000 200 OK\n"
    "-------dkei38sd$"
)
# RFC 4976 s.7: AUTH to a relay and its 401 challenge.
RFC4976_AUTH = crlf(
    "MSRP 49fh AUTH\n"
    "To-Path: msrps://alice@intra.example.com;tcp\n"
    "From-Path: msrps://alice.example.com:9892/98cjs;tcp\n"
    "-------49fh$"
)
RFC4976_401 = crlf(
    "MSRP 49fh 401 Unauthorized\n"
    "To-Path: msrps://alice.example.com:9892/98cjs;tcp\n"
    "From-Path: msrps://alice@intra.example.com;tcp\n"
    'WWW-Authenticate: Digest realm="intra.example.com", qop="auth", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"\n'
    "-------49fh$"
)

ALL_RFC_FRAMES = [RFC_S4_SEND, RFC_S4_200, *RFC_S10_1, RFC_S10_5_SEND, RFC_S10_5_REPORT,
                  RFC4976_AUTH, RFC4976_401]


def one(data: bytes, limits: Limits | None = None) -> MSRPRequest | MSRPResponse | MSRPParseError:
    frames = parse_frames(data) if limits is None else parse_frames(data, limits)
    assert len(frames) == 1, frames
    return frames[0]


SEND_HEAD = (
    b"MSRP tid12345 SEND\r\n"
    b"To-Path: msrp://b.example.com:8888/s2;tcp\r\n"
    b"From-Path: msrp://a.example.com:7777/s1;tcp\r\n"
    b"Message-ID: mid12345\r\n"
)


def send_frame(tid: str, body: bytes, *, flag: str = "$", extra: bytes = b"") -> bytes:
    head = SEND_HEAD.replace(b"tid12345", tid.encode()) + extra
    return head + b"Content-Type: text/plain\r\n\r\n" + body + b"\r\n-------" + tid.encode() + flag.encode() + b"\r\n"


# -- the RFC examples --------------------------------------------------------------------

def test_rfc4975_s4_send_parses_to_its_values() -> None:
    req = one(RFC_S4_SEND)
    assert isinstance(req, MSRPRequest)
    assert (req.transaction_id, req.method, req.flag) == ("a786hjs2", "SEND", "$")
    assert req.to_path == ["msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp"]
    assert req.from_path == ["msrp://atlanta.example.com:7654/jshA7weztas;tcp"]
    assert req.message_id == "87652491"
    assert req.byte_range == ByteRange(1, 25, 25)
    assert req.content_type == "text/plain"
    assert req.body == b"Hey Bob, are you there?"
    assert (req.failure_report, req.success_report) == ("yes", "no")


def test_rfc4975_s4_response_parses_status_and_comment() -> None:
    resp = one(RFC_S4_200)
    assert isinstance(resp, MSRPResponse)
    assert (resp.transaction_id, resp.status, resp.comment) == ("a786hjs2", 200, "OK")
    assert resp.to_path == ["msrp://atlanta.example.com:7654/jshA7weztas;tcp"]


def test_rfc4975_s10_5_report_and_report_flags() -> None:
    send = one(RFC_S10_5_SEND)
    assert isinstance(send, MSRPRequest)
    assert (send.success_report, send.failure_report) == ("yes", "no")
    assert send.content_type == "text/html"
    assert send.body.startswith(b"<html><body>\r\n") and send.body.endswith(b"</body></html>")
    report = one(RFC_S10_5_REPORT)
    assert isinstance(report, MSRPRequest)
    assert report.method == "REPORT" and report.body == b""
    assert report.status == ReportStatus(0, 200, "OK")
    assert report.byte_range == ByteRange(1, 106, 106)


def test_rfc4976_auth_and_401_challenge_parse() -> None:
    auth = one(RFC4976_AUTH)
    assert isinstance(auth, MSRPRequest) and auth.method == "AUTH"
    assert auth.to_path == ["msrps://alice@intra.example.com;tcp"]
    challenge = one(RFC4976_401)
    assert isinstance(challenge, MSRPResponse)
    assert (challenge.status, challenge.comment) == (401, "Unauthorized")
    assert challenge.headers.get("www-authenticate", "").startswith('Digest realm="intra')


@pytest.mark.parametrize("raw", ALL_RFC_FRAMES, ids=range(len(ALL_RFC_FRAMES)))
def test_rfc_examples_serialize_back_byte_for_byte(raw: bytes) -> None:
    assert one(raw).to_bytes() == raw  # type: ignore[union-attr]


def test_rfc_exchange_split_at_every_byte_gives_the_same_frames() -> None:
    stream = b"".join(RFC_S10_1) + RFC_S10_5_SEND + RFC_S10_5_REPORT
    whole = parse_frames(stream)
    for cut in range(1, len(stream)):
        p = FrameParser()
        got = p.feed(stream[:cut]) + p.feed(stream[cut:])
        assert got == whole, cut
    p = FrameParser()
    bytewise = [ev for i in range(len(stream)) for ev in p.feed(stream[i : i + 1])]
    assert bytewise == whole and len(whole) == 6


# -- framing -----------------------------------------------------------------------------

def test_body_holding_another_transactions_end_line_is_not_cut() -> None:
    body = b"line one\r\n-------othertid$\r\nline three\r\n-------tid12345X\r\nend"
    req = one(send_frame("tid12345", body))
    assert isinstance(req, MSRPRequest) and req.body == body


def test_body_holding_a_longer_id_that_starts_with_ours_is_not_cut() -> None:
    body = b"x\r\n-------tid123456$\r\ny"
    req = one(send_frame("tid12345", body))
    assert isinstance(req, MSRPRequest) and req.body == body


def test_continuation_and_abort_flags_are_reported() -> None:
    frames = parse_frames(send_frame("tidaaaa1", b"part", flag="+") + send_frame("tidaaaa2", b"", flag="#"))
    assert [f.flag for f in frames] == ["+", "#"]  # type: ignore[union-attr]


def test_unknown_method_parses_for_the_session_to_answer_501() -> None:
    raw = crlf("MSRP abcd NICKNAME\nTo-Path: msrp://h/s;tcp\nFrom-Path: msrp://g/t;tcp\n-------abcd$")
    req = one(raw)
    assert isinstance(req, MSRPRequest) and req.method == "NICKNAME"


def test_response_without_comment() -> None:
    resp = one(crlf("MSRP abcd 481\nTo-Path: msrp://h/s;tcp\nFrom-Path: msrp://g/t;tcp\n-------abcd$"))
    assert isinstance(resp, MSRPResponse) and (resp.status, resp.comment) == (481, None)
    assert resp.to_bytes().startswith(b"MSRP abcd 481\r\n")


def test_mime_headers_are_kept_and_written_before_content_type() -> None:
    canonical = crlf(
        "MSRP abcd SEND\nTo-Path: msrp://h/s;tcp\nFrom-Path: msrp://g/t;tcp\nMessage-ID: m123\n"
        "X-Vendor: 1\nContent-ID: <x@y>\nContent-Disposition: inline\n"
        "Content-Description: a note\nContent-Type: text/plain\n\nhi\n-------abcd$"
    )
    # A peer that mixes MIME and other headers: kept, and written back in s.9 order.
    mixed = crlf(
        "MSRP abcd SEND\nTo-Path: msrp://h/s;tcp\nFrom-Path: msrp://g/t;tcp\nMessage-ID: m123\n"
        "Content-ID: <x@y>\nContent-Disposition: inline\nX-Vendor: 1\n"
        "Content-Description: a note\nContent-Type: text/plain\n\nhi\n-------abcd$"
    )
    for raw in (canonical, mixed):
        req = one(raw)
        assert isinstance(req, MSRPRequest)
        assert req.headers.get("content-disposition") == "inline"
        assert req.headers.get("Content-ID") == "<x@y>"
        assert req.to_bytes() == canonical


def test_several_frames_in_one_piece_and_blank_lines_between_frames() -> None:
    data = RFC_S4_SEND + b"\r\n" + RFC_S4_200 + RFC4976_AUTH
    frames = FrameParser().feed(data)
    assert [type(f).__name__ for f in frames] == ["MSRPRequest", "MSRPResponse", "MSRPRequest"]


def test_empty_body_with_content_type_both_spellings() -> None:
    strict = SEND_HEAD + b"Content-Type: text/plain\r\n\r\n\r\n-------tid12345$\r\n"
    lenient = SEND_HEAD + b"Content-Type: text/plain\r\n\r\n-------tid12345$\r\n"
    for raw in (strict, lenient):
        req = one(raw)
        assert isinstance(req, MSRPRequest) and req.body == b"" and req.content_type == "text/plain"
    assert one(lenient).to_bytes() == strict  # type: ignore[union-attr]


def test_body_without_content_type_is_parsed_for_the_session_to_answer_415() -> None:
    raw = SEND_HEAD + b"\r\nhello\r\n-------tid12345$\r\n"
    req = one(raw)
    assert isinstance(req, MSRPRequest) and req.body == b"hello" and req.content_type is None


def test_multi_mib_frame_fed_in_pieces() -> None:
    body = bytes(range(256)) * (4 * 4096)  # 4 MiB
    raw = send_frame("bigframe", body)
    p = FrameParser()
    got = []
    for i in range(0, len(raw), 65536):
        got += p.feed(raw[i : i + 65536])
    assert len(got) == 1 and got[0].body == body  # type: ignore[union-attr]
    assert p.buffered == 0 and p.pending_since is None


# -- recoverable errors: an event with the transaction id, the connection survives ---------

BAD_REQUESTS = {
    "missing To-Path": b"MSRP badreq1 SEND\r\nFrom-Path: msrp://a/s;tcp\r\nMessage-ID: m1234\r\n-------badreq1$\r\n",
    "bad Byte-Range": SEND_HEAD.replace(b"tid12345", b"badreq1") + b"Byte-Range: 5-2/9\r\n-------badreq1$\r\n",
    "lower-case method": b"MSRP badreq1 send\r\nTo-Path: msrp://b/s;tcp\r\nFrom-Path: msrp://a/s;tcp\r\n-------badreq1$\r\n",
    "header without colon": SEND_HEAD.replace(b"tid12345", b"badreq1") + b"Nonsense\r\n-------badreq1$\r\n",
    "SEND without Message-ID": b"MSRP badreq1 SEND\r\nTo-Path: msrp://b/s;tcp\r\nFrom-Path: msrp://a/s;tcp\r\n-------badreq1$\r\n",
    "bad Failure-Report": SEND_HEAD.replace(b"tid12345", b"badreq1") + b"Failure-Report: maybe\r\n-------badreq1$\r\n",
    "bad To-Path URI": b"MSRP badreq1 SEND\r\nTo-Path: http://b/s\r\nFrom-Path: msrp://a/s;tcp\r\nMessage-ID: m1234\r\n-------badreq1$\r\n",
    "duplicate Message-ID": SEND_HEAD.replace(b"tid12345", b"badreq1") + b"Message-ID: again\r\n-------badreq1$\r\n",
    "REPORT without Status": b"MSRP badreq1 REPORT\r\nTo-Path: msrp://b/s;tcp\r\nFrom-Path: msrp://a/s;tcp\r\nMessage-ID: m1234\r\n-------badreq1$\r\n",
    "non-UTF-8 header": SEND_HEAD.replace(b"tid12345", b"badreq1") + b"X-A: \xff\xfe\r\n-------badreq1$\r\n",
}


@pytest.mark.parametrize("why", sorted(BAD_REQUESTS))
def test_malformed_request_is_an_event_with_its_id_and_the_next_frame_parses(why: str) -> None:
    p = FrameParser()
    events = p.feed(BAD_REQUESTS[why] + RFC_S4_SEND)
    assert len(events) == 2
    err, good = events
    assert isinstance(err, MSRPParseError)
    assert (err.code, err.transaction_id, err.response) == (400, "badreq1", False)
    assert isinstance(good, MSRPRequest) and good.transaction_id == "a786hjs2"


def test_parse_error_event_carries_the_paths_to_answer_it() -> None:
    err = one(BAD_REQUESTS["bad Byte-Range"])
    assert isinstance(err, MSRPParseError)
    assert err.to_path == ["msrp://b.example.com:8888/s2;tcp"]
    assert err.from_path == ["msrp://a.example.com:7777/s1;tcp"]


def test_malformed_response_is_marked_never_to_be_answered() -> None:
    err = one(b"MSRP abcd 200 OK\r\nFrom-Path: msrp://a/s;tcp\r\n-------abcd$\r\n")
    assert isinstance(err, MSRPParseError) and err.response and err.transaction_id == "abcd"


def test_body_over_the_bound_is_skipped_with_413_and_memory_stays_bounded() -> None:
    limits = Limits(max_body_size=1000)
    p = FrameParser(limits)
    raw = send_frame("huge0001", b"z" * 200_000)
    events = []
    peak = 0
    for i in range(0, len(raw), 997):
        events += p.feed(raw[i : i + 997])
        peak = max(peak, p.buffered)
    events += p.feed(RFC_S4_SEND)
    assert peak < 1000 + 2 * 997 + len(SEND_HEAD) + 100
    assert isinstance(events[0], MSRPParseError)
    assert (events[0].code, events[0].transaction_id) == (413, "huge0001")
    assert isinstance(events[1], MSRPRequest) and events[1].body == b"Hey Bob, are you there?"


def test_header_block_over_the_bound_is_a_400_event() -> None:
    limits = Limits(max_header_bytes=300)
    raw = SEND_HEAD + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 50) for i in range(40)) + b"-------tid12345$\r\n"
    p = FrameParser(limits)
    events = p.feed(raw) + p.feed(RFC_S4_200)
    assert isinstance(events[0], MSRPParseError) and events[0].transaction_id == "tid12345"
    assert isinstance(events[1], MSRPResponse)


def test_too_many_headers_is_a_400_event() -> None:
    raw = SEND_HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(20)) + b"-------tid12345$\r\n"
    err = one(raw, Limits(max_headers=10))
    assert isinstance(err, MSRPParseError) and err.code == 400


# -- lost framing raises -------------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [b"HTTP/1.1 200 OK\r\n", b"GET / HTTP/1.0\r\n", b"MSRP\r\n", b"MSRP a SEND\r\n" [:5] + b"!bad SEND\r\n",
     b"MSRP a_b SEND\r\n", b"\x16\x03\x01\x02\x00"],
)
def test_lost_framing_raises_and_the_parser_stays_dead(data: bytes) -> None:
    p = FrameParser()
    with pytest.raises(MSRPParseError) as e:
        p.feed(data)
    assert e.value.transaction_id is None
    with pytest.raises(MSRPParseError):
        p.feed(RFC_S4_SEND)


def test_start_line_without_end_over_the_bound_raises() -> None:
    p = FrameParser(Limits(max_line_length=100))
    with pytest.raises(MSRPParseError):
        p.feed(b"MSRP " + b"a" * 200)


# -- what the caller uses to bound the wait for an end-line -------------------------------

def test_pending_since_marks_the_feed_that_began_an_incomplete_frame() -> None:
    p = FrameParser()
    assert p.pending_since is None and p.pending_bytes == 0
    p.feed(RFC_S4_SEND[:30], now=10.0)
    p.feed(RFC_S4_SEND[30:60], now=11.0)
    assert p.pending_since == 10.0 and p.pending_bytes == 60
    done = p.feed(RFC_S4_SEND[60:] + RFC_S4_200[:5], now=12.0)
    assert len(done) == 1
    assert p.pending_since == 12.0 and p.pending_bytes == 5
    p.feed(RFC_S4_200[5:], now=13.0)
    assert p.pending_since is None and p.pending_bytes == 0


# -- serializer ---------------------------------------------------------------------------

def paths() -> list[tuple[str, str]]:
    return [("To-Path", "msrp://b/s2;tcp"), ("From-Path", "msrp://a/s1;tcp")]


def test_serializer_writes_paths_first_and_content_type_last() -> None:
    req = MSRPRequest("abcd1234", "SEND", [("Content-Type", "text/plain"), ("Message-ID", "m1"),
                                           *paths(), ("Byte-Range", "1-2/2")], b"hi")
    assert req.to_bytes() == crlf(
        "MSRP abcd1234 SEND\nTo-Path: msrp://b/s2;tcp\nFrom-Path: msrp://a/s1;tcp\n"
        "Message-ID: m1\nByte-Range: 1-2/2\nContent-Type: text/plain\n\nhi\n-------abcd1234$"
    )


@pytest.mark.parametrize(
    "frame, why",
    [
        (MSRPRequest("abcd1234", "SEND", paths(), b"body"), "body without Content-Type"),
        (MSRPRequest("ab", "SEND", paths()), "id shorter than 4"),
        (MSRPRequest("abcd_234", "SEND", paths()), "id with _"),
        (MSRPRequest("abcd1234", "send", paths()), "lower-case method"),
        (MSRPRequest("abcd1234", "SEND", paths()[:1]), "no From-Path"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("X-A", "a\r\nB: c")]), "CRLF in a value"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Content-Type", "text/plain")],
                     b"a\r\n-------abcd1234$\r\nb"), "body holds its end-line"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Content-Type", "text/plain")],
                     b"a\r\n-------abcd1234+"), "body ends in its end-line"),
        (MSRPRequest("abcd1234", "SEND", paths(), flag="x"), "bad flag"),
        (MSRPResponse("abcd1234", 2000, None, paths()), "four-digit status"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("To-Path", "msrp://c/d;tcp")]), "two To-Paths"),
        (MSRPRequest("abcd1234", "SEND", [("To-Path", "msrp://b/s2"), paths()[1]]), "bad path URI"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Byte-Range", "1-x/3")]), "bad Byte-Range"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Message-ID", "a b")]), "bad Message-ID"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Failure-Report", "sometimes")]), "bad Failure-Report"),
        (MSRPRequest("abcd1234", "REPORT", [*paths(), ("Status", "200 OK")]), "bad Status"),
        (MSRPRequest("abcd1234", "SEND", [*paths(), ("Content-Type", "text")], b"x"), "bad media type"),
    ],
)
def test_serializer_refuses_what_rfc4975_s9_forbids(frame: MSRPRequest | MSRPResponse, why: str) -> None:
    with pytest.raises(ValueError):
        frame.to_bytes()


def test_bodyless_request_has_no_blank_line() -> None:
    req = MSRPRequest("abcd1234", "SEND", [*paths(), ("Message-ID", "m1")])
    assert req.to_bytes().endswith(b"Message-ID: m1\r\n-------abcd1234$\r\n")


def test_new_ident_is_a_valid_and_fresh_transaction_id() -> None:
    ids = {new_ident() for _ in range(100)}
    assert len(ids) == 100
    for tid in ids:
        assert MSRPRequest(tid, "SEND", paths()).to_bytes().startswith(f"MSRP {tid} SEND".encode())


def test_headers_multimap_is_case_insensitive_and_ordered() -> None:
    h = MSRPHeaders([("To-Path", "a"), ("X-A", "1"), ("x-a", "2")])
    assert h.get("x-A") == "1" and h.get_all("X-A") == ["1", "2"] and "to-path" in h
    h.set("X-A", "3")
    assert h.items() == [("To-Path", "a"), ("X-A", "3")]
    assert h.remove("to-path") == 1 and len(h) == 1


def test_byte_range_accessor_defaults_to_the_whole_body_and_reads_stars() -> None:
    assert MSRPRequest("abcd", "SEND", paths(), b"12345").byte_range == ByteRange(1, 5, 5)
    req = MSRPRequest("abcd", "SEND", [*paths(), ("Byte-Range", "1-*/*")])
    assert req.byte_range == ByteRange(1, None, None)
    assert str(ByteRange(3, None, 10)) == "3-*/10"


def test_parser_built_without_limits_uses_the_defaults() -> None:
    p = FrameParser(None)
    assert p.limits == Limits() and len(p.feed(RFC_S4_SEND)) == 1


def test_sans_io_modules_import_only_the_standard_library_and_each_other() -> None:
    import ast
    import pathlib
    import sys

    import msrp_gateway.msrp as pkg

    allowed_local = {"message", "grammar", "records", "serializer", "parser", "uri", "chunks"}
    for name in sorted(allowed_local):
        tree = ast.parse((pathlib.Path(pkg.__file__).parent / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module in allowed_local, (name, node.module)
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                assert node.module.split(".")[0] in sys.stdlib_module_names, (name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in sys.stdlib_module_names, (name, alias.name)


def test_large_frame_fed_in_small_reads_parses_whole() -> None:
    """An 8 MiB body fed in 1 KiB reads comes out as one frame and leaves nothing pending.
    (That this costs linear, not quadratic, CPU is measured by bench/parser_scaling.py: the
    project keeps timing out of its tests.)"""
    body = b"z" * (8 * 1024 * 1024)
    raw = MSRPRequest("bigframe", "SEND", [*paths(), ("Message-ID", "m1234"),
                                           ("Content-Type", "text/plain")], body).to_bytes()
    p = FrameParser()
    out = []
    for i in range(0, len(raw), 1024):
        out += p.feed(raw[i : i + 1024])
    assert len(out) == 1 and isinstance(out[0], MSRPRequest) and out[0].body == body
    assert p.pending_bytes == 0


def test_relay_auth_answer_exposes_use_path_and_expires() -> None:
    ok = one(crlf(
        "MSRP 49fh 200 OK\nTo-Path: msrps://alice.example.com:9892/98cjs;tcp\n"
        "From-Path: msrps://alice@intra.example.com;tcp\n"
        "Use-Path: msrps://relay.example.com:9000/hjdhfsd;tcp\nExpires: 900\n-------49fh$"))
    assert isinstance(ok, MSRPResponse)
    assert ok.use_path == ["msrps://relay.example.com:9000/hjdhfsd;tcp"] and ok.expires == 900
    bad = MSRPResponse("49fh", 200, "OK", [*paths(), ("Expires", "soon")])
    with pytest.raises(MSRPParseError):
        _ = bad.expires


@pytest.mark.parametrize("status", ["\u00b2\u00b2\u00b2", "\u0663\u0660\u0660"])
def test_non_ascii_digits_are_not_a_status_code(status: str) -> None:
    raw = f"MSRP abcd {status} OK\r\nTo-Path: msrp://h/s;tcp\r\nFrom-Path: msrp://g/t;tcp\r\n-------abcd$\r\n"
    err = one(raw.encode())
    assert isinstance(err, MSRPParseError) and err.transaction_id == "abcd"


@pytest.mark.parametrize("raw", [b"MSRP abcd SEND\r\n-------abcd$\r\n",
                                 b"MSRP abcd SEND\r\n\r\nhi\r\n-------abcd$\r\n"])
def test_frame_without_headers_is_a_400_event_not_a_stall(raw: bytes) -> None:
    p = FrameParser()
    events = p.feed(raw) + p.feed(RFC_S4_200)
    assert isinstance(events[0], MSRPParseError) and events[0].transaction_id == "abcd"
    assert isinstance(events[1], MSRPResponse) and p.pending_bytes == 0


def test_response_echoes_a_peer_id_outside_the_rfc_size_we_write_ourselves() -> None:
    req = one(b"MSRP ab SEND\r\nTo-Path: msrp://h/s;tcp\r\nFrom-Path: msrp://g/t;tcp\r\n"
              b"Message-ID: m1\r\n-------ab$\r\n")
    assert isinstance(req, MSRPRequest)
    answer = MSRPResponse(req.transaction_id, 200, "OK", [("To-Path", "msrp://g/t;tcp"),
                                                            ("From-Path", "msrp://h/s;tcp")])
    assert answer.to_bytes().startswith(b"MSRP ab 200 OK\r\n")
    with pytest.raises(ValueError):
        MSRPRequest("ab", "SEND", paths()).to_bytes()
