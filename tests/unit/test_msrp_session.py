"""Sans-IO MSRP sessions: matching, transactions, report rules, chunking, timers.

Everything runs on a `LinkCore` fed bytes by hand, with writes collected in a list and
time on `task.Clock`: no sockets.
"""

from __future__ import annotations

from typing import Any

import pytest

from msrp_gateway.msrp.message import MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import (
    MSRPSendError,
    MSRPSession,
    SessionSettings,
    content_type_accepted,
    new_id,
    wants_response,
)
from tests.msrp_session_fakes import PEER, Host, Wire, send_frame


@pytest.fixture
def host() -> Host:
    return Host()


# ---- pure rules ------------------------------------------------------------------------

@pytest.mark.parametrize("fr,status,expected", [
    ("yes", 200, True), ("yes", 415, True), (None, 200, True),
    ("partial", 200, False), ("partial", 481, True),
    ("no", 200, False), ("no", 413, False), ("Partial", 200, False),
])
def test_failure_report_decides_which_responses_are_sent(fr, status, expected):
    assert wants_response(fr, status) is expected


@pytest.mark.parametrize("ctype,accept,ok", [
    ("text/plain", ["text/plain"], True),
    ("Text/Plain; charset=UTF-8", ["text/plain"], True),
    ("text/html", ["TEXT/*"], True),
    ("image/png", ["text/*"], False),
    ("application/im-iscomposing+xml", ["*"], True),
    (None, ["*"], False),
    ("", ["text/plain"], False),
    ("message/cpim", ["text/plain"], False),
])
def test_content_type_matching_is_case_insensitive_with_wildcards(ctype, accept, ok):
    assert content_type_accepted(ctype, accept) is ok


def test_ids_are_unguessable_and_distinct():
    ids = {new_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 20 for i in ids)


# ---- receiving ----------------------------------------------------------------------------

def test_send_to_known_session_gets_200_and_is_delivered(host):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, tid="tid1"))
    [resp] = w.responses()
    assert (resp.transaction_id, resp.status) == ("tid1", 200)
    assert resp.to_path == [PEER] and resp.from_path == [s.local_uri]
    assert [(m.body, m.content_type, m.message_id) for m in got] == [(b"hello", "text/plain", "m1")]


def test_first_request_binds_passive_session(host):
    s = host.session()
    bound = s.wait_bound(5)
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, body=b""))
    assert bound.called and s.link is w.core
    assert [r.status for r in w.responses()] == [200]
    assert host.clock.getDelayedCalls() == []


def test_wait_bound_times_out(host):
    s = host.session()
    d = s.wait_bound(5)
    failures = []
    d.addErrback(failures.append)
    host.clock.advance(5)
    assert failures and failures[0].value.code == 408


def test_unknown_session_gets_481(host):
    w = Wire(host)
    w.core.data_received(send_frame("msrp://10.0.0.1:2855/nosuch;tcp"))
    assert [r.status for r in w.responses()] == [481]


def test_from_path_must_match_negotiated_peer(host):
    s = host.session()
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, frm="msrp://10.9.9.9:1/other;tcp"))
    assert [r.status for r in w.responses()] == [481]


def test_session_id_only_matching_ignores_authority():
    h = Host(SessionSettings(session_id_matching=True))
    s = h.session()
    w = Wire(h)
    to = s.local_uri.replace("10.0.0.1:2855", "192.0.2.1:9")
    w.core.data_received(send_frame(to, frm="msrp://198.51.100.7:5/peer1;tcp"))
    assert [r.status for r in w.responses()] == [200]


def test_session_bound_to_other_connection_gets_506(host):
    s = host.session()
    w1, w2 = Wire(host), Wire(host)
    w1.core.data_received(send_frame(s.local_uri))
    w2.core.data_received(send_frame(s.local_uri, mid="m2"))
    assert [r.status for r in w1.responses()] == [200]
    assert [r.status for r in w2.responses()] == [506]


