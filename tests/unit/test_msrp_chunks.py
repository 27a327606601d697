"""Outgoing chunking and incoming reassembly (RFC 4975 s.5.1, s.7.1.1)."""

from __future__ import annotations

import itertools

import pytest

from msrp_gateway.msrp.chunks import (
    Abandoned,
    AssembledMessage,
    Chunker,
    Reassembler,
    ReassemblyBudget,
    ReassemblyError,
)
from msrp_gateway.msrp.message import ByteRange, MSRPRequest, parse_frames

TO = "msrp://bob.example.com:8888/9di4eae923wzd;tcp"
FROM = "msrp://alicepc.example.com:7777/iau39soe2843z;tcp"


def chunker(body: bytes, size: int, **kw: object) -> Chunker:
    counter = itertools.count(1000)
    return Chunker(body, message_id=kw.pop("message_id", "msg0001"), to_path=[TO],  # type: ignore[arg-type]
                   from_path=FROM, content_type="text/plain", chunk_size=size,
                   new_transaction_id=lambda: f"tid{next(counter)}", **kw)  # type: ignore[arg-type]


def chunk(mid: str, start: int, data: bytes, total: int | None, flag: str = "+",
          end: int | None | str = "auto") -> MSRPRequest:
    """A SEND chunk as a peer would send it; end="auto" means start+len-1."""
    last = start + len(data) - 1 if end == "auto" else end
    br = ByteRange(start, last if isinstance(last, int) else None, total)
    headers = [("To-Path", TO), ("From-Path", FROM), ("Message-ID", mid), ("Byte-Range", str(br))]
    if data:
        headers.append(("Content-Type", "text/plain"))
    return MSRPRequest("t" + mid + str(start), "SEND", headers, data, flag)


# -- Chunker ------------------------------------------------------------------------------

def test_body_is_cut_into_ranges_with_plus_then_dollar() -> None:
    body = bytes(range(256)) * 4 + b"tail"  # 1028 bytes
    chunks = list(chunker(body, 500))
    assert [c.byte_range for c in chunks] == [
        ByteRange(1, 500, 1028), ByteRange(501, 1000, 1028), ByteRange(1001, 1028, 1028)]
    assert [c.flag for c in chunks] == ["+", "+", "$"]
    assert b"".join(c.body for c in chunks) == body
    assert len({c.transaction_id for c in chunks}) == 3
    assert all(c.message_id == "msg0001" and c.to_path == [TO] and c.content_type == "text/plain"
               for c in chunks)


def test_small_body_goes_as_one_whole_send() -> None:
    (only,) = list(chunker(b"Hi, I'm Alice!", 2048))
    assert (only.flag, only.byte_range, only.body) == ("$", ByteRange(1, 14, 14), b"Hi, I'm Alice!")


def test_empty_body_is_one_bodiless_send_without_content_type() -> None:
    (only,) = list(chunker(b"", 2048))
    assert (only.flag, only.body, only.content_type) == ("$", b"", None)
    assert only.byte_range == ByteRange(1, 0, 0)
    assert b"Content-Type" not in only.to_bytes()


def test_chunks_come_lazily_so_two_messages_interleave() -> None:
    a = chunker(b"a" * 30, 10, message_id="msgA0001")
    b = chunker(b"b" * 20, 10, message_id="msgB0001")
    order = []
    while not (a.done and b.done):
        for c in (a, b):
            req = c.next_chunk()
            if req is not None:
                order.append((req.message_id, req.flag))
    assert order == [("msgA0001", "+"), ("msgB0001", "+"), ("msgA0001", "+"), ("msgB0001", "$"),
                     ("msgA0001", "$")]


def test_abort_sends_hash_and_ends_the_message() -> None:
    c = chunker(b"x" * 100, 40)
    first = c.next_chunk()
    assert first is not None and c.offset == 40
    abort = c.abort()
    assert abort is not None and abort.flag == "#" and abort.body == b""
    assert abort.byte_range == ByteRange(41, 40, 100)
    assert c.done and c.next_chunk() is None and c.abort() is None
    assert abort.to_bytes().endswith(b"#\r\n")


def test_report_headers_and_extra_headers_are_written() -> None:
    c = chunker(b"hello", 10, success_report="yes", failure_report="partial",
                extra_headers=[("X-Trace", "abc")])
    wire = next(iter(c)).to_bytes()
    (req,) = parse_frames(wire)
    assert isinstance(req, MSRPRequest)
    assert (req.success_report, req.failure_report, req.headers.get("X-Trace")) == ("yes", "partial", "abc")


