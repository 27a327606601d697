"""[msrp_gateway] delivery = "end_to_end" on task.Clock against the fake UA and SIP sender:
MESSAGE answers that follow the MSRP outcome, bounded by delivery_timeout, and SEND
REPORTs that follow the MESSAGE's answer; "hop" stays as it was."""

from __future__ import annotations

import pytest
from twisted.internet import task

from msrp_gateway import config
from msrp_gateway.gateway import (
    ERR_LIMIT,
    OK,
    PENDING,
    SETUP_FAILED_EVENT,
    Gateway,
    GatewaySettings,
    msrp_failure_status,
    setup_failure_status,
)
from msrp_gateway.routing import RequestView, Router
from msrp_gateway.testing import (
    FakeIncomingMessage,
    FakeOwnerReportedMessage,
    FakeSendError,
    FakeSIPSender,
    FakeUA,
)
from tests.unit.test_gateway import ALICE, BOB, KEY
from tests.unit.test_gateway import request as gateway_request

TIMEOUT = 20.0


def request(body: bytes = b"hello", cseq: int = 1, method: str = "MESSAGE") -> RequestView:
    """A MESSAGE (or `method`) from ALICE to BOB, as test_gateway.py builds them."""
    return gateway_request(method, body=body, cseq=cseq)


def final(req: RequestView) -> tuple[int, str | None, dict[str, str]] | None:
    """The one final answer (status, reason, headers); None while it waits."""
    finals = [(c, r, dict(kw.get("headers", ()))) for c, r, kw in req.transaction.responses
              if c >= 200]
    assert len(finals) <= 1, f"answered more than once: {req.transaction.responses}"
    return finals[0] if finals else None


def status(req: RequestView) -> int | None:
    answer = final(req)
    return answer[0] if answer else None


class Harness:
    def __init__(self, delivery: str = "end_to_end", **settings: object) -> None:
        self.clock = task.Clock()
        self.ua = FakeUA()
        self.sip = FakeSIPSender()
        self.events: list[tuple[str, dict]] = []
        conf = {"delivery": delivery, "delivery_timeout": TIMEOUT, **settings}
        self.gw = Gateway(self.clock, self.ua, self.sip, conf,
                          lambda name, params: self.events.append((name, params)))

    def open_established(self) -> str:
        """A session whose first MESSAGE went through; returns the UA session id."""
        req = request(b"first", 100)
        self.gw.msg_to_msrp(req, KEY, "text/plain")
        sid = self.ua.last().session_id
        self.ua.establish(sid)
        self.ua.sent[-1][3].callback(200)
        assert status(req) == 200
        return sid

    def fire(self, index: int, outcome: int) -> None:
        """Play the MSRP outcome of the index-th SEND: 200, or a failure with that code."""
        d = self.ua.sent[index][3]
        if outcome == 200:
            d.callback(200)
        else:
            d.errback(FakeSendError(outcome, "peer said no"))

    def timers(self) -> list:
        return self.clock.getDelayedCalls()


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- the switch ---------------------------------------------------------------------------


def test_hop_is_the_default_and_answers_202_at_once_with_no_timer() -> None:
    h = Harness(delivery="hop")
    assert Gateway(task.Clock(), FakeUA(), FakeSIPSender()).settings.end_to_end is False
    assert h.gw.settings.end_to_end is False
    req = request()
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
    assert status(req) == 202 and req.owned is False
    h.ua.establish(h.ua.last().session_id)
    req2 = request(b"two", 2)
    assert h.gw.msg_to_msrp(req2, KEY, "text/plain") == OK
    assert status(req2) == 202
    assert h.timers() == []


def test_settings_come_from_the_config_section() -> None:
    s = config.from_dict({"msrp_gateway": {"delivery": "end_to_end", "delivery_timeout": 10}})
    gw = Gateway(task.Clock(), FakeUA(), FakeSIPSender(), s.msrp_gateway)
    assert (gw.settings.end_to_end, gw.settings.delivery_timeout) == (True, 10.0)
    whole = Gateway(task.Clock(), FakeUA(), FakeSIPSender(), s)  # a Settings: section read
    assert whole.settings.end_to_end is True


