"""The MSRP user agent on task.Clock: every path gives one notification and leaves nothing."""

from __future__ import annotations

import pytest
from twisted.internet import task

from msrp_gateway import sdp
from msrp_gateway.msrp.session import MSRPSendError
from msrp_gateway.sip.message import Headers, SIPRequest
from msrp_gateway.sip.transaction import TIMER_B, TIMER_H
from msrp_gateway.testing import FakeInviteStack, FakeMSRPStack, FakeServerTransaction
from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings

PEER_PATH = "msrp://192.0.2.7:7777/peerSess01;tcp"


class Recorder:
    """A UA handler that writes down what it hears."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def established(self, sid):
        self.events.append(("established", sid))

    def failed(self, sid, code, reason):
        self.events.append(("failed", sid, code, reason))

    def terminated(self, sid, why):
        self.events.append(("terminated", sid, why))

    def message_received(self, sid, msg):
        self.events.append(("message", sid, msg))

    def report_received(self, sid, report):
        self.events.append(("report", sid, report))

    def kinds(self):
        return [e[0] for e in self.events]

    def endings(self):
        return [e for e in self.events if e[0] in ("failed", "terminated")]


class Env:
    def __init__(self, **settings) -> None:
        self.clock = task.Clock()
        self.sip = FakeInviteStack(self.clock)
        self.msrp = FakeMSRPStack(self.clock)
        self.ua = MSRPUserAgent(self.clock, self.sip, self.msrp, UASettings(**settings))
        self.h = Recorder()

    def start(self, types="text/plain"):
        sid = self.ua.start(types, "sip:alice@gw.example", "sip:bob@example.net", "sip:bob@192.0.2.7", self.h)
        return sid, self.sip.invites[-1], self.msrp.sessions[-1]

    def assert_no_leftovers(self):
        assert self.clock.getDelayedCalls() == []
        assert self.sip.open_transactions() == []
        assert self.sip.open_dialogs() == []
        assert self.msrp.open_sessions() == []
        assert self.ua.sessions() == []


def peer_sdp(types=("text/plain",), setup: str | None = "passive", path=PEER_PATH) -> bytes:
    body = sdp.build_offer([path], list(types), setup=setup or "actpass", sess_id=9)
    if setup is None:
        body = body.replace(b"a=setup:actpass\r\n", b"")
    return body


def invite_txn(body: bytes, content_type: str = "application/sdp") -> FakeServerTransaction:
    h = Headers([
        ("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKabc"),
        ("From", "<sip:bob@example.net>;tag=77"),
        ("To", "<sip:alice@gw.example>"),
        ("Call-ID", "c1@192.0.2.7"),
        ("CSeq", "1 INVITE"),
        ("Content-Type", content_type),
    ])
    return FakeServerTransaction(SIPRequest("INVITE", "sip:alice@gw.example", h, body))


# ------------------------------------------------------------------ UAC


def test_uac_offer_connects_binds_and_is_established_once():
    env = Env()
    sid, ic, ms = env.start()
    offer = sdp.find_msrp_media(sdp.parse_sdp(ic.request.body))
    assert ic.request.method == "INVITE"
    assert ic.request.content_type == "application/sdp"
    assert offer.path == ms.local_path and sid in offer.path[-1]
    assert offer.accept_types == ["text/plain"]
    assert env.ua.sessions()[0].state == "inviting"
    ic.accept(peer_sdp(setup="passive"))
    assert ms.remote_path == [PEER_PATH]
    assert ms.connecting is not None and ms.waiting is None  # offerer connects
    assert env.h.events == []
    ms.binding_done()
    assert env.h.events == [("established", sid)]
    info = env.ua.sessions()[0]
    assert (info.session_id, info.role, info.state, info.remote_path) == (sid, "uac", "established", [PEER_PATH])
    # a re-INVITE answered by the dialog layer alone repeats our offer
    assert env.sip.dialogs[0].local_sdp == ic.request.body
    assert env.ua.end(sid) is True
    assert env.h.endings() == [("terminated", sid, "ended locally")]
    assert env.sip.dialogs[0].byes_sent == 1
    assert env.ua.end(sid) is False
    env.assert_no_leftovers()


def test_uac_answer_without_setup_means_offerer_connects():
    env = Env()
    _, ic, ms = env.start()
    ic.accept(peer_sdp(setup=None))
    assert ms.connecting is not None and ms.waiting is None


def test_uac_answer_setup_active_makes_us_wait_and_never_connect():
    env = Env()
    sid, ic, ms = env.start()
    ic.accept(peer_sdp(setup="active"))
    assert ms.connecting is None and ms.waiting is not None
    ms.binding_done()
    assert env.h.kinds() == ["established"]


@pytest.mark.parametrize("code, reason", [(486, "Busy Here"), (603, "Decline"), (404, "Not Found")])
def test_uac_refused_invite_fails_once_with_code_and_reason(code, reason):
    env = Env()
    sid, ic, _ = env.start()
    ic.reject(code, reason)
    assert env.h.events == [("failed", sid, code, reason)]
    env.clock.advance(3600)
    assert len(env.h.events) == 1
    env.assert_no_leftovers()


def test_uac_timer_b_fails_without_code():
    env = Env()
    sid, ic, _ = env.start()
    env.clock.advance(TIMER_B - 0.1)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.events == [("failed", sid, None, None)]
    env.assert_no_leftovers()


def test_uac_answer_without_common_types_gets_bye_and_fails():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp(types=("image/png",)))
    assert env.h.events == [("failed", sid, None, None)]
    assert dialog.byes_sent == 1  # ACK by the stack, then our BYE
    assert ms.connecting is None  # never connected
    env.assert_no_leftovers()


def test_uac_answer_without_sdp_gets_bye_and_fails():
    env = Env()
    sid, ic, _ = env.start()
    dialog = ic.accept(b"")
    assert env.h.endings() == [("failed", sid, None, None)]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_uac_binding_send_without_200_in_30s_gets_bye_and_fails():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    env.clock.advance(29.9)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.events == [("failed", sid, None, None)]
    assert dialog.byes_sent == 1
    ms.binding_done()  # a late 200 changes nothing
    assert len(env.h.events) == 1
    env.assert_no_leftovers()


def test_uac_msrp_connection_refused_gets_bye_and_fails():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    ms.binding_failed(503, "cannot connect: refused")
    assert env.h.events == [("failed", sid, None, None)]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_uac_end_while_inviting_cancels_and_terminates_once():
    env = Env()
    sid, ic, _ = env.start()
    assert env.ua.end(sid) is True
    assert ic.cancelled
    assert env.h.events == [("terminated", sid, "ended locally")]  # not a failure: we asked
    env.assert_no_leftovers()


def test_uac_2xx_crossing_cancel_is_byed():
    env = Env()
    sid, ic, _ = env.start()
    ic.cancel = lambda: setattr(ic, "cancelled", True)  # the 2xx wins the race
    env.ua.end(sid)
    dialog = ic.accept(peer_sdp())
    assert dialog.byes_sent == 1
    assert env.h.events == [("terminated", sid, "ended locally")]
    env.assert_no_leftovers()


def test_messages_wait_for_the_binding_then_go_in_order():
    env = Env(max_queued_messages=2)
    sid, ic, ms = env.start()
    d1 = env.ua.send(sid, "text/plain", b"one")
    d2 = env.ua.send(sid, "text/plain", b"two", failure_report="no")
    d3 = env.ua.send(sid, "text/plain", b"three")
    err3 = []
    d3.addErrback(lambda f: err3.append(f.value))
    assert isinstance(err3[0], MSRPSendError) and err3[0].code == 503
    ic.accept(peer_sdp())
    assert ms.sent == []
    ms.binding_done()
    assert [(c, b, fr) for c, b, fr, _, _ in ms.sent] == [("text/plain", b"one", "yes"), ("text/plain", b"two", "no")]
    got = []
    d1.addCallback(got.append)
    ms.sent[0][4].callback(200)
    assert got == [200]
    d4 = env.ua.send(sid, "text/plain", b"four", success_report="yes")
    assert ms.sent[-1][1:4] == (b"four", "yes", "yes")
    ms.sent[-1][4].callback(200)
    ms.sent[1][4].callback(200)
    assert d2.called and d4.called


def test_queued_messages_fail_when_the_session_never_comes_up():
    env = Env()
    sid, ic, _ = env.start()
    errors = []
    env.ua.send(sid, "text/plain", b"x").addErrback(lambda f: errors.append(f.value))
    ic.reject(480, "Temporarily Unavailable")
    assert len(errors) == 1 and errors[0].code == 481
    assert env.h.endings() == [("failed", sid, 480, "Temporarily Unavailable")]


def test_send_to_unknown_session_fails_481():
    env = Env()
    errors = []
    env.ua.send("nope", "text/plain", b"x").addErrback(lambda f: errors.append(f.value))
    assert errors[0].code == 481


def test_incoming_messages_and_reports_reach_the_handler():
    env = Env()
    sid, ic, ms = env.start()
    ic.accept(peer_sdp())
    ms.binding_done()
    ms.on_message("MSG")
    ms.on_report("REPORT")
    assert env.h.events[1:] == [("message", sid, "MSG"), ("report", sid, "REPORT")]


def test_peer_bye_terminates_without_our_bye():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    ms.binding_done()
    dialog.peer_bye()
    assert env.h.endings() == [("terminated", sid, "BYE from peer")]
    assert dialog.byes_sent == 0
    env.assert_no_leftovers()


def test_peer_bye_during_setup_is_a_failure_of_the_offer():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    dialog.peer_bye()
    assert env.h.events == [("failed", sid, None, None)]
    env.assert_no_leftovers()


def test_msrp_connection_loss_sends_bye_and_terminates():
    env = Env()
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    ms.binding_done()
    ms.lose_connection("connection reset by peer")
    assert env.h.endings() == [("terminated", sid, "MSRP connection lost: connection reset by peer")]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_max_duration_ends_the_session_with_bye():
    env = Env(max_duration=600)
    sid, ic, ms = env.start()
    dialog = ic.accept(peer_sdp())
    ms.binding_done()
    env.clock.advance(599)
    assert env.h.kinds() == ["established"]
    env.clock.advance(1)
    assert env.h.endings() == [("terminated", sid, "max_duration (600 s) reached")]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_session_limit_refuses_with_503():
    env = Env(max_sessions=1)
    env.start()
    with pytest.raises(UAError) as err:
        env.start()
    assert err.value.code == 503
    assert len(env.ua.sessions()) == 1


def test_a_raising_handler_does_not_break_the_session():
    env = Env()

    class Bad(Recorder):
        def established(self, sid):
            raise RuntimeError("boom")

    env.h = Bad()
    sid, ic, ms = env.start()
    ic.accept(peer_sdp())
    ms.binding_done()
    assert env.ua.sessions()[0].state == "established"
    env.ua.end(sid)
    env.assert_no_leftovers()


# ------------------------------------------------------------------ UAS


def test_uas_answers_200_waits_for_ack_and_binding_then_established():
    env = Env()
    txn = invite_txn(peer_sdp(types=("text/plain", "message/cpim"), setup=None))
    sid = env.ua.answer(txn, ["text/plain"], env.h)
    ms = env.msrp.sessions[-1]
    (code, _, kw), = txn.responses
    assert code == 200 and kw["content_type"] == "application/sdp"
    answer = sdp.find_msrp_media(sdp.parse_sdp(kw["body"]))
    assert answer.accept_types == ["text/plain"]
    assert answer.setup == "passive" and answer.path == ms.local_path
    assert ms.waiting is not None and ms.connecting is None  # the offerer connects
    assert ms.remote_path == [PEER_PATH]
    ms.binding_done()
    assert env.h.events == []  # no ACK yet
    env.sip.dialogs[-1].ack()
    assert env.h.events == [("established", sid)]
    info = env.ua.sessions()[0]
    assert (info.role, info.state, info.call_id) == ("uas", "established", "c1@192.0.2.7")
    assert (info.from_uri, info.to_uri, info.ruri) == ("sip:bob@example.net", "sip:alice@gw.example",
                                                       "sip:alice@gw.example")
    assert info.local_path == ms.local_path
    env.sip.dialogs[-1].peer_bye()
    assert env.h.endings() == [("terminated", sid, "BYE from peer")]
    env.assert_no_leftovers()


def test_uas_messages_wait_until_the_peer_binds():
    env = Env()
    sid = env.ua.answer(invite_txn(peer_sdp(setup="active")), "text/plain", env.h)
    ms = env.msrp.sessions[-1]
    d = env.ua.send(sid, "text/plain", b"early")
    assert ms.sent == []
    ms.binding_done()
    assert [s[1] for s in ms.sent] == [b"early"]
    ms.sent[0][4].callback(200)
    assert d.called


def test_uas_becomes_active_when_the_offer_is_passive():
    env = Env()
    env.ua.answer(invite_txn(peer_sdp(setup="passive")), "text/plain", env.h)
    ms = env.msrp.sessions[-1]
    assert ms.connecting is not None and ms.waiting is None
    assert b"a=setup:active" in env.sip.dialogs[-1].local_sdp


@pytest.mark.parametrize("answer_setup, connects", [("passive", False), ("active", True)])
def test_uas_actpass_follows_config(answer_setup, connects):
    env = Env(actpass_answer=answer_setup)
    env.ua.answer(invite_txn(peer_sdp(setup="actpass")), "text/plain", env.h)
    ms = env.msrp.sessions[-1]
    assert (ms.connecting is not None) is connects
    assert (ms.waiting is not None) is not connects


def test_uas_ack_never_received_terminates_once_with_bye():
    env = Env(setup_timeout=60)
    sid = env.ua.answer(invite_txn(peer_sdp()), "text/plain", env.h)
    ms = env.msrp.sessions[-1]
    dialog = env.sip.dialogs[-1]
    ms.binding_done()
    env.clock.advance(TIMER_H)
    assert env.h.events == [("terminated", sid, "no ACK for our 200")]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_uas_msrp_connection_never_made_terminates_with_bye():
    env = Env()
    sid = env.ua.answer(invite_txn(peer_sdp(setup="active")), "text/plain", env.h)
    dialog = env.sip.dialogs[-1]
    dialog.ack()
    env.clock.advance(29.9)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.endings() == [("terminated", sid, "MSRP binding not done within 30 s")]
    assert dialog.byes_sent == 1
    env.assert_no_leftovers()


def test_uas_unusable_offer_raises_488_with_warning_and_keeps_nothing():
    env = Env()
    txn = invite_txn(peer_sdp(types=("image/png",)))
    with pytest.raises(UAError) as err:
        env.ua.answer(txn, "text/plain", env.h)
    assert err.value.code == 488
    (name, value), = err.value.headers
    assert name == "Warning" and "no common content type" in value
    assert txn.responses == []  # the caller replies
    env.assert_no_leftovers()


def test_uas_bad_path_in_offer_is_488():
    env = Env()
    body = peer_sdp().replace(PEER_PATH.encode(), b"msrp://192.0.2.7:99999/x;tcp")
    with pytest.raises(UAError) as err:
        env.ua.answer(invite_txn(body), "text/plain", env.h)
    assert err.value.code == 488
    env.assert_no_leftovers()


def test_uas_non_sdp_body_is_415_with_accept():
    env = Env()
    with pytest.raises(UAError) as err:
        env.ua.answer(invite_txn(b"hello", "text/plain"), "text/plain", env.h)
    assert err.value.code == 415 and ("Accept", "application/sdp") in err.value.headers


def test_uas_end_before_ack_terminates_once():
    env = Env()
    sid = env.ua.answer(invite_txn(peer_sdp()), "text/plain", env.h)
    assert env.ua.end(sid)
    assert env.h.events == [("terminated", sid, "ended locally")]
    assert env.sip.dialogs[-1].byes_sent == 1
    env.assert_no_leftovers()


def test_stop_ends_every_session():
    env = Env()
    sid1, ic, ms = env.start()
    ic.accept(peer_sdp())
    ms.binding_done()
    sid2 = env.ua.answer(invite_txn(peer_sdp()), "text/plain", env.h)
    d = env.ua.stop()
    assert d.called
    assert sorted(e[1] for e in env.h.endings()) == sorted([sid1, sid2])
    env.assert_no_leftovers()



def test_advertised_contact_goes_in_our_invite_and_our_200():
    env = Env(advertised_contact="sip:gw@203.0.113.5:5062;transport=tcp")
    _, ic, _ = env.start()
    assert ic.request.headers.get_all("Contact") == ["<sip:gw@203.0.113.5:5062;transport=tcp>"]
    txn = invite_txn(peer_sdp())
    env.ua.answer(txn, "text/plain", env.h)
    (_, _, kw), = txn.responses
    assert list(kw["headers"]) == [("Contact", "<sip:gw@203.0.113.5:5062;transport=tcp>")]



def test_messages_over_the_peers_max_size_fail_413_locally():
    env = Env()
    body = sdp.build_offer([PEER_PATH], ["text/plain"], setup="active", max_size=10)
    sid = env.ua.answer(invite_txn(body), "text/plain", env.h)
    ms = env.msrp.sessions[-1]
    ms.binding_done()
    errors = []
    env.ua.send(sid, "text/plain", b"x" * 11).addErrback(lambda f: errors.append(f.value))
    assert errors[0].code == 413 and "max-size" in errors[0].comment
    env.ua.send(sid, "text/plain", b"x" * 10)
    assert [m[1] for m in ms.sent] == [b"x" * 10]


# ------------------------------------------------------------------ any order of events

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PEER_ACTIONS = ["answer_ok", "answer_active", "answer_bad", "reject", "advance_small", "advance_big",
                "bind_ok", "bind_fail", "lose", "peer_bye", "ack", "end", "send", "message"]


def _play(env: Env, action: str, sid: str) -> None:
    ic = env.sip.invites[-1] if env.sip.invites else None
    ms = env.msrp.sessions[-1]
    dialog = env.sip.dialogs[-1] if env.sip.dialogs else None
    if action == "answer_ok" and ic is not None and ic.pending:
        ic.accept(peer_sdp(setup="passive"))
    elif action == "answer_active" and ic is not None and ic.pending:
        ic.accept(peer_sdp(setup="active"))
    elif action == "answer_bad" and ic is not None and ic.pending:
        ic.accept(peer_sdp(types=("image/png",)))
    elif action == "reject" and ic is not None and ic.pending:
        ic.reject(486, "Busy Here")
    elif action == "advance_small":
        env.clock.advance(1)
    elif action == "advance_big":
        env.clock.advance(20)
    elif action == "bind_ok" and not ms.closed:
        ms.binding_done()
    elif action == "bind_fail" and not ms.closed:
        ms.binding_failed()
    elif action == "lose" and not ms.closed:
        ms.lose_connection()
    elif action == "peer_bye" and dialog is not None and not dialog.terminated:
        dialog.peer_bye()
    elif action == "ack" and dialog is not None and dialog.role == "uas" and not dialog.terminated:
        dialog.ack()
    elif action == "end":
        env.ua.end(sid)
    elif action == "send":
        env.ua.send(sid, "text/plain", b"x").addErrback(lambda f: None)
    elif action == "message" and ms.on_message is not None:
        ms.on_message("MSG")


@settings(max_examples=300, deadline=None)
@given(role=st.sampled_from(["uac", "uas-passive", "uas-active"]),
       actions=st.lists(st.sampled_from(PEER_ACTIONS), max_size=12))
def test_any_order_of_events_gives_one_ending_and_no_leftovers(role, actions):
    env = Env(max_duration=100)
    if role == "uac":
        sid, _, _ = env.start()
    else:
        setup = "active" if role == "uas-active" else "passive"
        sid = env.ua.answer(invite_txn(peer_sdp(setup=setup)), "text/plain", env.h)
    for action in actions:
        _play(env, action, sid)
    env.clock.advance(0)  # notifications deferred out of start()/answer()
    env.clock.advance(1000)  # every bound (setup, Timer B, max_duration) has passed
    for _, _, _, _, d in env.msrp.sessions[-1].sent:
        if not d.called:
            d.callback(200)
    assert len(env.h.endings()) == 1, env.h.events
    kinds = env.h.kinds()
    assert kinds.index(env.h.endings()[0][0]) == len(kinds) - 1  # nothing after the ending
    assert kinds.count("established") <= 1
    if env.h.endings()[0][0] == "failed":
        assert role == "uac" and "established" not in kinds
    env.assert_no_leftovers()