def test_chunker_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        chunker(b"x", 0)
    with pytest.raises(ValueError):
        Chunker(b"x", message_id="m123", to_path=[TO], from_path=[FROM], content_type=None)


def test_chunks_survive_the_wire_and_reassemble() -> None:
    body = bytes(i % 251 for i in range(100_000))
    wire = b"".join(c.to_bytes() for c in chunker(body, 4096))
    frames = parse_frames(wire)
    r = Reassembler()
    results = [r.receive(f, 0.0) for f in frames]  # type: ignore[arg-type]
    assert results[:-1] == [None] * (len(frames) - 1)
    done = results[-1]
    assert isinstance(done, AssembledMessage) and done.body == body and done.content_type == "text/plain"


# -- Reassembler --------------------------------------------------------------------------

def test_single_chunk_message_is_whole_at_once() -> None:
    r = Reassembler()
    req = chunk("m1234", 1, b"hello", 5, "$")
    out = r.receive(req, 0.0)
    assert isinstance(out, AssembledMessage)
    assert (out.message_id, out.body, out.request, r.open_count) == ("m1234", b"hello", req, 0)


def test_chunks_in_reverse_order_reassemble() -> None:
    r = Reassembler()
    assert r.receive(chunk("m1234", 6, b"world", 10, "$"), 0.0) is None
    out = r.receive(chunk("m1234", 1, b"hello", 10, "+"), 1.0)
    assert isinstance(out, AssembledMessage) and out.body == b"helloworld" and r.open_count == 0