def test_unknown_method_gets_501_and_report_is_never_answered(host):
    s = host.session()
    reports = []
    s.on_report = reports.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, method="FOO", body=b""))
    w.core.data_received(send_frame(s.local_uri, method="REPORT", body=b"",
                                    extra=("Status: 000 200 OK",)))
    w.core.data_received(send_frame("msrp://10.0.0.1:2855/nosuch;tcp", method="REPORT",
                                    body=b"", extra=("Status: 000 200 OK",)))
    assert [r.status for r in w.responses()] == [501]
    assert len(reports) == 1 and reports[0].method == "REPORT"


@pytest.mark.parametrize("ctype", [None, "image/png"])
def test_missing_or_unaccepted_content_type_gets_415(host, ctype):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, ctype=ctype))
    assert [r.status for r in w.responses()] == [415]
    assert got == []


def test_wildcard_accept_types_accept_subtypes(host):
    s = host.session(accept=("text/*",))
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, ctype="TEXT/HTML"))
    assert [r.status for r in w.responses()] == [200]


def test_failure_report_no_suppresses_all_responses(host):
    s = host.session()
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, extra=("Failure-Report: no",)))
    w.core.data_received(send_frame(s.local_uri, ctype="image/png", mid="m2",
                                    extra=("Failure-Report: no",)))
    assert w.take() == []


def test_partial_failure_report_gets_no_200_but_gets_415(host):
    s = host.session()
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, extra=("Failure-Report: partial",)))
    w.core.data_received(send_frame(s.local_uri, ctype="image/png", mid="m2",
                                    extra=("Failure-Report: partial",)))
    assert [r.status for r in w.responses()] == [415]


def test_success_report_sent_once_whole_message_arrived(host):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, body=b"abc", byte_range="1-3/6",
                                    flag="+", extra=("Success-Report: yes",)))
    first = w.take()
    assert [type(f) for f in first] == [MSRPResponse]
    w.core.data_received(send_frame(s.local_uri, body=b"def", byte_range="4-6/6",
                                    extra=("Success-Report: yes",)))
    frames = w.take()
    reports = [f for f in frames if isinstance(f, MSRPRequest)]
    assert len(reports) == 1
    rep = reports[0]
    assert rep.method == "REPORT" and rep.message_id == "m1"
    assert rep.to_path == [PEER] and rep.from_path == [s.local_uri]
    assert rep.headers.get("Status").startswith("000 200")
    br = rep.byte_range
    assert (br.start, br.end, br.total) == (1, 6, 6)
    assert [m.body for m in got] == [b"abcdef"]


def test_chunks_out_of_order_reassemble(host):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, body=b"world", byte_range="7-11/11"))
    w.core.data_received(send_frame(s.local_uri, body=b"hello ", byte_range="1-6/11",
                                    flag="+"))
    assert [m.body for m in got] == [b"hello world"]
    assert host.clock.getDelayedCalls() == []


def test_message_beyond_size_bound_gets_413():
    h = Host(SessionSettings(max_message_size=100))
    s = h.session()
    w = Wire(h)
    w.core.data_received(send_frame(s.local_uri, body=b"x" * 50, byte_range="1-50/500",
                                    flag="+"))
    assert [r.status for r in w.responses()] == [413]


def test_incomplete_message_times_out_and_is_reported(host):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri, body=b"abc", byte_range="1-3/6", flag="+"))
    w.take()
    host.clock.advance(host.settings.reassembly_timeout)
    [rep] = w.take()
    assert rep.method == "REPORT" and rep.headers.get("Status").startswith("000 408")
    assert got == [] and host.clock.getDelayedCalls() == []


def test_incoming_message_report_failure_sends_failure_report(host):
    s = host.session()
    got = []
    s.on_message = got.append
    w = Wire(host)
    w.core.data_received(send_frame(s.local_uri))
    w.take()
    assert got[0].report_failure(404, "Not Found") is True
    [rep] = w.take()
    assert rep.method == "REPORT" and rep.headers.get("Status") == "000 404 Not Found"


