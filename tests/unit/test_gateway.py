"""The gateway core on task.Clock against the fake UA and the fake SIP sender."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher

from msrp_gateway.gateway import (
    ERR_DUPLICATE,
    ERR_LIMIT,
    ERR_PARAMS,
    ERR_UA,
    OK,
    SETUP_FAILED_EVENT,
    EndSessionFailed,
    Gateway,
    GatewaySettings,
    SessionNotFound,
    parse_content_types,
    type_accepted,
)
from msrp_gateway.registry import DuplicateKey, GatewaySession, Origin, Registry, RegistryFull
from msrp_gateway.routing import RequestView
from msrp_gateway.sip.message import Headers, SIPRequest
from msrp_gateway.testing import (
    FakeIncomingMessage,
    FakePeer,
    FakeServerTransaction,
    FakeSIPSender,
    FakeUA,
)

ALICE = "sip:alice@example.net"  # page-mode user
BOB = "sip:bob@example.com"  # MSRP-side user
KEY = f"{BOB}-{ALICE}"
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def request(method: str = "MESSAGE", *, ruri: str = BOB, frm: str = f"<{ALICE}>;tag=a1",
            to: str = f"<{BOB}>", body: bytes = b"hello", ctype: str | None = "text/plain",
            cseq: int = 1) -> RequestView:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}x{method}")
    h.add("From", frm)
    h.add("To", to)
    h.add("Call-ID", f"call-{cseq}")
    h.add("CSeq", f"{cseq} {method}")
    h.add("Max-Forwards", "70")
    if ctype is not None:
        h.add("Content-Type", ctype)
    txn = FakeServerTransaction(SIPRequest(method, ruri, h, body), FakePeer("udp", "127.0.0.1", 5070))
    return RequestView(txn, LOOPBACK)


def status(req: RequestView) -> int | None:
    finals = [code for code, _, _ in req.transaction.responses if code >= 200]
    assert len(finals) <= 1, f"answered more than once: {req.transaction.responses}"
    return finals[0] if finals else None


def reply_headers(req: RequestView) -> dict[str, str]:
    _, _, kw = req.transaction.responses[-1]
    return dict(kw.get("headers", ()))


class Harness:
    def __init__(self, **settings: object) -> None:
        self.clock = task.Clock()
        self.ua = FakeUA()
        self.sip = FakeSIPSender()
        self.events: list[tuple[str, dict]] = []
        self.gw = Gateway(self.clock, self.ua, self.sip, GatewaySettings(**settings),
                          lambda name, params: self.events.append((name, params)))

    def sent_bodies(self) -> list[bytes]:
        return [body for _, _, body, _ in self.ua.sent]


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# -- msg_to_msrp ------------------------------------------------------------------------------


def test_first_message_opens_session_with_message_coordinates_and_gets_202(h: Harness) -> None:
    req = request(ruri="sip:bob@example.com;transport=udp")
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
    assert status(req) == 202
    uac = h.ua.last()
    assert (uac.role, uac.from_uri, uac.to_uri, uac.ruri) == (
        "uac", ALICE, BOB, "sip:bob@example.com;transport=udp")
    assert list(uac.content_types) == ["text/plain"]
    assert h.ua.sent == []  # queued until established
    [listed] = h.gw.list_sessions()
    assert list(listed)[:4] == ["key", "msg_side_to", "msg_side_ruri", "msrp_ua_session_id"]
    assert listed["key"] == KEY
    assert listed["msg_side_to"] == ALICE and listed["msg_side_ruri"] == ALICE
    assert listed["msg_side_from"] == BOB
    assert listed["msrp_ua_session_id"] == ""
    assert listed["queued"] == 1


def test_messages_queued_before_established_are_sent_in_order_then_direct(h: Harness) -> None:
    for i, text in enumerate([b"one", b"two", b"three"], 1):
        req = request(body=text, cseq=i)
        assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
        assert status(req) == 202
    assert len(h.ua.by_id) == 1  # one session, one INVITE
    sid = h.ua.last().session_id
    h.ua.establish(sid)
    assert h.sent_bodies() == [b"one", b"two", b"three"]
    assert all(s == sid for s, _, _, _ in h.ua.sent)
    req = request(body=b"four", cseq=4)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
    assert status(req) == 202
    assert h.sent_bodies() == [b"one", b"two", b"three", b"four"]
    assert h.gw.list_sessions()[0]["msrp_ua_session_id"] == sid


def test_send_carries_the_message_content_type(h: Harness) -> None:
    h.gw.msg_to_msrp(request(body=b"<b>x</b>", ctype="text/html; charset=utf-8"), KEY,
                     "text/plain text/html")
    h.ua.establish(h.ua.last().session_id)
    [(_, ctype, body, _)] = h.ua.sent
    assert (ctype, body) == ("text/html; charset=utf-8", b"<b>x</b>")


@pytest.mark.parametrize("kwargs,code", [
    ({"body": b""}, 400),
    ({"ctype": None}, 400),
    ({"ctype": "image/png"}, 415),
])
def test_unusable_message_gets_4xx_and_creates_nothing(h: Harness, kwargs, code) -> None:
    req = request(**kwargs)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_PARAMS
    assert status(req) == code
    assert h.gw.list_sessions() == [] and h.ua.by_id == {}


def test_unsupported_type_names_accepted_types(h: Harness) -> None:
    req = request(ctype="application/json")
    h.gw.msg_to_msrp(req, KEY, "text/plain, message/cpim")
    assert status(req) == 415
    assert reply_headers(req)["Accept"] == "text/plain, message/cpim"


def test_existing_session_checks_its_own_content_types(h: Harness) -> None:
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    req = request(ctype="text/html", cseq=2)
    # the script offers text/html now, but the session was set up for text/plain only
    assert h.gw.msg_to_msrp(req, KEY, "text/html") == ERR_PARAMS
    assert status(req) == 415


def test_wildcard_content_types_accept_matching_messages() -> None:
    assert type_accepted("text/html", ("text/*",))
    assert type_accepted("Image/PNG", ("*",))
    assert not type_accepted("image/png", ("text/*",))
    assert not type_accepted("garbage", ("*",))
    assert parse_content_types("text/plain,  text/html text/plain") == ("text/plain", "text/html")
    for bad in ("", "text", "te xt/plain;q=1", ["a/b"] * 40):
        with pytest.raises(ValueError):
            parse_content_types(bad)


def test_bad_key_or_content_types_from_the_script_is_a_500(h: Harness) -> None:
    req = request()
    assert h.gw.msg_to_msrp(req, "", "text/plain") == ERR_PARAMS
    assert status(req) == 500
    req = request(cseq=2)
    assert h.gw.msg_to_msrp(req, KEY, "not a type") == ERR_PARAMS
    assert status(req) == 500
    assert h.ua.by_id == {}


@pytest.mark.parametrize("key,types", [("", "text/plain"), ("x" * 10_001, "text/plain"),
                                       (KEY, "not a type"), (KEY, [])])
def test_answer_with_a_bad_key_or_content_types_is_a_500_and_answers_nothing_through_the_ua(
        h: Harness, key: str, types: object, logged) -> None:
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, key, types, BOB, ALICE, ALICE) == ERR_PARAMS
    assert status(invite) == 500
    assert h.ua.by_id == {} and h.gw.list_sessions() == []
    assert any(e.get("function") == "msrp_gw_answer" and e["log_level"].name == "error"
               for e in logged)


def test_queue_bound_answers_503_and_keeps_what_was_queued() -> None:
    h = Harness(max_queued_messages=2)
    replies = []
    for i in range(3):
        req = request(body=b"m%d" % i, cseq=i)
        rc = h.gw.msg_to_msrp(req, KEY, "text/plain")
        replies.append((rc, status(req)))
    assert replies == [(OK, 202), (OK, 202), (ERR_LIMIT, 503)]
    h.ua.establish(h.ua.last().session_id)
    assert h.sent_bodies() == [b"m0", b"m1"]


def test_queue_byte_bound_answers_503() -> None:
    h = Harness(max_queued_bytes=10)
    first = request(body=b"123456", cseq=1)
    second = request(body=b"123456", cseq=2)
    assert h.gw.msg_to_msrp(first, KEY, "text/plain") == OK
    assert h.gw.msg_to_msrp(second, KEY, "text/plain") == ERR_LIMIT
    assert (status(first), status(second)) == (202, 503)
    huge = request(body=b"x" * 11, cseq=3)
    assert h.gw.msg_to_msrp(huge, "other-key", "text/plain") == ERR_LIMIT
    assert status(huge) == 503
    assert [s["key"] for s in h.gw.list_sessions()] == [KEY]  # nothing half-created


def test_max_sessions_answers_503_for_new_keys_only() -> None:
    h = Harness(max_sessions=2)
    assert h.gw.msg_to_msrp(request(), "k1", "text/plain") == OK
    assert h.gw.msg_to_msrp(request(cseq=2), "k2", "text/plain") == OK
    third = request(cseq=3)
    assert h.gw.msg_to_msrp(third, "k3", "text/plain") == ERR_LIMIT
    assert status(third) == 503
    again = request(cseq=4)
    assert h.gw.msg_to_msrp(again, "k1", "text/plain") == OK
    assert status(again) == 202
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n", cseq=5)
    assert h.gw.msrp_gw_answer(invite, "k4", "text/plain", ALICE, BOB, BOB) == ERR_LIMIT
    assert status(invite) == 503
    assert len(h.ua.by_id) == 2


def test_ua_refusing_to_start_answers_the_message_and_leaves_nothing(h: Harness) -> None:
    h.ua.refuse_start = RuntimeError("no route to MSRP side")
    req = request()
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_UA
    assert status(req) == 500
    assert h.gw.list_sessions() == []


# -- set-up failure ---------------------------------------------------------------------------


def test_setup_failure_by_486_raises_event_with_message_side_params(h: Harness, logged) -> None:
    h.gw.msg_to_msrp(request(body=b"a"), KEY, "text/plain")
    h.gw.msg_to_msrp(request(body=b"b", cseq=2), KEY, "text/plain")
    h.ua.fail(h.ua.last().session_id, 486, "Busy Here")
    assert h.events == [(SETUP_FAILED_EVENT, {
        "key": KEY, "from_uri": BOB, "to_uri": ALICE, "ruri": ALICE,
        "code": 486, "reason": "Busy Here"})]
    assert list(h.events[0][1]) == ["key", "from_uri", "to_uri", "ruri", "code", "reason"]
    assert h.gw.list_sessions() == []
    dropped = [e for e in logged if e.get("n") == 2 and e.get("key") == KEY]
    assert dropped, "the count of queued bodies lost is logged with the key"


def test_setup_failure_by_timeout_has_null_code_and_reason(h: Harness) -> None:
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    h.ua.fail(h.ua.last().session_id, None, None)
    [(name, params)] = h.events
    assert name == SETUP_FAILED_EVENT
    assert params["code"] is None and params["reason"] is None


def test_event_params_are_fresh_for_every_raise(h: Harness) -> None:
    for key in ("k1", "k2"):
        h.gw.msg_to_msrp(request(), key, "text/plain")
        h.ua.fail(h.ua.last().session_id, 480, "Temporarily Unavailable")
    (_, p1), (_, p2) = h.events
    assert p1 is not p2
    p1["key"] = "changed"
    assert p2["key"] == "k2"


def test_failure_of_an_answered_session_raises_no_event(h: Harness) -> None:
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, ALICE)
    h.ua.fail(h.ua.last().session_id, None, None)
    assert h.events == [] and h.gw.list_sessions() == []


def test_new_message_after_failure_opens_a_new_session(h: Harness) -> None:
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    first = h.ua.last().session_id
    h.ua.fail(first, 486, "Busy Here")
    req = request(cseq=2)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
    assert h.ua.last().session_id != first


# -- msrp_gw_answer and SEND -> MESSAGE -------------------------------------------------------


def answered(h: Harness, ruri: str = ALICE) -> str:
    invite = request("INVITE", frm=f"<{BOB}>;tag=b1", to=f"<{ALICE}>", ruri=ALICE,
                     ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, ruri) == OK
    assert status(invite) == 200  # the UA answered it
    assert invite.owned
    sid = h.ua.last().session_id
    h.ua.establish(sid)
    return sid


def test_answered_session_turns_sends_into_messages_with_its_coordinates(h: Harness) -> None:
    sid = answered(h, ruri=" <sip:alice@10.0.0.1:5080;transport=tcp> ")
    assert h.ua.last().txn is not None
    msg = FakeIncomingMessage("text/html", b"<p>hi</p>")
    h.ua.deliver(sid, msg)
    [(out, _)] = h.sip.sent
    assert (out.method, out.from_uri, out.to_uri) == ("MESSAGE", BOB, ALICE)
    assert out.ruri == "sip:alice@10.0.0.1:5080;transport=tcp"  # <> and blanks stripped
    assert (out.content_type, out.body) == ("text/html", b"<p>hi</p>")
    h.sip.answer(0, 202, "Accepted")
    assert msg.reports == []
    [listed] = h.gw.list_sessions()
    assert listed["msg_side_ruri"] == "sip:alice@10.0.0.1:5080;transport=tcp"


def test_failed_generated_message_sends_failure_report(h: Harness, logged) -> None:
    sid = answered(h)
    msg = FakeIncomingMessage("text/plain", b"x")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 404, "Not Found")
    assert len(msg.reports) == 1 and "404" in (msg.reports[0][1] or "")
    assert any(e.get("key") == KEY and e.get("status") == 404 for e in logged)


def test_timed_out_generated_message_reports_408(h: Harness) -> None:
    sid = answered(h)
    msg = FakeIncomingMessage("text/plain", b"x", failure_report="partial")
    h.ua.deliver(sid, msg)
    h.sip.time_out(0)
    assert [code for code, _ in msg.reports] == [408]


def test_failed_message_without_failure_report_request_sends_none(h: Harness) -> None:
    sid = answered(h)
    msg = FakeIncomingMessage("text/plain", b"x", failure_report="no")
    h.ua.deliver(sid, msg)
    h.sip.answer(0, 500, "Server Error")
    assert msg.reports == []


def test_empty_send_and_report_are_not_paged(h: Harness) -> None:
    sid = answered(h)
    h.ua.deliver(sid, FakeIncomingMessage("text/plain", b""))
    h.ua.by_id[sid].handler.report_received(sid, object())
    assert h.sip.sent == []


def test_send_without_content_type_is_reported_not_paged(h: Harness) -> None:
    sid = answered(h)
    msg = FakeIncomingMessage(None, b"x")
    h.ua.deliver(sid, msg)
    assert h.sip.sent == []
    assert [code for code, _ in msg.reports] == [415]


def test_pending_message_bound_refuses_and_reports() -> None:
    h = Harness(max_pending_messages=1)
    sid = answered(h)
    first, second = FakeIncomingMessage("text/plain", b"1"), FakeIncomingMessage("text/plain", b"2")
    h.ua.deliver(sid, first)
    h.ua.deliver(sid, second)
    assert len(h.sip.sent) == 1
    assert second.reports and first.reports == []
    h.sip.answer(0, 200, "OK")
    third = FakeIncomingMessage("text/plain", b"3")
    h.ua.deliver(sid, third)
    assert len(h.sip.sent) == 2


@pytest.mark.parametrize("which", [0, 1, 2])
def test_bad_uri_param_answers_400_and_creates_nothing(h: Harness, which: int) -> None:
    uris = [BOB, ALICE, ALICE]
    uris[which] = "not a uri"
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, KEY, "text/plain", *uris) == ERR_PARAMS
    assert status(invite) == 400
    assert h.ua.by_id == {} and h.gw.list_sessions() == []


def test_tel_uri_is_accepted_as_a_param(h: Harness) -> None:
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, "tel:+15551234", ALICE) == OK


def test_duplicate_key_is_refused_and_first_session_kept(h: Harness) -> None:
    sid = answered(h)
    again = request("INVITE", ctype="application/sdp", body=b"v=0\r\n", cseq=7)
    assert h.gw.msrp_gw_answer(again, KEY, "text/plain", BOB, ALICE, ALICE) == ERR_DUPLICATE
    assert status(again) == 486
    [listed] = h.gw.list_sessions()
    assert listed["msrp_ua_session_id"] == sid


def test_offer_refused_by_ua_gets_its_code_and_nothing_is_left(h: Harness) -> None:
    h.ua.refuse_answer = (488, "Not Acceptable Here")
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, ALICE) == ERR_UA
    assert status(invite) == 488
    assert h.gw.list_sessions() == []


def test_ua_error_headers_go_out_with_the_refusal(h: Harness) -> None:
    from msrp_gateway.ua import UAError

    h.ua.refuse_answer = UAError(488, "Not Acceptable Here",
                                 [("Warning", '304 msrpgw "no common type"')])
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    assert h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, ALICE) == ERR_UA
    assert status(invite) == 488
    assert reply_headers(invite)["Warning"] == '304 msrpgw "no common type"'


def test_answer_for_a_non_invite_is_a_script_error(h: Harness) -> None:
    req = request()
    assert h.gw.msrp_gw_answer(req, KEY, "text/plain", BOB, ALICE, ALICE) == ERR_PARAMS
    assert status(req) == 500


# -- both directions on one session -----------------------------------------------------------


def test_reply_message_uses_the_session_an_invite_opened(h: Harness) -> None:
    sid = answered(h)
    reply = request(body=b"reply")  # alice -> bob: key bob-alice, as the INVITE's
    assert h.gw.msg_to_msrp(reply, KEY, "text/plain") == OK
    assert status(reply) == 202
    assert len(h.ua.by_id) == 1
    assert h.ua.sent[0][0] == sid and h.ua.sent[0][2] == b"reply"


def test_send_on_a_message_opened_session_pages_the_original_sender(h: Harness) -> None:
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    sid = h.ua.last().session_id
    h.ua.establish(sid)
    h.ua.deliver(sid, FakeIncomingMessage("text/plain", b"answer"))
    [(out, _)] = h.sip.sent
    assert (out.from_uri, out.to_uri, out.ruri) == (BOB, ALICE, ALICE)


# -- timeouts and the sweep -------------------------------------------------------------------


def test_session_timeout_without_sends_ends_session_with_bye() -> None:
    h = Harness(cleanup_interval=10, session_timeout=100, message_timeout=100)
    h.gw.start()
    sid = answered(h)
    for _ in range(9):  # MESSAGEs keep coming, but no SEND from the MSRP side
        h.clock.advance(10)
        h.gw.msg_to_msrp(request(cseq=int(h.clock.seconds())), KEY, "text/plain")
    assert h.ua.ended == []
    h.clock.advance(10)
    assert h.ua.ended == [sid]
    assert h.gw.list_sessions() == []
    h.ua.terminate(sid)  # the UA's notification after our BYE changes nothing
    assert h.gw.list_sessions() == []
    h.gw.stop()


def test_message_timeout_without_messages_ends_session() -> None:
    h = Harness(cleanup_interval=5, session_timeout=1000, message_timeout=30)
    h.gw.start()
    sid = answered(h)
    h.clock.advance(20)
    h.gw.msg_to_msrp(request(), KEY, "text/plain")  # refreshes last MESSAGE
    for _ in range(5):
        h.clock.advance(5)
        h.ua.deliver(sid, FakeIncomingMessage("text/plain", b"still here"))
    assert h.ua.ended == []  # 25 s since the last MESSAGE (at t=20), SENDs flowing
    h.clock.advance(5)  # t=50: 30 s without a MESSAGE
    assert h.ua.ended == [sid]
    h.gw.stop()


def test_session_times_start_at_creation_not_at_zero() -> None:
    h = Harness(cleanup_interval=60, session_timeout=7200, message_timeout=3600)
    h.gw.start()
    h.clock.advance(3 * 3600)  # the gateway has been up three hours
    answered(h)
    h.clock.advance(60)
    assert h.ua.ended == [] and len(h.gw.list_sessions()) == 1
    h.gw.stop()


def test_sweep_also_ends_sessions_still_setting_up_and_drops_their_queue(logged) -> None:
    h = Harness(cleanup_interval=10, session_timeout=20, message_timeout=20)
    h.gw.start()
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    h.clock.advance(20)
    assert h.ua.ended == [h.ua.last().session_id]
    assert any(e.get("key") == KEY and e.get("n") == 1 for e in logged)
    h.gw.stop()


# -- ending -----------------------------------------------------------------------------------


def test_bye_from_msrp_side_removes_session(h: Harness) -> None:
    sid = answered(h)
    h.ua.terminate(sid, "BYE")
    assert h.gw.list_sessions() == []
    assert h.ua.ended == []  # no BYE of ours


def test_mi_end_session(h: Harness) -> None:
    sid = answered(h)
    with pytest.raises(SessionNotFound) as e:
        h.gw.end_session("nobody")
    assert (e.value.code, e.value.message) == (404, "Session doesn't exist")
    h.gw.end_session(KEY)
    assert h.ua.ended == [sid] and h.gw.list_sessions() == []


def test_mi_end_session_reports_ua_failure_and_forgets_the_session(h: Harness) -> None:
    sid = answered(h)
    h.ua.by_id[sid].ended = True  # the UA no longer knows it
    with pytest.raises(EndSessionFailed) as e:
        h.gw.end_session(KEY)
    assert (e.value.code, e.value.message) == (500, "Unable to end session")
    assert h.gw.list_sessions() == []


def test_stop_byes_every_session_and_waits_for_the_ends(h: Harness) -> None:
    h.gw.start()
    sid1 = answered(h)
    h.gw.msg_to_msrp(request(frm="<sip:carol@example.org>;tag=c"), "other", "text/plain")
    sid2 = h.ua.last().session_id
    done = h.gw.stop()
    assert sorted(h.ua.ended) == sorted([sid1, sid2])
    assert not done.called
    h.ua.terminate(sid1)
    assert not done.called
    h.ua.fail(sid2, None, None)
    assert done.called
    assert h.clock.getDelayedCalls() == []
    late = request(cseq=9)
    assert h.gw.msg_to_msrp(late, KEY, "text/plain") == ERR_UA
    assert status(late) == 503
    assert h.events == []  # a failure we caused by ending is not a set-up failure


def test_stop_gives_up_after_stop_timeout() -> None:
    h = Harness(stop_timeout=3)
    h.gw.start()
    answered(h)
    done = h.gw.stop()
    h.clock.advance(2.9)
    assert not done.called
    h.clock.advance(0.2)
    assert done.called
    assert h.clock.getDelayedCalls() == []


def test_stop_with_no_sessions_is_immediate(h: Harness) -> None:
    h.gw.start()
    assert h.gw.stop().called
    assert h.clock.getDelayedCalls() == []


def test_send_failure_on_established_session_is_logged_with_key(h: Harness, logged) -> None:
    sid = answered(h)
    req = request()
    h.gw.msg_to_msrp(req, KEY, "text/plain")
    from msrp_gateway.testing import FakeSendError

    h.ua.sent[0][3].errback(FakeSendError(408, "no response"))
    assert status(req) == 202
    assert any(e.get("key") == KEY and e.get("code") == 408 for e in logged)
    assert h.ua.sent[0][0] == sid


# -- settings and registry --------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"hash_size": 0}, {"hash_size": 21}, {"session_timeout": 10, "message_timeout": 20},
    {"cleanup_interval": 0}, {"max_sessions": 0}, {"max_queued_messages": -1},
])
def test_bad_settings_are_refused_with_the_key_named(kwargs) -> None:
    with pytest.raises(ValueError) as e:
        GatewaySettings(**kwargs)
    assert "msrp_gateway." in str(e.value)


def test_settings_are_read_from_a_config_section() -> None:
    class Section:
        hash_size = 4
        cleanup_interval = 5
        session_timeout = 50
        message_timeout = 40
        max_sessions = 7
        max_queued_messages = 3
        failure_message = False

    class Config:
        msrp_gateway = Section()

    s = GatewaySettings.from_any(Config())
    assert (s.hash_size, s.max_sessions, s.max_queued_messages, s.failure_message) == (4, 7, 3, False)
    assert GatewaySettings.from_any({"hash_size": 3}).hash_size == 3


def test_settings_come_from_the_real_config_defaults() -> None:
    from msrp_gateway.config import Settings

    s = GatewaySettings.from_any(Settings())
    assert (s.hash_size, s.cleanup_interval, s.session_timeout, s.message_timeout) == (
        10, 60, 43200, 7200)
    assert s.failure_message is True


def test_registry_spreads_keys_over_two_to_the_hash_size_buckets() -> None:
    reg = Registry(hash_size=3, max_sessions=100)
    assert reg.bucket_count == 8
    for i in range(50):
        reg.add(GatewaySession(f"k{i}", "f", "t", "r", Origin.MESSAGE, ("text/plain",), 0, 0, 0))
    assert len(reg) == 50 and len(list(reg)) == 50
    assert sum(reg.bucket_loads()) == 50 and sum(1 for n in reg.bucket_loads() if n) > 1
    with pytest.raises(DuplicateKey):
        reg.add(GatewaySession("k1", "f", "t", "r", Origin.MESSAGE, (), 0, 0, 0))
    newer = GatewaySession("k2", "f", "t", "r", Origin.MESSAGE, (), 0, 0, 0)
    assert not reg.remove(newer)  # not the stored object: left alone
    assert reg.get("k2") is not None
    small = Registry(hash_size=1, max_sessions=1)
    small.add(GatewaySession("a", "f", "t", "r", Origin.MESSAGE, (), 0, 0, 0))
    with pytest.raises(RegistryFull):
        small.add(GatewaySession("b", "f", "t", "r", Origin.MESSAGE, (), 0, 0, 0))


# -- any interleaving keeps the table and the UA in step -------------------------------------

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

OPS = st.lists(st.one_of(
    st.tuples(st.just("message"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("invite"), st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.just("establish"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("fail"), st.integers(0, 50), st.sampled_from([0, 486])),
    st.tuples(st.just("terminate"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("send"), st.integers(0, 50), st.integers(0, 2)),
    st.tuples(st.just("answer_sip"), st.integers(0, 50), st.sampled_from([200, 404, 0])),
    st.tuples(st.just("advance"), st.integers(0, 40), st.just(0)),
    st.tuples(st.just("mi_end"), st.integers(0, 3), st.integers(0, 3)),
), max_size=60)


@hsettings(max_examples=150, deadline=None)
@given(OPS)
def test_any_interleaving_answers_every_request_once_and_leaks_nothing(ops) -> None:
    h = Harness(cleanup_interval=10, session_timeout=60, message_timeout=30, max_sessions=5,
                max_queued_messages=3)
    h.gw.start()
    users = ["sip:a@x.net", "sip:b@x.net", "sip:c@x.net", "sip:d@x.net"]
    cseq = 0
    for op, i, j in ops:
        cseq += 1
        sids = list(h.ua.by_id)
        if op == "message":
            req = request(frm=f"<{users[i]}>;tag=t{cseq}", to=f"<{users[j]}>", ruri=users[j],
                          cseq=cseq)
            h.gw.msg_to_msrp(req, f"{users[j]}-{users[i]}", "text/plain")
            assert status(req) is not None
        elif op == "invite":
            req = request("INVITE", frm=f"<{users[i]}>;tag=t{cseq}", to=f"<{users[j]}>",
                          ruri=users[j], ctype="application/sdp", body=b"v=0\r\n", cseq=cseq)
            h.gw.msrp_gw_answer(req, f"{users[i]}-{users[j]}", "text/plain", users[i],
                                users[j], users[j])
            assert status(req) is not None
        elif op in ("establish", "fail", "terminate", "send") and sids:
            sid = sids[i % len(sids)]
            if h.ua.by_id[sid].ended:
                continue
            if op == "establish":
                h.ua.establish(sid)
            elif op == "fail":
                h.ua.fail(sid, j or None, "Busy Here" if j else None)
            elif op == "terminate":
                h.ua.terminate(sid)
            else:
                h.ua.deliver(sid, FakeIncomingMessage("text/plain", b"x" * j))
        elif op == "answer_sip" and h.sip.sent:
            k = i % len(h.sip.sent)
            if not h.sip.sent[k][1].called:
                if j:
                    h.sip.answer(k, j)
                else:
                    h.sip.time_out(k)
        elif op == "advance":
            h.clock.advance(i)
        elif op == "mi_end":
            try:
                h.gw.end_session(f"{users[j]}-{users[i]}")
            except (SessionNotFound, EndSessionFailed):
                pass
        listed = {s["key"]: s for s in h.gw.list_sessions()}
        assert len(listed) <= 5
        live = {sid for sid, s in h.ua.by_id.items() if not s.ended}
        in_table = {h.gw.session(k).ua_session_id for k in listed}
        assert live == in_table  # no UA session without its gateway session, and back
        for s in listed.values():
            assert s["queued"] <= 3
            assert s["queued"] == 0 or s["state"] == "setup"
    done = h.gw.stop()
    h.clock.advance(h.gw.settings.stop_timeout)
    assert done.called
    assert h.gw.list_sessions() == []
    assert not any(not s.ended for s in h.ua.by_id.values())
    assert h.clock.getDelayedCalls() == []


# -- audit fixes (issue 5 follow-up) ------------------------------------------------------------


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "INFO"])
def test_msg_to_msrp_for_a_non_message_is_refused_500_and_opens_nothing(
        h: Harness, method: str, logged) -> None:
    req = request(method)  # text/plain body: only the method is wrong
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_PARAMS
    assert status(req) == 500  # not 202: an INVITE answered 2xx would open a dialog
    assert h.gw.list_sessions() == [] and h.ua.by_id == {}
    assert any(e.get("method") == method and e["log_level"].name == "error" for e in logged)
    # also on an existing session: nothing is sent for it
    sid = answered(h)
    again = request(method, cseq=5)
    assert h.gw.msg_to_msrp(again, KEY, "text/plain") == ERR_PARAMS
    assert status(again) == 500 and h.ua.sent == [] and h.ua.by_id[sid].ended is False


def _report(status_line: str | None):
    from msrp_gateway.msrp.message import MSRPRequest

    headers = [("To-Path", "msrp://127.0.0.1:2855/gw;tcp"),
               ("From-Path", "msrp://127.0.0.1:2856/peer;tcp"), ("Message-ID", "m42")]
    if status_line is not None:
        headers.append(("Status", status_line))
    return MSRPRequest("t1", "REPORT", headers)


@pytest.mark.parametrize("status_line,shown", [
    ("000 408 Request Timeout", "000 408 Request Timeout"),
    ("000 413", "000 413"),
    (None, None),
])
def test_failure_report_for_a_sent_body_is_logged_at_warn_with_key_and_status(
        h: Harness, logged, status_line, shown) -> None:
    sid = answered(h)
    h.ua.by_id[sid].handler.report_received(sid, _report(status_line))
    [warned] = [e for e in logged if e.get("key") == KEY and e["log_level"].name == "warn"]
    assert warned["status"] == shown and warned["message_id"] == "m42"
    assert h.sip.sent == []  # never passed on as a MESSAGE


def test_success_report_is_not_a_warning(h: Harness, logged) -> None:
    sid = answered(h)
    h.ua.by_id[sid].handler.report_received(sid, _report("000 200 OK"))
    assert not [e for e in logged if e.get("key") == KEY and e["log_level"].name == "warn"]


def test_report_with_a_broken_status_is_logged_not_raised(h: Harness, logged) -> None:
    sid = answered(h)
    h.ua.by_id[sid].handler.report_received(sid, _report("garbage"))
    assert [e for e in logged if e.get("key") == KEY and e["log_level"].name == "warn"]


@pytest.mark.parametrize("outcome,status_", [("486", 486), ("timeout", 408)])
def test_every_generated_message_that_fails_is_logged_with_its_key(
        h: Harness, logged, outcome: str, status_: int) -> None:
    d = h.gw.send_message(BOB, ALICE, ALICE, b"could not be delivered", key="k-notice")
    if outcome == "timeout":
        h.sip.time_out(0)
    else:
        h.sip.answer(0, 486, "Busy Here")
    assert d.result == (status_, "Busy Here" if status_ == 486 else "Request Timeout")
    [warned] = [e for e in logged if e.get("key") == "k-notice"]
    assert warned["status"] == status_ and warned["log_level"].name == "warn"


def test_a_generated_message_answered_2xx_logs_nothing(h: Harness, logged) -> None:
    d = h.gw.send_message(BOB, ALICE, ALICE, b"hi", key="k-ok")
    h.sip.answer(0, 202, "Accepted")
    assert d.result == (202, "Accepted")
    assert [e for e in logged if e.get("key") == "k-ok"] == []


def _refusing_ua(h: Harness, code: int, comment: str) -> None:
    """The UA refuses every SEND on the spot, as MSRPSession.send does when the link's send
    queue is full (an already failed Deferred)."""
    from twisted.internet import defer

    from msrp_gateway.msrp.session import MSRPSendError

    h.ua.send = lambda *a, **kw: defer.fail(MSRPSendError(code, comment))


def test_send_refused_on_the_spot_answers_the_message_503_with_retry_after(
        h: Harness, logged) -> None:
    sid = answered(h)
    _refusing_ua(h, 503, "send queue full (1024 messages)")
    req = request()
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_LIMIT
    assert status(req) == 503  # not 202 and a body lost afterwards
    assert int(reply_headers(req)["Retry-After"]) > 0
    assert any(e.get("key") == KEY and "send queue full" in str(e.get("comment"))
               for e in logged)
    assert h.gw.session(KEY) is not None and not h.ua.by_id[sid].ended  # session kept


def test_body_over_the_peers_max_size_answers_413(h: Harness) -> None:
    answered(h)
    _refusing_ua(h, 413, "the peer takes messages of at most 10 bytes (a=max-size)")
    req = request(body=b"x" * 11)
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_PARAMS
    assert status(req) == 413


def test_ua_send_raising_answers_503_not_202(h: Harness) -> None:
    answered(h)

    def boom(*a, **kw):
        raise RuntimeError("stack stopped")

    h.ua.send = boom
    req = request()
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == ERR_LIMIT
    assert status(req) == 503


def test_send_that_fails_later_keeps_202_and_logs_with_the_key(h: Harness, logged) -> None:
    from msrp_gateway.msrp.session import MSRPSendError

    answered(h)
    req = request()
    assert h.gw.msg_to_msrp(req, KEY, "text/plain") == OK
    assert status(req) == 202
    h.ua.sent[0][3].errback(MSRPSendError(503, "connection lost"))
    assert any(e.get("key") == KEY and e.get("code") == 503 for e in logged)


def test_queued_bodies_refused_at_establishment_are_logged_with_the_key(
        h: Harness, logged) -> None:
    h.gw.msg_to_msrp(request(), KEY, "text/plain")
    _refusing_ua(h, 503, "send queue full")
    h.ua.establish(h.ua.last().session_id)
    assert any(e.get("key") == KEY and e.get("code") == 503 for e in logged)


@pytest.mark.parametrize("uri,ok", [
    ("tel:+15551234", True),
    ("tel:+1-555-123-4567;ext=22", True),
    ("tel:7042;phone-context=example.com", True),
    ("tel:863-1234;phone-context=+1-914-555", True),
    ("TEL:+4420(7946)0000", True),
    ("tel:abc", False),  # hex digits are a local number: it needs a phone-context
    ("tel:1234", False),
    ("tel:+", False),
    ("tel:+-.()", False),
    ("tel:", False),
    ("tel:+1 555", False),
    ("tel:+15551234;x=a b", False),
    ("tel:+1<script>", False),
    ("tel:12;phone-context=", False),
    pytest.param("tel:+1" + "2" * 5000, False, id="tel-too-long"),
])
def test_tel_uri_params_need_rfc3966_number_syntax(h: Harness, uri: str, ok: bool) -> None:
    invite = request("INVITE", ctype="application/sdp", body=b"v=0\r\n")
    rc = h.gw.msrp_gw_answer(invite, KEY, "text/plain", BOB, ALICE, uri)
    assert (rc, status(invite)) == ((OK, 200) if ok else (ERR_PARAMS, 400))


def test_tel_uri_check_refuses_hostile_input() -> None:
    from msrp_gateway.registry import valid_uri

    # long runs that a backtracking DIGIT split would chew on: refused (how fast is for
    # bench/, not a test)
    for bad in ("tel:" + "a-" * 2000 + ";", "tel:a" + ";p=1" * 1000 + "x",
                "tel:+" + "-" * 4000, "tel:1;phone-context=" + "a." * 2000 + "-"):
        assert not valid_uri(bad)