def test_duplicates_and_overlaps_are_tolerated() -> None:
    r = Reassembler()
    assert r.receive(chunk("m1234", 1, b"abcd", 10), 0.0) is None
    assert r.receive(chunk("m1234", 1, b"abcd", 10), 0.0) is None  # duplicate
    assert r.receive(chunk("m1234", 3, b"cdefg", 10), 0.0) is None  # overlap
    out = r.receive(chunk("m1234", 7, b"ghij", 10, "$"), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"abcdefghij"


def test_unknown_totals_are_fixed_by_the_last_chunk() -> None:
    r = Reassembler()
    assert r.receive(chunk("m1234", 1, b"abc", None, "+", end=None), 0.0) is None
    assert r.receive(chunk("m1234", 4, b"def", None, "+", end=None), 0.0) is None
    out = r.receive(chunk("m1234", 7, b"gh", None, "$", end=None), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"abcdefgh"


def test_last_chunk_first_with_unknown_total_waits_for_the_rest() -> None:
    r = Reassembler()
    assert r.receive(chunk("m1234", 5, b"efgh", None, "$", end=None), 0.0) is None
    out = r.receive(chunk("m1234", 1, b"abcd", None, "+", end=None), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"abcdefgh"


def test_declared_total_over_the_bound_is_413_and_later_chunks_too() -> None:
    r = Reassembler(max_message_size=100)
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m1234", 1, b"x" * 10, 1000), 0.0)
    assert (e.value.code, e.value.message_id) == (413, "m1234")
    with pytest.raises(ReassemblyError) as e2:
        r.receive(chunk("m1234", 11, b"x" * 10, 1000), 0.0)
    assert e2.value.code == 413 and r.open_count == 0


def test_unknown_total_growing_past_the_bound_is_413() -> None:
    r = Reassembler(max_message_size=25)
    assert r.receive(chunk("m1234", 1, b"x" * 20, None, end=None), 0.0) is None
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m1234", 21, b"x" * 20, None, end=None), 0.0)
    assert e.value.code == 413 and r.open_count == 0


def test_too_many_open_messages_is_413_without_touching_the_others() -> None:
    r = Reassembler(max_open=2)
    r.receive(chunk("m0001", 1, b"a", 2), 0.0)
    r.receive(chunk("m0002", 1, b"a", 2), 0.0)
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m0003", 1, b"a", 2), 0.0)
    assert e.value.code == 413 and r.open_count == 2
    out = r.receive(chunk("m0001", 2, b"b", 2, "$"), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"ab"


def test_chunks_disagreeing_on_total_are_400() -> None:
    r = Reassembler()
    r.receive(chunk("m1234", 1, b"abc", 10), 0.0)
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m1234", 4, b"def", 12), 0.0)
    assert e.value.code == 400 and r.open_count == 0


def test_body_longer_than_its_range_is_400() -> None:
    with pytest.raises(ReassemblyError) as e:
        Reassembler().receive(chunk("m1234", 1, b"abcdef", 10, end=3), 0.0)
    assert e.value.code == 400


def test_interrupted_chunk_shorter_than_its_range_counts_what_arrived() -> None:
    r = Reassembler()
    assert r.receive(chunk("m1234", 1, b"abc", 6, end=6), 0.0) is None  # sender cut it short
    out = r.receive(chunk("m1234", 4, b"def", 6, "$"), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"abcdef"


def test_abort_drops_the_message_and_reports_it() -> None:
    r = Reassembler()
    r.receive(chunk("m1234", 1, b"abc", 10), 0.0)
    out = r.receive(chunk("m1234", 4, b"", 10, "#", end=3), 0.0)
    assert isinstance(out, Abandoned)
    assert (out.reason, out.received, out.total, r.open_count) == ("aborted", 3, 10, 0)


def test_incomplete_message_expires_and_is_reported_not_kept() -> None:
    r = Reassembler(timeout=30.0)
    r.receive(chunk("m1234", 1, b"abc", 10), 100.0)
    r.receive(chunk("m5678", 1, b"abc", 10), 120.0)
    assert r.expire(129.9) == []
    gone = r.expire(130.0)
    assert [(g.message_id, g.reason, g.received, g.total) for g in gone] == [("m1234", "timeout", 3, 10)]
    assert r.pending() == ["m5678"]
    assert [g.message_id for g in r.expire(1000.0)] == ["m5678"] and r.open_count == 0


def test_each_chunk_restarts_the_idle_clock() -> None:
    r = Reassembler(timeout=30.0)
    r.receive(chunk("m1234", 1, b"abc", 10), 0.0)
    r.receive(chunk("m1234", 4, b"def", 10), 25.0)
    assert r.expire(50.0) == [] and r.open_count == 1


def test_chunk_count_bound_is_413() -> None:
    r = Reassembler(max_chunks=3)
    for i in range(3):
        r.receive(chunk("m1234", 1 + i, b"x", 100), 0.0)
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m1234", 4, b"x", 100), 0.0)
    assert e.value.code == 413


def test_discard_all_reports_every_open_message() -> None:
    r = Reassembler()
    r.receive(chunk("m0001", 1, b"a", 2), 0.0)
    r.receive(chunk("m0002", 1, b"a", 2), 0.0)
    assert sorted(a.message_id for a in r.discard_all()) == ["m0001", "m0002"]
    assert r.open_count == 0


def test_reports_and_flags_come_from_the_first_chunk() -> None:
    r = Reassembler()
    first = chunk("m1234", 1, b"ab", 4)
    first.headers.add("Success-Report", "yes")
    r.receive(first, 0.0)
    out = r.receive(chunk("m1234", 3, b"cd", 4, "$"), 0.0)
    assert isinstance(out, AssembledMessage) and out.success_report == "yes"


def test_memory_follows_bytes_received_not_the_declared_total() -> None:
    import tracemalloc

    r = Reassembler(max_message_size=16 * 1024 * 1024)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        r.receive(chunk("m1234", 15 * 1024 * 1024, b"tail", 16 * 1024 * 1024), 0.0)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024
    (gone,) = r.expire(1e9)
    assert (gone.received, gone.total) == (4, 16 * 1024 * 1024)


def test_overlapping_chunks_count_each_byte_once() -> None:
    r = Reassembler()
    r.receive(chunk("m1234", 3, b"cdef", 20), 0.0)
    r.receive(chunk("m1234", 1, b"abcdefgh", 20), 0.0)  # covers the first on both sides
    r.receive(chunk("m1234", 12, b"lm", 20), 0.0)
    r.receive(chunk("m1234", 7, b"ghijklmn", 20), 0.0)  # spans a gap and two held ranges
    (gone,) = r.expire(1e9)
    assert gone.received == 14
    r2 = Reassembler()
    for c in (chunk("m1", 3, b"cdef", 16), chunk("m1", 1, b"abcdefgh", 16), chunk("m1", 12, b"lm", 16),
              chunk("m1", 7, b"ghijklmn", 16)):
        assert r2.receive(c, 0.0) is None
    out = r2.receive(chunk("m1", 15, b"op", 16, "$"), 0.0)
    assert isinstance(out, AssembledMessage) and out.body == b"abcdefghijklmnop"


def test_late_resend_of_a_finished_message_opens_nothing() -> None:
    r = Reassembler(timeout=10.0)
    r.receive(chunk("m1234", 1, b"abc", 6), 0.0)
    assert isinstance(r.receive(chunk("m1234", 4, b"def", 6, "$"), 0.0), AssembledMessage)
    assert r.receive(chunk("m1234", 4, b"def", 6, "$"), 1.0) is None
    r.receive(chunk("m5678", 1, b"abc", 6), 0.0)
    assert [g.message_id for g in r.expire(10.0)] == ["m5678"]
    assert r.receive(chunk("m5678", 4, b"def", 6, "+"), 11.0) is None
    assert r.open_count == 0 and r.expire(1e9) == []


def test_hand_built_chunk_with_a_bad_byte_range_is_400() -> None:
    bad = MSRPRequest("tid1", "SEND", [("To-Path", TO), ("From-Path", FROM), ("Message-ID", "m1234"),
                                       ("Byte-Range", "x-y/z")], b"a")
    with pytest.raises(ReassemblyError) as e:
        Reassembler().receive(bad, 0.0)
    assert e.value.code == 400


# -- the stack-wide reassembly budget -------------------------------------------------------

def test_budget_refuses_the_chunk_that_would_exceed_it_across_reassemblers() -> None:
    budget = ReassemblyBudget(100)
    a = Reassembler(budget=budget)
    b = Reassembler(budget=budget)
    assert a.receive(chunk("m0001", 1, b"a" * 60, 200), 0.0) is None
    assert b.receive(chunk("m0002", 1, b"b" * 30, 200), 0.0) is None
    assert budget.used == 90
    with pytest.raises(ReassemblyError) as e:
        b.receive(chunk("m0002", 31, b"b" * 20, 200), 0.0)  # 90 + 20 > 100
    assert (e.value.code, e.value.message_id) == (413, "m0002")
    # The refused message is dropped, its bytes given back; its later chunks get 413 too.
    assert b.open_count == 0 and budget.used == 60 and budget.refused == 1
    with pytest.raises(ReassemblyError) as again:
        b.receive(chunk("m0002", 51, b"b" * 5, 200), 0.0)
    assert again.value.code == 413
    # The other session's message is untouched and the freed room serves new messages.
    assert b.receive(chunk("m0003", 1, b"c" * 40, 200), 0.0) is None
    assert budget.used == 100


def test_budget_is_given_back_on_completion_abort_expiry_and_close() -> None:
    budget = ReassemblyBudget(1000)
    r = Reassembler(budget=budget, timeout=10.0)
    r.receive(chunk("m0001", 1, b"abc", 6), 0.0)
    assert isinstance(r.receive(chunk("m0001", 4, b"def", 6, "$"), 0.0), AssembledMessage)
    assert budget.used == 0
    r.receive(chunk("m0002", 1, b"abc", 6), 0.0)
    assert isinstance(r.receive(chunk("m0002", 4, b"", 6, "#"), 0.0), Abandoned)
    assert budget.used == 0
    r.receive(chunk("m0003", 1, b"abcd", 10), 0.0)
    assert budget.used == 4 and [g.message_id for g in r.expire(10.0)] == ["m0003"]
    assert budget.used == 0
    r.receive(chunk("m0004", 1, b"abcde", 10), 0.0)
    r.receive(chunk("m0005", 1, b"ab", 10), 0.0)
    assert budget.used == 7
    r.discard_all()
    assert budget.used == 0


def test_budget_counts_only_bytes_held_not_duplicates_or_whole_messages() -> None:
    budget = ReassemblyBudget(10)
    r = Reassembler(budget=budget)
    # A whole message in one chunk is never held: it does not touch the budget.
    assert isinstance(r.receive(chunk("m0009", 1, b"x" * 50, 50, "$"), 0.0), AssembledMessage)
    assert budget.used == 0
    r.receive(chunk("m0001", 1, b"abcdefgh", 12), 0.0)
    r.receive(chunk("m0001", 1, b"abcdefgh", 12), 0.0)  # duplicate: nothing new held
    r.receive(chunk("m0001", 5, b"efghij", 12), 0.0)  # overlap: only "ij" is new
    assert budget.used == 10 and budget.refused == 0
    with pytest.raises(ReassemblyError) as e:
        r.receive(chunk("m0001", 11, b"kl", 12, "$"), 0.0)  # 12 bytes held > 10
    assert e.value.code == 413 and budget.used == 0 and r.open_count == 0