def test_malformed_request_gets_400_and_connection_survives(host):
    s = host.session()
    w = Wire(host)
    bad = b"MSRP bad1 SEND\r\nTo-Path: " + s.local_uri.encode() + \
        b"\r\nByte-Range: nonsense\r\nFrom-Path: " + PEER.encode() + \
        b"\r\nMessage-ID: x\r\n-------bad1$\r\n"
    w.core.data_received(send_frame(s.local_uri, tid="first") + bad +
                         send_frame(s.local_uri, tid="good", mid="m2"))
    assert [(r.transaction_id, r.status) for r in w.responses()] == [
        ("first", 200), ("bad1", 400), ("good", 200)]
    assert w.closed == 0


# ---- sending ---------------------------------------------------------------------------------

def bound_session(host: Host) -> tuple[MSRPSession, Wire]:
    s = host.session()
    w = Wire(host)
    s.bind(w.core)
    return s, w


def reply(w: Wire, req: MSRPRequest, status: int) -> None:
    w.core.data_received(
        f"MSRP {req.transaction_id} {status} X\r\nTo-Path: {req.from_path[0]}\r\n"
        f"From-Path: {req.to_path[0]}\r\n-------{req.transaction_id}$\r\n".encode())


def test_send_fires_with_200_on_response(host):
    s, w = bound_session(host)
    d = s.send("text/plain", b"hi")
    [req] = w.take()
    assert req.method == "SEND" and req.body == b"hi" and req.content_type == "text/plain"
    assert req.to_path == [PEER] and req.from_path == [s.local_uri]
    assert not d.called
    reply(w, req, 200)
    assert d.result == 200
    assert host.clock.getDelayedCalls() == []


def test_send_times_out_with_408_after_response_timeout(host):
    s, w = bound_session(host)
    d = s.send("text/plain", b"hi")
    errors = []
    d.addErrback(errors.append)
    host.clock.advance(29.9)
    assert errors == []
    host.clock.advance(0.2)
    assert errors[0].value.code == 408


def test_send_failure_reports_peer_status(host):
    s, w = bound_session(host)
    d = s.send("text/plain", b"hi")
    errors = []
    d.addErrback(errors.append)
    [req] = w.take()
    reply(w, req, 415)
    assert isinstance(errors[0].value, MSRPSendError) and errors[0].value.code == 415


def test_failure_report_no_fires_once_written(host):
    s, w = bound_session(host)
    d = s.send("text/plain", b"hi", failure_report="no")
    [req] = w.take()
    assert req.headers.get("Failure-Report") == "no"
    assert d.result == 200 and host.clock.getDelayedCalls() == []


def test_failure_report_partial_succeeds_when_no_negative_response(host):
    s, w = bound_session(host)
    d = s.send("text/plain", b"hi", failure_report="partial")
    assert not d.called
    host.clock.advance(host.settings.response_timeout)
    assert d.result == 200


def test_large_message_is_chunked_with_byte_ranges(host):
    s, w = bound_session(host)
    body = bytes(range(256)) * 20  # 5120 bytes, chunk size 2048
    d = s.send("text/plain", body)
    reqs = w.take()
    ranges = [(r.byte_range.start, r.byte_range.end, r.byte_range.total, r.flag)
              for r in reqs]
    assert ranges == [(1, 2048, 5120, "+"), (2049, 4096, 5120, "+"), (4097, 5120, 5120, "$")]
    assert b"".join(r.body for r in reqs) == body
    assert len({r.transaction_id for r in reqs}) == 3
    assert len({r.message_id for r in reqs}) == 1
    for r in reqs[:-1]:
        reply(w, r, 200)
    assert not d.called
    reply(w, reqs[-1], 200)
    assert d.result == 200