def test_the_service_hands_the_switch_to_the_gateway() -> None:
    from twisted.internet.testing import MemoryReactorClock

    from msrp_gateway.service import build_service

    root = build_service(config.from_dict(
        {"msrp_gateway": {"delivery": "end_to_end", "delivery_timeout": 12}}),
        MemoryReactorClock())
    assert (root.gateway.settings.end_to_end,
            root.gateway.settings.delivery_timeout) == (True, 12.0)
    assert build_service(config.from_dict({}), MemoryReactorClock()
                         ).gateway.settings.end_to_end is False


@pytest.mark.parametrize("settings,word", [
    ({"delivery": "e2e"}, "msrp_gateway.delivery"),
    ({"delivery": "end_to_end", "delivery_timeout": 31}, "msrp_gateway.delivery_timeout"),
    ({"delivery_timeout": 0}, "msrp_gateway.delivery_timeout"),
    ({"delivery_timeout": "5"}, "msrp_gateway.delivery_timeout"),
])
def test_bad_settings_are_refused_naming_the_key(settings: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        GatewaySettings.from_any(settings)


# -- page -> session on an established session --------------------------------------------


def test_message_waits_for_the_send_and_gets_200_when_the_peer_takes_it(h: Harness) -> None:
    h.open_established()
    req = request(b"two", 2)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == PENDING
    assert req.owned is True and status(req) is None
    assert h.ua.sent[-1][2] == b"two"
    h.clock.advance(TIMEOUT - 1)
    assert status(req) is None  # still waiting: no 202, nothing yet
    h.fire(-1, 200)
    assert final(req)[:2] == (200, "OK")
    assert h.timers() == []  # the bound's timer went with the answer


@pytest.mark.parametrize("msrp,sip", [
    (403, 403), (408, 408), (413, 413), (415, 415), (481, 480), (503, 503),
    (400, 502), (501, 502), (506, 502),
])
def test_send_failure_answers_the_mapped_sip_status(h: Harness, msrp: int, sip: int) -> None:
    h.open_established()
    req = request(b"two", 2)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == PENDING
    h.fire(-1, msrp)
    code, _, headers = final(req)
    assert code == sip
    if sip == 503:
        assert headers.get("Retry-After") == "5"
    if sip == 415:
        assert headers.get("Accept") == "text/plain"
    assert h.timers() == []
    assert h.gw.session(KEY) is not None  # a refused message does not end the session


def test_send_refused_on_the_spot_is_answered_at_once_as_in_hop_mode(h: Harness) -> None:
    sid = h.open_established()
    h.ua.by_id[sid].ended = True  # the UA fails the next send() before it returns
    req = request(b"two", 2)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_LIMIT
    code, _, headers = final(req)
    assert code == 503 and headers["Retry-After"] == "5"
    assert h.timers() == []


def test_no_outcome_within_the_bound_answers_504_once(h: Harness) -> None:
    h.open_established()
    req = request(b"two", 2)
    h.gw.msg_to_msrp(req, KEY, "text/plain")
    h.clock.advance(TIMEOUT - 0.01)
    assert status(req) is None
    h.clock.advance(0.01)
    assert final(req)[:2] == (504, "Server Time-out")
    h.fire(-1, 200)  # the late 200 answers nothing more (final() checks once)
    assert status(req) == 504
    assert h.timers() == []


def test_default_bound_is_below_timer_f_and_the_stack_guard() -> None:
    gw = Gateway(task.Clock(), FakeUA(), FakeSIPSender(), {"delivery": "end_to_end"})
    from msrp_gateway.sip.uas import TU_GUARD_NON_INVITE

    assert gw.settings.delivery_timeout == 25.0 < TU_GUARD_NON_INVITE  # = 64*T1 with T1 = 0.5


# -- page -> session while the session is set up ------------------------------------------


def test_queued_messages_wait_for_set_up_then_for_their_own_send(h: Harness) -> None:
    reqs = [request(text, i) for i, text in enumerate([b"one", b"two", b"three"], 1)]
    assert [h.gw.msg_to_msrp(r, KEY, "text/plain") for r in reqs] == [PENDING] * 3
    assert len(h.ua.by_id) == 1 and h.ua.sent == []
    assert [status(r) for r in reqs] == [None] * 3
    h.ua.establish(h.ua.last().session_id)
    assert [body for _, _, body, _ in h.ua.sent] == [b"one", b"two", b"three"]
    h.fire(1, 415)
    h.fire(0, 200)
    assert [status(r) for r in reqs] == [200, 415, None]
    h.fire(2, 200)
    assert [status(r) for r in reqs] == [200, 415, 200]
    assert h.timers() == []


def test_queued_message_still_unsent_at_the_bound_gets_408_and_is_never_sent(
        h: Harness) -> None:
    first = request(b"one", 1)
    h.gw.msg_to_msrp(first, KEY, "text/plain")
    h.clock.advance(TIMEOUT / 2)
    second = request(b"two", 2)
    h.gw.msg_to_msrp(second, KEY, "text/plain")
    h.clock.advance(TIMEOUT / 2)
    assert final(first)[:2] == (408, "Request Timeout") and status(second) is None
    assert h.gw.list_sessions()[0]["queued"] == 1
    h.ua.establish(h.ua.last().session_id)
    assert [body for _, _, body, _ in h.ua.sent] == [b"two"]  # the dropped one never goes
    h.fire(0, 200)
    assert status(second) == 200
    assert h.timers() == []


def test_sent_after_set_up_but_unanswered_at_the_bound_gets_504(h: Harness) -> None:
    req = request()
    h.gw.msg_to_msrp(req, KEY, "text/plain")
    h.clock.advance(TIMEOUT / 2)
    h.ua.establish(h.ua.last().session_id)
    h.clock.advance(TIMEOUT / 2)
    assert status(req) == 504  # it was sent: delivery unknown, not "dropped"


@pytest.mark.parametrize("invite,sip", [
    (486, 486), (404, 404), (603, 603), (503, 503), (None, 408), (408, 408), (488, 415),
    (606, 415), (302, 480), (487, 480), (407, 403), (500, 502), (420, 480),
])
def test_set_up_failure_answers_every_queued_message_and_still_raises_the_event(
        h: Harness, invite: int | None, sip: int) -> None:
    reqs = [request(b"one", 1), request(b"two", 2)]
    for r in reqs:
        h.gw.msg_to_msrp(r, KEY, "text/plain")
    h.ua.fail(h.ua.last().session_id, invite, None if invite is None else "Whatever")
    assert [status(r) for r in reqs] == [sip, sip]
    [(name, params)] = h.events
    assert name == SETUP_FAILED_EVENT
    assert (params["key"], params["code"]) == (KEY, invite)
    assert h.gw.session(KEY) is None
    assert h.timers() == []


def test_set_up_failure_passes_the_invite_reason_when_the_status_is_kept(h: Harness) -> None:
    req = request()
    h.gw.msg_to_msrp(req, KEY, "text/plain")
    h.ua.fail(h.ua.last().session_id, 486, "Busy Here")
    assert final(req)[:2] == (486, "Busy Here")


def test_session_ended_before_the_queue_went_out_answers_480(h: Harness) -> None:
    req = request()
    h.gw.msg_to_msrp(req, KEY, "text/plain")
    h.ua.terminate(h.ua.last().session_id, "BYE during set-up")
    assert final(req)[:2] == (480, "Temporarily Unavailable")
    assert h.timers() == []


def test_mi_end_during_set_up_answers_480_and_a_sent_one_still_gets_its_bound(
        h: Harness) -> None:
    queued = request()
    h.gw.msg_to_msrp(queued, KEY, "text/plain")
    h.gw.end_session(KEY)
    assert status(queued) == 480
    h.open_established()
    sent = request(b"two", 2)
    h.gw.msg_to_msrp(sent, KEY, "text/plain")
    h.gw.end_session(KEY)  # the fake UA never fails the SEND: only the bound answers
    assert status(sent) is None
    h.clock.advance(TIMEOUT)
    assert status(sent) == 504
    assert h.timers() == []


def test_a_script_that_answers_itself_is_not_answered_twice(h: Harness) -> None:
    h.open_established()
    req = request(b"two", 2)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == PENDING
    req.reply(202, "Accepted")  # a hop-mode habit in a script
    h.fire(-1, 200)
    assert status(req) == 202  # final() fails on a second final answer
    assert h.timers() == []


def test_queue_bound_still_answers_503_at_once(h: Harness) -> None:
    h2 = Harness(max_queued_messages=1)
    first, second = request(b"one", 1), request(b"two", 2)
    assert h2.gw.msg_to_msrp(first, KEY, "text/plain") == PENDING
    assert h2.gw.msg_to_msrp(second, KEY, "text/plain") == ERR_LIMIT
    assert status(second) == 503 and status(first) is None


def test_stop_answers_every_waiting_message_503_and_leaves_no_timer(h: Harness) -> None:
    h.open_established()
    sent = request(b"two", 2)
    h.gw.msg_to_msrp(sent, KEY, "text/plain")
    queued = request(b"x", 3)
    h.gw.msg_to_msrp(queued, "other-key", "text/plain")
    done = h.gw.stop()
    assert status(sent) == 503 and status(queued) == 503
    h.clock.advance(h.gw.settings.stop_timeout)
    assert done.called
    assert h.timers() == []


def test_default_route_leaves_the_waiting_message_to_the_gateway() -> None:
    """The router answers 500 for a route that returns unanswered, unless the gateway
    owns the request: end_to_end must not get that 500."""
    h = Harness()
    router = Router(h.gw, trusted=["127.0.0.0/8"])
    txn = request().transaction
    router(txn)
    assert txn.responses == []
    h.ua.establish(h.ua.last().session_id)
    h.fire(0, 200)
    assert [c for c, _, _ in txn.responses] == [200]


def test_pending_is_a_success_for_scripts_that_test_the_sign() -> None:
    assert PENDING > 0 and PENDING != OK


# -- session -> page ----------------------------------------------------------------------


def incoming_session(h: Harness) -> str:
    h.gw.msrp_gw_answer(request(b"v=0", method="INVITE"), "k", "text/plain", BOB, ALICE,
                        ALICE)
    sid = h.ua.last().session_id
    h.ua.establish(sid)
    return sid


@pytest.mark.parametrize("answer", [200, 202])
def test_success_report_waits_for_the_message_2xx(h: Harness, answer: int) -> None:
    sid = incoming_session(h)
    msg = FakeOwnerReportedMessage("text/plain", b"hi", success_report="yes")
    h.ua.deliver(sid, msg)
    assert len(h.sip.sent) == 1 and msg.successes == 0  # not before the MESSAGE's answer
    h.sip.answer(0, answer)
    assert msg.successes == 1 and msg.reports == []


def test_message_failure_gives_a_failure_report_and_no_success_report(h: Harness) -> None:
    sid = incoming_session(h)
    msg = FakeOwnerReportedMessage("text/plain", b"hi", success_report="yes")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 486)
    assert msg.successes == 0
    assert [code for code, _ in msg.reports] == [400]
    assert "486" in msg.reports[0][1]


