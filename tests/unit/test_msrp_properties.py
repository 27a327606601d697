"""Property tests of the MSRP sans-IO cores (hypothesis; no deadline: tests/conftest.py)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from msrp_gateway.msrp.chunks import (
    AssembledMessage,
    Chunker,
    Reassembler,
    ReassemblyBudget,
    ReassemblyError,
)
from msrp_gateway.msrp.message import (
    FrameParser,
    Limits,
    MSRPParseError,
    MSRPRequest,
    MSRPResponse,
)
from msrp_gateway.msrp.uri import parse_msrp_uri, uris_match

IDENT_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
IDENT_CHARS = IDENT_FIRST + ".-+%="

idents = st.builds(lambda a, b: a + b, st.sampled_from(IDENT_FIRST),
                   st.text(IDENT_CHARS, min_size=3, max_size=31))
uris = st.sampled_from([
    "msrp://bob.example.com:8888/9di4eae923wzd;tcp",
    "msrps://alice@intra.example.com;tcp",
    "msrp://[2001:db8::1]:2855/s+=/x;tcp;k=v",
    "msrp://10.0.0.2:7/abc;ws",
])
paths = st.lists(uris, min_size=1, max_size=3).map(" ".join)
# utf8text without leading/trailing blanks (the parser trims the blank after the colon).
hvals = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
                min_size=1, max_size=40).map(str.strip).filter(bool)
hnames = st.from_regex(r"X-[A-Za-z0-9\-]{1,12}", fullmatch=True)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Random bytes, sometimes holding CRLF and end-lines of other transactions."""
    parts = draw(st.lists(st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"\r\n", b"\r\n-------", b"-------", b"$\r\n", b"+", b"#"]),
        idents.map(lambda t: b"\r\n-------" + t.encode() + b"$\r\n"),
    ), max_size=8))
    return b"".join(parts)


@st.composite
def requests(draw: st.DrawFn) -> MSRPRequest:
    tid = draw(idents)
    method = draw(st.sampled_from(["SEND", "REPORT", "AUTH", "NICKNAME", "FOO"]))
    headers = [("To-Path", draw(paths)), ("From-Path", draw(paths))]
    if method in ("SEND", "REPORT") or draw(st.booleans()):
        headers.append(("Message-ID", draw(idents)))
    if method == "REPORT":
        headers.append(("Status", "000 " + draw(st.sampled_from(["200 OK", "413", "408 timeout"]))))
    if draw(st.booleans()):
        total = draw(st.integers(1, 10**6))
        start = draw(st.integers(1, total))
        headers.append(("Byte-Range", f"{start}-{draw(st.integers(start, total))}/{total}"))
    for name, value in draw(st.lists(st.tuples(hnames, hvals), max_size=3)):
        headers.append((name, value))
    body = b""
    if method != "REPORT" and draw(st.booleans()):
        body = draw(bodies())
        headers.append(("Content-Type", draw(st.sampled_from(["text/plain", "message/cpim",
                                                                "text/plain; charset=utf-8"]))))
    flag = draw(st.sampled_from("$+#"))
    req = MSRPRequest(tid, method, headers, body, flag)
    try:
        req.to_bytes()
    except ValueError:
        assume(False)  # the body holds its own end-line: a sender picks another id
    return req


@st.composite
def responses(draw: st.DrawFn) -> MSRPResponse:
    comment = draw(st.one_of(st.none(), hvals))
    return MSRPResponse(draw(idents), draw(st.integers(100, 699)), comment,
                        [("To-Path", draw(paths)), ("From-Path", draw(paths))])


frames = st.lists(st.one_of(requests(), responses()), min_size=1, max_size=6)


def _canonical(frame: MSRPRequest | MSRPResponse) -> MSRPRequest | MSRPResponse:
    """What a frame reads back as: headers in s.9 order, as the serializer writes them."""
    (back,) = FrameParser().feed(frame.to_bytes())
    assert not isinstance(back, MSRPParseError)
    return back