def test_two_large_messages_interleave(host):
    s, w = bound_session(host)
    w.core.pause()
    s.send("text/plain", b"a" * 5000)
    s.send("text/plain", b"b" * 5000)
    w.core.resume()
    order = [r.body[:1] for r in w.take()]
    assert order == [b"a", b"b", b"a", b"b", b"a", b"b"]


def test_negative_response_to_a_chunk_stops_the_message(host):
    s, w = bound_session(host)
    w.core.pause()
    d = s.send("text/plain", b"z" * 6000)
    errors = []
    d.addErrback(errors.append)
    w.core.resume()
    reqs = w.take()
    reply(w, reqs[0], 413)
    assert errors[0].value.code == 413
    assert host.clock.getDelayedCalls() == []


def test_send_queue_bound_refuses_with_clear_error():
    h = Host(SessionSettings(max_queued_messages=1))
    s, w = bound_session(h)
    w.core.pause()
    s.send("text/plain", b"1")
    errors = []
    s.send("text/plain", b"2").addErrback(errors.append)
    assert errors[0].value.code == 503 and "queue full" in errors[0].value.comment


def test_send_on_unbound_session_fails(host):
    s = host.session()
    errors = []
    s.send("text/plain", b"x").addErrback(errors.append)
    assert errors[0].value.code == 503


def test_connection_loss_fails_pending_and_tells_each_session_once(host):
    s1, w = bound_session(host)
    s2 = host.session(remote=("msrp://10.0.0.3:1/p2;tcp",))
    s2.bind(w.core)
    closed: list[tuple[str, str]] = []
    s1.on_closed = lambda why: closed.append(("s1", why))
    s2.on_closed = lambda why: closed.append(("s2", why))
    errors = []
    s1.send("text/plain", b"q" * 5000).addErrback(errors.append)
    w.core.connection_lost("reset by peer")
    w.core.connection_lost("again")
    assert sorted(c[0] for c in closed) == ["s1", "s2"]
    assert errors[0].value.code == 503
    assert host.clock.getDelayedCalls() == []
    assert len(host.table) == 0


def test_idle_connection_closes_after_idle_timeout(host):
    s, w = bound_session(host)
    host.clock.advance(host.settings.idle_timeout * 2)
    assert w.closed == 0
    s.close()
    host.clock.advance(host.settings.idle_timeout)
    assert w.closed == 1 and w.idle == 1


def test_connect_sends_binding_send_and_fires_on_200(host):
    s = host.session()
    w = Wire(host)
    host.link = w.core
    fired = []
    s.connect().addCallback(fired.append)
    [req] = w.take()
    assert req.method == "SEND" and req.body == b""
    assert fired == []
    reply(w, req, 200)
    assert fired == [None]


def test_inflight_window_bounds_transactions_and_failure_frees_it():
    h = Host(SessionSettings(max_inflight=2))
    s, w = bound_session(h)
    d1 = s.send("text/plain", b"1" * 5000)  # 3 chunks, only 2 may be in flight
    errors = []
    d1.addErrback(errors.append)
    first = w.take()
    assert len(first) == 2
    reply(w, first[0], 200)
    [third] = w.take()
    assert third.byte_range.start == 4097
    reply(w, first[1], 500)  # the message fails: its last chunk's slot is freed too
    assert errors[0].value.code == 500
    d2 = s.send("text/plain", b"next")
    [nxt] = w.take()
    reply(w, nxt, 200)
    assert d2.result == 200
    assert h.clock.getDelayedCalls() == []


def test_malformed_first_request_is_answered_400_from_its_own_paths(host):
    s = host.session()
    w = Wire(host)
    bad = (b"MSRP bad2 SEND\r\nTo-Path: " + s.local_uri.encode() +
           b"\r\nFrom-Path: " + PEER.encode() + b"\r\nMessage-ID: x\r\n"
           b"Byte-Range: 9-1/0\r\n-------bad2$\r\n")
    w.core.data_received(bad)
    [resp] = w.responses()
    assert (resp.transaction_id, resp.status) == ("bad2", 400)
    assert resp.to_path == [PEER] and resp.from_path == [s.local_uri]


