"""The SEND hot path keeps the RFC's rules: pre-built frames, per-connection ids, deadlines.

Frames written from parts checked once must be the bytes the checking serializer writes;
caller-supplied values are still refused; transaction ids are unique per connection while
Message-IDs stay unguessable; one deadline queue per connection times every SEND out at
exactly its own deadline on `task.Clock`; cached header values follow header changes; a full
send queue fails the send at once (an already-failed Deferred), naming the setting.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msrp_gateway.msrp.chunks import Chunker, path_head
from msrp_gateway.msrp.message import (
    ByteRange,
    FrameParser,
    MSRPHeaders,
    MSRPParseError,
    MSRPRequest,
    MSRPResponse,
    parse_frames,
)
from msrp_gateway.msrp.session import (
    LinkCore,
    MSRPSendError,
    MSRPSession,
    SessionSettings,
    new_id,
)
from tests.unit.test_msrp_session import Host  # the same smallest stack

PEER = "msrp://10.0.0.2:7777/peer1;tcp"
OURS = "msrp://10.0.0.1:2855/ours1;tcp"


class Wire:
    """A LinkCore whose written bytes are parsed back into frames."""

    def __init__(self, host: Host) -> None:
        self.out = FrameParser()
        self.frames: list[Any] = []
        self.raw: list[bytes] = []
        self.core = LinkCore(host.clock, host.table, host.settings, FrameParser(),
                             self._write, lambda: None, lambda core: None, "test")
        host.link = self.core

    def _write(self, data: bytes) -> None:
        self.raw.append(data)
        self.frames.extend(self.out.feed(data))

    def take(self) -> list[Any]:
        frames, self.frames = self.frames, []
        return frames


def bound(host: Host) -> tuple[MSRPSession, Wire]:
    w = Wire(host)
    sid = new_id()
    s = MSRPSession(host, sid, f"msrp://10.0.0.1:2855/{sid};tcp", ["text/plain"], host.settings)
    s.set_remote_path([PEER])
    host.table.add(s)
    s.bind(w.core)
    return s, w


def reply(w: Wire, req: MSRPRequest, status: int) -> None:
    resp = MSRPResponse(req.transaction_id, status, None,
                        [("To-Path", req.from_path[0]), ("From-Path", req.to_path[0])])
    w.core.data_received(resp.to_bytes())


def counter_ids() -> Any:
    n = iter(range(1, 10**6))
    return lambda: f"tid{next(n):05d}"


# ---- frames built from parts checked once ----------------------------------------------

@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=600), chunk=st.integers(1, 700),
       fr=st.sampled_from([None, "no", "partial"]), sr=st.sampled_from([None, "yes"]),
       ctype=st.sampled_from(["text/plain", "Message/CPIM", "text/plain; charset=UTF-8"]),
       with_head=st.booleans())
def test_prebuilt_frames_are_byte_for_byte_what_the_checking_serializer_writes(
        body, chunk, fr, sr, ctype, with_head):
    head = path_head([PEER], OURS) if with_head else None
    fast = Chunker(body, message_id="mid12345", to_path=[PEER], from_path=OURS,
                   content_type=ctype, chunk_size=chunk, failure_report=fr, success_report=sr,
                   new_transaction_id=counter_ids(), path_head=head)
    slow = Chunker(body, message_id="mid12345", to_path=[PEER], from_path=OURS,
                   content_type=ctype, chunk_size=chunk, failure_report=fr, success_report=sr,
                   new_transaction_id=counter_ids())
    wires = []
    while (frame := fast.next_wire()) is not None:
        wires.append(frame)
    reqs = list(slow)
    assert [tid for tid, _ in wires] == [r.transaction_id for r in reqs]
    assert [data for _, data in wires] == [r.to_bytes() for r in reqs]
    parsed = parse_frames(b"".join(data for _, data in wires))
    assert b"".join(p.body for p in parsed) == body
    assert fast.done and fast.next_wire() is None


@pytest.mark.parametrize("kw, why", [
    ({"content_type": "text/plain\r\nX-Evil: 1"}, "control character"),
    ({"content_type": "plain"}, "media type"),
    ({"message_id": "bad id"}, "Message-ID"),
    ({"to_path": ["http://example.com/"]}, "bad MSRP URI"),
    ({"failure_report": "maybe"}, "Failure-Report"),
])
def test_caller_supplied_values_are_still_refused_on_the_fast_path(kw, why):
    args: dict[str, Any] = dict(message_id="mid12345", to_path=[PEER], from_path=OURS,
                                content_type="text/plain")
    args.update(kw)
    c = Chunker(b"hello", **args)
    with pytest.raises(ValueError, match=why):
        c.next_wire()


def test_a_body_holding_its_own_end_line_is_sent_under_another_transaction_id():
    ids = iter(["tidAAAA", "tidBBBB"])
    body = b"look:\r\n-------tidAAAA$\r\nstill the body"
    c = Chunker(body, message_id="mid12345", to_path=[PEER], from_path=OURS,
                content_type="text/plain", new_transaction_id=lambda: next(ids))
    tid, data = c.next_wire()
    assert tid == "tidBBBB"
    [req] = parse_frames(data)
    assert req.body == body and req.transaction_id == "tidBBBB"


def test_a_path_head_refuses_a_path_with_a_bad_uri_or_a_line_break():
    with pytest.raises(ValueError):
        path_head(["msrp://10.0.0.2:7777/x;tcp\r\nX: y"], OURS)
    with pytest.raises(ValueError):
        path_head(["msrp://10.0.0.2:7777/x"], OURS)  # no transport


# ---- identifiers --------------------------------------------------------------------------

def test_transaction_ids_are_unique_per_connection_and_message_ids_stay_unguessable():
    host = Host()
    s, w = bound(host)
    for i in range(300):
        s.send("text/plain", b"m%d" % i, failure_report="no")
    frames = w.take()
    tids = [f.transaction_id for f in frames]
    mids = [f.message_id for f in frames]
    assert len(set(tids)) == 300 and len(set(mids)) == 300
    assert all(re.fullmatch(r"[0-9a-f]{12}\.[0-9a-f]+", t) and 4 <= len(t) <= 32 for t in tids)
    assert len({t.split(".")[0] for t in tids}) == 1  # one random prefix per connection
    assert all(re.fullmatch(r"[0-9a-f]{20}", m) for m in mids)  # secrets.token_hex(10)
    other = Wire(Host())
    assert other.core.new_tid().split(".")[0] != tids[0].split(".")[0]


# ---- one deadline queue per connection ------------------------------------------------------

def test_each_send_times_out_exactly_at_its_own_deadline_with_one_timer_per_connection():
    host = Host()
    s, w = bound(host)
    results: dict[int, list[Any]] = {}
    for i, at in enumerate((0.0, 10.0, 20.0)):
        host.clock.advance(at - host.clock.seconds())
        d = s.send("text/plain", b"m%d" % i)
        results[i] = []
        d.addBoth(results[i].append)
    frames = w.take()
    assert len(host.clock.getDelayedCalls()) == 1  # not one per SEND
    reply(w, frames[0], 200)  # the earliest one answered: the others keep their deadlines
    assert results[0] == [200]
    host.clock.advance(39.999 - host.clock.seconds())
    assert results[1] == []
    host.clock.advance(0.001)  # t = 40 = 10 + 30
    assert isinstance(results[1][0].value, MSRPSendError) and results[1][0].value.code == 408
    assert results[2] == []
    host.clock.advance(9.999)
    assert results[2] == []
    host.clock.advance(0.001)  # t = 50 = 20 + 30
    assert results[2][0].value.code == 408
    assert host.clock.getDelayedCalls() == []


def test_answering_every_send_leaves_no_timer_and_late_sends_still_time_out():
    host = Host()
    s, w = bound(host)
    ds = [s.send("text/plain", b"x%d" % i) for i in range(50)]
    for f in w.take():
        reply(w, f, 200)
    assert [d.result for d in ds] == [200] * 50
    assert host.clock.getDelayedCalls() == []
    host.clock.advance(100)
    late: list[Any] = []
    s.send("text/plain", b"late").addErrback(late.append)
    host.clock.advance(29.99)
    assert late == []
    host.clock.advance(0.01)
    assert late[0].value.code == 408
    assert host.clock.getDelayedCalls() == []


def test_many_answered_sends_behind_one_slow_one_keep_timing_right():
    host = Host(SessionSettings(max_inflight=10_000, max_queued_messages=10_000))
    s, w = bound(host)
    slow: list[Any] = []
    s.send("text/plain", b"slow").addBoth(slow.append)
    [slow_frame] = w.take()
    for i in range(2000):  # answered ones pile up behind the slow head until compacted
        d = s.send("text/plain", b"f%d" % i)
        [f] = w.take()
        reply(w, f, 200)
        assert d.result == 200
    assert len(host.clock.getDelayedCalls()) == 1
    host.clock.advance(30)
    assert slow[0].value.code == 408 and slow_frame.body == b"slow"
    assert host.clock.getDelayedCalls() == []


def test_connection_loss_fails_sends_in_flight_and_leaves_no_deadline_timer():
    host = Host()
    s, w = bound(host)
    errors: list[Any] = []
    for i in range(5):
        s.send("text/plain", b"%d" % i).addErrback(errors.append)
    w.core.connection_lost("reset")
    assert [e.value.code for e in errors] == [503] * 5
    assert host.clock.getDelayedCalls() == []


# ---- cached header values ------------------------------------------------------------------

def test_cached_header_values_follow_changes_to_the_headers():
    [req] = parse_frames(
        b"MSRP t1234 SEND\r\nTo-Path: " + PEER.encode() + b"\r\nFrom-Path: " + OURS.encode()
        + b"\r\nMessage-ID: m1\r\nByte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\n"
        b"hello\r\n-------t1234$\r\n")
    assert req.to_path == [PEER] and req.byte_range == ByteRange(1, 5, 5)
    assert req.failure_report == "yes" and req.content_type == "text/plain"
    req.to_path.append("changed")  # a caller's list is its own
    assert req.to_path == [PEER]
    req.headers.set("To-Path", OURS)
    req.headers.set("Byte-Range", "1-5/9")
    req.headers.add("Failure-Report", "no")
    assert req.to_path == [OURS] and req.byte_range == ByteRange(1, 5, 9)
    assert req.failure_report == "no"
    req.headers.remove("Content-Type")
    assert req.content_type is None and req.headers.get("content-type") is None
    req.headers.set("Byte-Range", "junk")
    with pytest.raises(MSRPParseError):
        req.byte_range
    with pytest.raises(MSRPParseError):
        req.byte_range  # a bad value is refused every time, never cached as good


def test_headers_get_returns_the_first_value_case_insensitively():
    h = MSRPHeaders([("X-A", "1"), ("x-a", "2"), ("To-Path", PEER)])
    assert h.get("x-A") == "1" and h.get("TO-PATH") == PEER and h.get("nope", "d") == "d"
    assert h.get_all("X-a") == ["1", "2"]


# ---- the queue bounds, failing at once -------------------------------------------------------

def test_a_full_send_queue_fails_the_send_at_once_naming_the_setting():
    host = Host(SessionSettings(max_queued_messages=3))
    s, w = bound(host)
    w.core.pause()
    for i in range(3):
        s.send("text/plain", b"%d" % i)
    d = s.send("text/plain", b"one too many")
    assert d.called  # already failed when returned: the caller can answer 503 on the spot
    failures: list[Any] = []
    d.addErrback(failures.append)
    err = failures[0].value
    assert err.code == 503 and "3 messages" in err.comment
    assert "max_queued_messages" in err.comment


def test_in_flight_bound_is_a_setting_and_holds_the_rest_in_the_queue():
    host = Host(SessionSettings(max_inflight=4))
    s, w = bound(host)
    ds = [s.send("text/plain", b"%d" % i) for i in range(10)]
    first = w.take()
    assert len(first) == 4
    for f in first:
        reply(w, f, 200)
    assert len(w.take()) == 4
    assert [d.called for d in ds] == [True] * 4 + [False] * 6
    assert SessionSettings().max_inflight == 256 and SessionSettings().max_queued_messages == 1024


# ---- responses to incoming SENDs, written without re-checking -----------------------------

def incoming(to: str, body: bytes = b"hi", ctype: str = "text/plain", extra: str = "") -> bytes:
    return (f"MSRP in{len(body)}x SEND\r\nTo-Path: {to}\r\nFrom-Path: {PEER}\r\n"
            f"Message-ID: mm{len(body)}\r\n{extra}Byte-Range: 1-{len(body)}/{len(body)}\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode() + body + \
        f"\r\n-------in{len(body)}x$\r\n".encode()


@pytest.mark.parametrize("case, status", [
    ("known", 200), ("unknown", 481), ("wrong type", 415), ("partial ok", None),
    ("partial refused", 415),
])
def test_answers_to_parsed_sends_are_the_bytes_build_response_writes(case, status):
    from msrp_gateway.msrp.session import build_response

    host = Host()
    s, w = bound(host)
    got: list[Any] = []
    s.on_message = got.append
    to = s.local_uri if case != "unknown" else "msrp://10.0.0.1:2855/nosuch;tcp"
    ctype = "image/png" if "refused" in case or case == "wrong type" else "text/plain"
    extra = "Failure-Report: partial\r\n" if case.startswith("partial") else ""
    data = incoming(to, ctype=ctype, extra=extra)
    [req] = parse_frames(data)
    before = len(w.raw)
    w.core.data_received(data)
    written = w.raw[before:]
    if status is None:
        assert written == [] and len(got) == 1  # partial: no 200, message delivered
        return
    assert written == [build_response(req, status).to_bytes()]
    [resp] = parse_frames(written[0])
    assert resp.status == status and resp.to_path == [PEER] and resp.from_path == [to]
    assert len(got) == (1 if status == 200 else 0)