@settings(max_examples=150)
@given(frames, st.data())
def test_any_frame_sequence_cut_anywhere_parses_to_the_same_frames(
    sent: list[MSRPRequest | MSRPResponse], data: st.DataObject
) -> None:
    wire = b"".join(f.to_bytes() for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    parser = FrameParser()
    got = []
    prev = 0
    for cut in [*cuts, len(wire)]:
        got += parser.feed(wire[prev:cut])
        prev = cut
    assert got == [_canonical(f) for f in sent]
    assert [f.to_bytes() for f in got] == [f.to_bytes() for f in sent]
    assert parser.pending_bytes == 0


SMALL = Limits(max_line_length=256, max_header_bytes=1024, max_headers=16, max_body_size=4096)
BOUND = SMALL.max_header_bytes + SMALL.max_body_size + SMALL.max_line_length + 512


def _feed_hostile(prefix: bytes, pieces: list[bytes]) -> None:
    parser = FrameParser(SMALL)
    try:
        parser.feed(prefix)
        for piece in pieces:
            events = parser.feed(piece)
            assert all(isinstance(e, (MSRPRequest, MSRPResponse, MSRPParseError)) for e in events)
            assert parser.buffered <= BOUND + len(piece)
    except MSRPParseError:
        pass  # the only exception allowed: framing lost, close the connection


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=600), max_size=20))
def test_random_bytes_raise_only_msrp_parse_error_and_stay_bounded(pieces: list[bytes]) -> None:
    _feed_hostile(b"", pieces)


@settings(max_examples=200)
@given(st.sampled_from([b"", b"MSRP abcd SEND\r\n", b"MSRP abcd 200 OK\r\nTo-Path: msrp://h/s;tcp\r\n",
                        b"MSRP abcd SEND\r\nTo-Path: msrp://h/s;tcp\r\nFrom-Path: msrp://h/s;tcp\r\n\r\n"]),
       st.lists(st.one_of(st.binary(max_size=700),
                          st.sampled_from([b"\r\n", b"-------abcd", b"$\r\n", b"X: y\r\n"])),
                max_size=30))
def test_hostile_bytes_inside_a_frame_raise_only_msrp_parse_error(prefix: bytes, pieces: list[bytes]) -> None:
    _feed_hostile(prefix, pieces)


@settings(max_examples=100)
@given(st.binary(min_size=0, max_size=5000), st.integers(1, 700), st.randoms(use_true_random=False),
       st.integers(0, 5))
def test_reassembly_in_any_order_with_duplicates_gives_the_original_bytes(
    body: bytes, size: int, rnd: object, dups: int
) -> None:
    chunks = list(Chunker(body, message_id="m1234", to_path="msrp://h/s;tcp",
                          from_path="msrp://g/t;tcp", content_type="application/octet-stream",
                          chunk_size=size))
    order = list(chunks)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    order += [rnd.choice(chunks) for _ in range(dups)]  # type: ignore[attr-defined]
    r = Reassembler(max_message_size=10_000, max_chunks=100_000)
    whole = [out for c in order if (out := r.receive(c, 0.0)) is not None]
    assert isinstance(whole[0], AssembledMessage) and whole[0].body == body


@given(st.sampled_from(["msrp", "msrps", "MSRP"]),
       st.one_of(st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
                 st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]")),
       st.one_of(st.none(), st.integers(1, 65535)),
       st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9\-._~+=/]{1,20}", fullmatch=True)),
       st.sampled_from(["tcp", "TCP", "tls", "ws"]))
def test_generated_uris_round_trip_and_match_themselves(
    scheme: str, host: str, port: int | None, sid: str | None, transport: str
) -> None:
    text = f"{scheme}://{host}{'' if port is None else f':{port}'}{'' if sid is None else '/' + sid};{transport}"
    uri = parse_msrp_uri(text)
    again = parse_msrp_uri(str(uri))
    assert again == uri and uris_match(text, str(uri))
    assert uri.effective_port == (2855 if port is None else port)


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=3000), st.integers(1, 500), st.randoms(use_true_random=False),
       st.lists(st.tuples(st.integers(0, 2999), st.integers(1, 400)), max_size=8))