def test_lost_framing_closes_the_connection(host):
    w = Wire(host)
    w.core.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert w.closed == 1


def test_frame_that_never_ends_closes_the_connection_after_frame_timeout(host):
    s, w = bound_session(host)
    w.core.data_received(b"MSRP slow1 SEND\r\nTo-Path: " + s.local_uri.encode())
    host.clock.advance(host.settings.frame_timeout - 1)
    assert w.closed == 0
    host.clock.advance(1)
    assert w.closed == 1


def test_closing_a_session_fails_its_sends_and_leaves_no_timers(host):
    s, w = bound_session(host)
    errors = []
    s.send("text/plain", b"pending").addErrback(errors.append)
    s.close()
    assert errors[0].value.code == 503
    assert [c for c in host.clock.getDelayedCalls()
            if c.func.__name__ != "_idle"] == []
    w.core.data_received(send_frame(s.local_uri))
    assert [r.status for r in w.responses()] == [481]


def test_session_table_is_bounded():
    from msrp_gateway.msrp.session import SessionError
    h = Host(SessionSettings(max_sessions=2))
    h.session()
    h.session()
    with pytest.raises(SessionError) as info:
        h.session()
    assert info.value.code == 503


def test_unsendable_content_type_fails_that_message_only(host):
    s, w = bound_session(host)
    errors = []
    s.send("not a media type", b"x").addErrback(errors.append)
    assert errors[0].value.code == 400 and "cannot send" in errors[0].value.comment
    d = s.send("text/plain", b"fine")
    [req] = w.take()
    reply(w, req, 200)
    assert d.result == 200


def test_timed_out_message_is_aborted_with_hash_chunk():
    h = Host(SessionSettings(max_inflight=1))
    s, w = bound_session(h)
    errors = []
    s.send("text/plain", b"q" * 5000).addErrback(errors.append)
    [first] = w.take()
    h.clock.advance(h.settings.response_timeout)
    assert errors[0].value.code == 408
    [abort] = w.take()
    assert abort.flag == "#" and abort.body == b""
    assert abort.message_id == first.message_id
    assert abort.byte_range.start == 2049
    assert h.clock.getDelayedCalls() == []


def test_413_stops_sending_without_abort_chunk():
    h = Host(SessionSettings(max_inflight=1))
    s, w = bound_session(h)
    s.send("text/plain", b"q" * 5000).addErrback(lambda f: None)
    [first] = w.take()
    reply(w, first, 413)
    assert w.take() == []


from hypothesis import given  # noqa: E402
from hypothesis import settings as hsettings
from hypothesis import strategies as st


@hsettings(max_examples=60, deadline=None)
@given(body=st.binary(min_size=1, max_size=9000), chunk=st.integers(1, 3000),
       order=st.randoms(use_true_random=False), cut=st.integers(1, 700))
def test_any_chunk_order_and_byte_split_delivers_the_message_once(body, chunk, order, cut):
    h = Host()
    s = h.session()
    got = []
    s.on_message = got.append
    w = Wire(h)
    frames = []
    n = len(body)
    for i, start in enumerate(range(0, n, chunk)):
        piece = body[start:start + chunk]
        end = start + len(piece)
        frames.append(send_frame(s.local_uri, body=piece, tid=f"tid{i:05d}",
                                 byte_range=f"{start + 1}-{end}/{n}",
                                 flag="$" if end == n else "+"))
    order.shuffle(frames)
    stream = b"".join(frames)
    for off in range(0, len(stream), cut):
        w.core.data_received(stream[off:off + cut])
    assert [m.body for m in got] == [body]
    assert sorted(r.status for r in w.responses()) == [200] * len(frames)
    assert h.clock.getDelayedCalls() == [] or all(
        c.func.__name__ == "_idle" for c in h.clock.getDelayedCalls())


