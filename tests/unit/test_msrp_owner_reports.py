"""Success REPORTs left to the session's owner (`SessionSettings.owner_success_reports`).

With `[msrp_gateway] delivery = "end_to_end"` a SEND's success REPORT must say the SIP
MESSAGE it became was answered 2xx, so the session holds back the hop-by-hop one it sends on
receipt and `IncomingMessage.report_success()` sends it when the owner knows. Sans-IO: a
`LinkCore` fed bytes by hand, writes parsed back into frames, time on `task.Clock`.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from msrp_gateway.msrp.message import MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import (
    IncomingMessage,
    MSRPSession,
    SessionSettings,
)
from tests.msrp_session_fakes import PEER, Host, Wire
from tests.msrp_session_fakes import send_frame as peer_frame

RELAY = "msrp://10.0.0.9:2855/hop1;tcp"


def send_frame(to: str, frm: str = PEER, body: bytes = b"hello", *,
               extra: tuple[str, ...] = ("Success-Report: yes",), **kw: Any) -> bytes:
    """A SEND asking for a success REPORT unless `extra` says otherwise."""
    return peer_frame(to, frm, body, extra=extra, **kw)


def owner_host() -> Host:
    return Host(SessionSettings(owner_success_reports=True))


def receive(host: Host, frames: list[bytes],
            remote: tuple[str, ...] = (PEER,)) -> tuple[MSRPSession, Wire, list[IncomingMessage],
                                                        list[Any]]:
    """Feed SEND frames to a new session; return it, its wire, the messages delivered
    and every frame written while receiving them."""
    s = host.session(remote=remote)
    got: list[IncomingMessage] = []
    s.on_message = got.append
    w = Wire(host)
    for frame in frames:
        w.core.data_received(frame.replace(b"TO_PATH", s.local_uri.encode()))
    return s, w, got, w.take()


def assert_success_report(rep: MSRPRequest, s: MSRPSession, mid: str, size: int,
                          to_path: list[str]) -> None:
    assert rep.method == "REPORT" and rep.message_id == mid
    assert rep.to_path == to_path and rep.from_path == [s.local_uri]
    br = rep.byte_range
    assert (br.start, br.end, br.total) == (1, size, size)
    assert rep.status is not None and rep.status.code == 200
    assert rep.headers.get("Status") == "000 200 OK"


# ---- with the flag: the owner reports -----------------------------------------------------

def test_with_owner_reports_receipt_gets_its_200_but_no_success_report() -> None:
    s, w, got, written = receive(owner_host(), [send_frame("TO_PATH", body=b"hi there")])
    assert [type(f) for f in written] == [MSRPResponse]
    assert written[0].status == 200
    assert [m.body for m in got] == [b"hi there"]


def test_report_success_sends_exactly_one_report_with_range_status_and_message_id() -> None:
    s, w, got, _ = receive(owner_host(), [send_frame("TO_PATH", body=b"hi there", mid="abc9")])
    assert got[0].report_success() is True
    reports = w.reports()
    assert len(reports) == 1
    assert_success_report(reports[0], s, "abc9", 8, [PEER])
    # once: a second call (the owner asked twice) sends nothing
    assert got[0].report_success() is False
    assert w.take() == []


def test_chunked_message_gets_one_report_covering_the_whole_byte_range() -> None:
    host = owner_host()
    s, w, got, written = receive(host, [
        send_frame("TO_PATH", body=b"abc", byte_range="1-3/9", flag="+"),
        send_frame("TO_PATH", body=b"def", byte_range="4-6/9", flag="+"),
        send_frame("TO_PATH", body=b"ghi", byte_range="7-9/9"),
    ])
    assert [f.status for f in written if isinstance(f, MSRPResponse)] == [200, 200, 200]
    assert [f for f in written if isinstance(f, MSRPRequest)] == []
    assert [m.body for m in got] == [b"abcdefghi"]
    assert got[0].report_success() is True
    reports = w.reports()
    assert len(reports) == 1
    assert_success_report(reports[0], s, "m1", 9, [PEER])


def test_report_goes_to_the_sends_from_path_through_its_relay() -> None:
    s, w, got, _ = receive(owner_host(), [send_frame("TO_PATH", frm=f"{RELAY} {PEER}")],
                           remote=(RELAY, PEER))
    assert got[0].report_success() is True
    [rep] = w.reports()
    assert rep.to_path == [RELAY, PEER]


@pytest.mark.parametrize("extra", [(), ("Success-Report: no",)], ids=["absent", "no"])
def test_report_success_sends_nothing_when_the_sender_did_not_ask(extra: tuple[str, ...]) -> None:
    s, w, got, written = receive(owner_host(), [send_frame("TO_PATH", extra=extra)])
    assert [type(f) for f in written] == [MSRPResponse]
    assert got[0].report_success() is False
    assert w.take() == []


def test_no_success_report_after_a_failure_report() -> None:
    s, w, got, _ = receive(owner_host(), [send_frame("TO_PATH", mid="f1")])
    assert got[0].report_failure(403, "MESSAGE answered 486 Busy Here") is True
    [rep] = w.reports()
    assert rep.message_id == "f1" and rep.headers.get("Status") == \
        "000 403 MESSAGE answered 486 Busy Here"
    assert got[0].report_success() is False
    assert w.take() == []


def test_failure_report_no_still_allows_the_success_report() -> None:
    s, w, got, _ = receive(owner_host(), [send_frame(
        "TO_PATH", extra=("Success-Report: yes", "Failure-Report: no"))])
    assert got[0].report_failure(480) is False
    assert got[0].report_success() is True
    assert len(w.reports()) == 1


def test_report_success_after_the_session_closed_sends_nothing() -> None:
    s, w, got, _ = receive(owner_host(), [send_frame("TO_PATH")])
    s.close()
    assert got[0].report_success() is False
    assert w.reports() == []


def test_incomplete_message_still_gets_its_408_failure_report_with_the_flag() -> None:
    host = owner_host()
    s, w, got, _ = receive(host, [send_frame("TO_PATH", body=b"abc", byte_range="1-3/6",
                                             flag="+")])
    host.clock.advance(host.settings.reassembly_timeout + 1)
    [rep] = w.reports()
    assert rep.headers.get("Status", "").startswith("000 408")
    assert got == []


def test_messages_never_reported_leave_nothing_behind() -> None:
    """The MESSAGE failed and the owner drops the message without a REPORT: no timer, and
    nothing in the session or connection keeps the message (or its body) alive."""
    host = owner_host()
    s = host.session()
    refs: list[weakref.ref[IncomingMessage]] = []
    s.on_message = lambda m: refs.append(weakref.ref(m))
    w = Wire(host)
    for i in range(50):
        w.core.data_received(send_frame(s.local_uri, body=b"x" * 100, mid=f"n{i}"))
    gc.collect()
    assert len(refs) == 50
    assert [r() for r in refs] == [None] * 50
    assert host.clock.getDelayedCalls() == []
    assert [f for f in w.take() if isinstance(f, MSRPRequest)] == []


# ---- without the flag: unchanged -----------------------------------------------------------

def test_without_the_flag_the_session_reports_on_receipt_and_report_success_does_not() -> None:
    host = Host(SessionSettings())
    s, w, got, written = receive(host, [
        send_frame("TO_PATH", body=b"abc", byte_range="1-3/6", flag="+"),
        send_frame("TO_PATH", body=b"def", byte_range="4-6/6"),
    ])
    reports = [f for f in written if isinstance(f, MSRPRequest)]
    assert len(reports) == 1
    assert_success_report(reports[0], s, "m1", 6, [PEER])
    assert got[0].report_success() is False
    assert w.take() == []


def test_default_settings_keep_hop_by_hop_reports() -> None:
    assert SessionSettings().owner_success_reports is False


# ---- wiring ----------------------------------------------------------------------------------

@pytest.mark.parametrize("delivery,expected", [("end_to_end", True), ("hop", False)])
def test_the_service_leaves_success_reports_to_the_gateway_only_end_to_end(
        delivery: str, expected: bool) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from msrp_gateway import config
    from msrp_gateway.service import build_service

    root = build_service(config.from_dict({"msrp_gateway": {"delivery": delivery}}),
                         MemoryReactorClock())
    assert root.msrp.settings.owner_success_reports is expected