def test_reassembly_with_random_overlapping_resends_gives_the_original_bytes(
    body: bytes, size: int, rnd: object, extra: list[tuple[int, int]]
) -> None:
    chunks: list[MSRPRequest] = list(Chunker(body, message_id="m1234", to_path="msrp://h/s;tcp",
                                             from_path="msrp://g/t;tcp", content_type="text/plain",
                                             chunk_size=size))
    for start, length in extra:  # a sender re-sending arbitrary ranges (RFC 4975 s.7.1.1)
        start %= len(body)
        piece = body[start : start + length]
        chunks.append(MSRPRequest("resend01", "SEND", [
            ("To-Path", "msrp://h/s;tcp"), ("From-Path", "msrp://g/t;tcp"), ("Message-ID", "m1234"),
            ("Byte-Range", f"{start + 1}-{start + len(piece)}/{len(body)}"),
            ("Content-Type", "text/plain")], piece, "+"))
    rnd.shuffle(chunks)  # type: ignore[attr-defined]
    r = Reassembler(max_message_size=10_000, max_chunks=100_000)
    whole = [out for c in chunks if (out := r.receive(c, 0.0)) is not None]
    assert isinstance(whole[0], AssembledMessage) and whole[0].body == body


@settings(max_examples=150)
@given(st.integers(1, 4000), st.lists(st.tuples(
    st.integers(0, 2), st.sampled_from(["m0001", "m0002", "m0003"]), st.integers(0, 1999),
    st.integers(0, 600), st.sampled_from(["+", "+", "$", "#"])), max_size=40),
    st.booleans())
def test_budget_never_exceeded_and_always_equals_the_bytes_held(
    limit: int, ops: list[tuple[int, str, int, int, str]], expire: bool
) -> None:
    """Whatever chunks come (overlaps, refusals, aborts), the budget stays within its limit
    and counts exactly the bytes the reassemblers still hold: dropping them gives all back."""
    budget = ReassemblyBudget(limit)
    rs = [Reassembler(budget=budget, max_message_size=2000, timeout=5.0) for _ in range(3)]
    for now, (which, mid, start, length, flag) in enumerate(ops):
        length = min(length, 2000 - start)
        req = MSRPRequest("tid" + str(now), "SEND", [
            ("To-Path", "msrp://h/s;tcp"), ("From-Path", "msrp://g/t;tcp"), ("Message-ID", mid),
            ("Byte-Range", f"{start + 1}-{start + length}/2000"),
            ("Content-Type", "text/plain")], b"x" * length, flag)
        try:
            rs[which].receive(req, float(now))
        except ReassemblyError as e:
            assert e.code in (400, 413)
        assert 0 <= budget.used <= limit
    held = sum(g.received for r in rs
               for g in (r.expire(1e9) if expire else r.discard_all()))
    assert held <= limit and budget.used == 0


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(lambda t: t.encode("utf-8"))


@settings(max_examples=300)
@given(texts, st.lists(st.tuples(texts, texts), max_size=6), st.booleans(), texts)
def test_any_text_in_start_line_and_headers_gives_a_frame_or_an_error_event(
    start: bytes, headers: list[tuple[bytes, bytes]], with_body: bool, body: bytes
) -> None:
    head = b"MSRP abcd " + start.replace(b"\r\n", b"") + b"\r\n"
    head += b"".join(n.replace(b"\r\n", b"") + b": " + v.replace(b"\r\n", b"") + b"\r\n"
                     for n, v in headers)
    tail = (b"\r\n" + body.replace(b"-------", b"") + b"\r\n" if with_body else b"") + b"-------abcd$\r\n"
    parser = FrameParser(SMALL)
    try:
        events = parser.feed(head + tail) + parser.feed(b"MSRP efgh 200\r\nTo-Path: msrp://h/s;tcp\r\n"
                                                        b"From-Path: msrp://h/s;tcp\r\n-------efgh$\r\n")
    except MSRPParseError as e:
        assert e.transaction_id is None  # only a start line we cannot frame is fatal
        return
    assert len(events) == 2 and isinstance(events[1], MSRPResponse)
    first = events[0]
    assert isinstance(first, (MSRPRequest, MSRPResponse, MSRPParseError))
    if isinstance(first, MSRPParseError):
        assert first.transaction_id == "abcd"