def test_peer_that_never_reads_is_cut_off_at_unsent_bound():
    h = Host(SessionSettings(max_unsent_bytes=2000))
    s = h.session()
    w = Wire(h)
    w.core.data_received(send_frame(s.local_uri, mid="m0"))
    w.core.pause()  # our socket is full: the peer is not reading
    for i in range(1, 40):
        w.core.data_received(send_frame(s.local_uri, mid=f"m{i}"))
    assert w.closed == 1
    assert len(w.responses()) < 40


# ---- broken requests whose paths cannot be echoed ----------------------------------------

OURS = "msrp://10.0.0.1:2855;tcp"


def broken(to: bytes, frm: bytes, tid: bytes = b"bad7") -> bytes:
    return (b"MSRP " + tid + b" SEND\r\nTo-Path: " + to + b"\r\nFrom-Path: " + frm +
            b"\r\nMessage-ID: x\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\n"
            b"hi\r\n-------" + tid + b"$\r\n")


def test_garbage_to_path_gets_400_from_our_own_uri_to_the_senders_from_path(host):
    w = Wire(host, own_uri=OURS)
    w.core.data_received(broken(b"not a uri at all", PEER.encode()))
    [resp] = w.responses()
    assert (resp.transaction_id, resp.status) == ("bad7", 400)
    assert resp.to_path == [PEER] and resp.from_path == [OURS]
    assert w.closed == 0 and w.core.counters.unanswerable == 0


def test_garbage_to_path_is_answered_even_after_good_requests_on_the_link(host):
    s = host.session()
    w = Wire(host, own_uri=OURS)
    w.core.data_received(send_frame(s.local_uri, tid="ok01") +
                         broken(b"msrp://[bad", PEER.encode()) +
                         send_frame(s.local_uri, tid="ok02", mid="m2"))
    got = [(r.transaction_id, r.status, r.from_path) for r in w.responses()]
    assert got == [("ok01", 200, [s.local_uri]), ("bad7", 400, [OURS]),
                   ("ok02", 200, [s.local_uri])]


def test_garbage_from_path_is_counted_not_answered_and_the_link_survives(host):
    s = host.session()
    w = Wire(host, own_uri=OURS)
    w.core.data_received(broken(s.local_uri.encode(), b"garbage") +
                         broken(b"junk", b"junk", b"bad8"))
    assert w.responses() == [] and w.core.counters.unanswerable == 2
    w.core.data_received(send_frame(s.local_uri, tid="ok03"))
    assert [(r.transaction_id, r.status) for r in w.responses()] == [("ok03", 200)]
    assert w.closed == 0


# ---- the stack-wide reassembly budget ----------------------------------------------------

def test_chunk_beyond_the_stack_reassembly_budget_gets_413_other_sessions_unharmed():
    from msrp_gateway.msrp.chunks import ReassemblyBudget
    h = Host()
    h.reassembly_budget = ReassemblyBudget(100)
    a, b = h.session(), h.session()
    w = Wire(h)
    got: list[Any] = []
    a.on_message = b.on_message = got.append
    w.core.data_received(send_frame(a.local_uri, body=b"a" * 70, mid="ma",
                                    byte_range="1-70/80", flag="+", tid="ta1"))
    w.core.data_received(send_frame(b.local_uri, body=b"b" * 40, mid="mb",
                                    byte_range="1-40/80", flag="+", tid="tb1"))
    assert [(r.transaction_id, r.status) for r in w.responses()] == [("ta1", 200), ("tb1", 413)]
    w.core.data_received(send_frame(b.local_uri, body=b"b" * 40, mid="mb",
                                    byte_range="41-80/80", tid="tb2"))
    w.core.data_received(send_frame(a.local_uri, body=b"a" * 10, mid="ma",
                                    byte_range="71-80/80", tid="ta2"))
    assert [(r.transaction_id, r.status) for r in w.responses()] == [("tb2", 413), ("ta2", 200)]
    assert [m.body for m in got] == [b"a" * 80]
    assert h.reassembly_budget.used == 0