def test_message_timeout_gives_a_408_failure_report(h: Harness) -> None:
    sid = incoming_session(h)
    msg = FakeOwnerReportedMessage("text/plain", b"hi", success_report="yes")
    h.ua.deliver(sid, msg)
    h.sip.time_out(0)
    assert msg.successes == 0 and [code for code, _ in msg.reports] == [408]


def test_no_success_report_unless_asked(h: Harness) -> None:
    sid = incoming_session(h)
    msg = FakeOwnerReportedMessage("text/plain", b"hi", success_report="no")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 200)
    assert msg.successes == 0 and msg.reports == []


def test_hop_mode_leaves_success_reports_to_the_msrp_layer() -> None:
    h = Harness(delivery="hop")
    sid = incoming_session(h)
    msg = FakeOwnerReportedMessage("text/plain", b"hi", success_report="yes")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 200)
    assert msg.successes == 0


def test_a_message_without_report_success_is_left_alone(h: Harness) -> None:
    """An MSRP layer that reported hop by hop already offers no report_success: nothing
    more is sent (no second REPORT) and nothing breaks."""
    sid = incoming_session(h)
    msg = FakeIncomingMessage("text/plain", b"hi", success_report="yes")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 200)
    assert msg.reports == []


# -- the tables ---------------------------------------------------------------------------


def test_status_tables() -> None:
    assert [msrp_failure_status(c) for c in (403, 408, 413, 415, 481, 503, 400, None)] == [
        403, 408, 413, 415, 480, 503, 502, 502]
    assert setup_failure_status(None, None) == (408, "Request Timeout")
    assert setup_failure_status(486, "Busy Here") == (486, "Busy Here")
    assert setup_failure_status(486, None) == (486, "Busy Here")
    assert setup_failure_status(699, "x")[0] == 480
