"""Late offer (RFC 3264 s.4, RFC 3261 s.13.2.1): an INVITE without SDP, answered by the UA.

Our 200 carries the offer, the ACK must carry the answer; an ACK without a usable answer
ends the dialog with BYE. Everything runs on the real SIP and MSRP stacks over
`testing.FakeSIPTransport`, on one `task.Clock` (test_ua_real_stacks' `Env`), and each path
is checked for exactly one notification and no leftovers in the real tables. The binding
itself, which needs sockets, is in tests/integration/test_ua_loopback.py.
"""

from __future__ import annotations

from typing import Any

from msrp_gateway import sdp
from msrp_gateway.sip.message import SIPResponse, parse_message
from msrp_gateway.sip.transaction import TIMER_H
from msrp_gateway.ua import UAError
from tests.unit.test_ua_real_stacks import PEER, PEER_PATH, Env

import pytest


def late_invite(env: Env, *, headers: str = "") -> str:
    """An INVITE from the peer with no body at all, answered by the UA; the session id."""
    data = (
        "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKlate1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:bob@example.net>;tag=77\r\n"
        "To: <sip:alice@gw.example>\r\n"
        "Call-ID: late1@192.0.2.7\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:bob@192.0.2.7:5060>\r\n"
        f"{headers}Content-Length: 0\r\n\r\n"
    ).encode()
    env.wire.deliver(parse_message(data), PEER)
    [txn] = env.incoming
    return env.ua.answer(txn, "text/plain", env.h)


def our_200(env: Env) -> SIPResponse:
    """Our 200 to the INVITE (its first copy; a 200 to a BYE is not it)."""
    return [ok for ok in env.sent(200) if ok.cseq[1] == "INVITE"][0]


def ack(env: Env, body: bytes = b"", content_type: str = "application/sdp",
        branch: str = "z9hG4bKlateack") -> None:
    """The peer's ACK for our 200, carrying `body` (the answer) if any."""
    ok = our_200(env)
    ctype = f"Content-Type: {content_type}\r\n" if body else ""
    data = (
        "ACK sip:alice@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: late1@192.0.2.7\r\nCSeq: 1 ACK\r\n{ctype}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    env.wire.deliver(data, PEER)


def answer_to(offer: bytes, types: tuple[str, ...] = ("text/plain",),
              prefer_active: bool = False) -> bytes:
    """The peer's answer to our offer, as a real client would build it."""
    return sdp.build_answer(offer, [PEER_PATH], list(types), prefer_active=prefer_active,
                            sess_id=9).body


def finish(env: Env) -> None:
    env.answer_byes()
    env.drain()
    env.assert_no_leftovers()


def test_invite_without_sdp_gets_our_offer_in_the_200():
    env = Env()
    sid = late_invite(env)
    ok = our_200(env)
    assert ok.content_type == "application/sdp"
    offer = sdp.find_msrp_media(sdp.parse_sdp(ok.body))
    [info] = env.ua.sessions()
    assert info.session_id == sid and info.role == "uas" and info.state == "setup"
    assert offer.path == info.local_path and offer.proto == "TCP/MSRP"
    assert offer.setup == "actpass" and offer.accept_types == ["text/plain"]
    assert info.remote_path == []  # nothing is known of the peer before the ACK
    assert env.h.events == []
    env.ua.end(sid)
    finish(env)


def test_answer_in_the_ack_sets_the_peer_path_and_waits_for_the_binding():
    env = Env()
    sid = late_invite(env)
    # the peer takes the active role (a=setup:active): we wait for it, connecting nowhere
    ack(env, answer_to(our_200(env).body, prefer_active=True))
    [info] = env.ua.sessions()
    assert info.remote_path == [PEER_PATH] and info.state == "setup"
    assert env.sent("BYE") == [] and env.h.events == []
    env.ua.end(sid)
    assert env.h.events == [("terminated", sid, "ended locally")]
    finish(env)


def test_the_answer_is_read_from_an_ack_whose_sdp_type_has_parameters_and_other_case():
    """The UA reads the answer the dialog kept from the confirming ACK (Dialog.ack_body),
    which is also the dialog's remote_sdp."""
    env = Env()
    sid = late_invite(env)
    answer = answer_to(our_200(env).body, prefer_active=True)
    ack(env, answer, "Application/SDP; charset=utf-8")
    [info] = env.ua.sessions()
    assert info.remote_path == [PEER_PATH] and env.sent("BYE") == [] and env.h.events == []
    [dialog] = env.sip.dialogs()
    assert dialog.remote_sdp == answer and dialog.ack_body == answer
    env.ua.end(sid)
    finish(env)


def test_a_retransmitted_ack_changes_nothing():
    env = Env()
    sid = late_invite(env)
    answer = answer_to(our_200(env).body, prefer_active=True)
    ack(env, answer)
    ack(env, b"", branch="z9hG4bKlateack")  # the same ACK seen again, this time bodiless
    [info] = env.ua.sessions()
    assert info.remote_path == [PEER_PATH] and env.sent("BYE") == [] and env.h.events == []
    env.ua.end(sid)
    finish(env)


def test_ack_without_an_answer_ends_the_dialog_with_bye():
    env = Env()
    sid = late_invite(env)
    ack(env)
    [(kind, esid, why)] = env.h.events
    assert (kind, esid) == ("terminated", sid) and "no SDP answer" in why
    assert len(env.sent("BYE")) == 1 and env.ua.sessions() == []
    finish(env)


@pytest.mark.parametrize("body, content_type, words", [
    (None, "text/plain", "not application/sdp"),
    (b"v=0\r\nthis is not sdp\r\n", "application/sdp", "malformed SDP line"),
    ("image/png", "application/sdp", "no content type in common"),
])
def test_ack_with_an_unusable_answer_ends_the_dialog_with_bye(body, content_type, words):
    env = Env()
    sid = late_invite(env)
    offer = our_200(env).body
    if body is None:
        body = answer_to(offer)
    elif isinstance(body, str):
        body = answer_to(offer).replace(b"text/plain", body.encode())
    ack(env, body, content_type)
    [(kind, esid, why)] = env.h.events
    assert (kind, esid) == ("terminated", sid) and words in why
    assert len(env.sent("BYE")) == 1
    finish(env)


def test_late_offer_without_ack_ends_by_timer_h_once():
    env = Env(setup_timeout=60)
    sid = late_invite(env)
    env.clock.advance(TIMER_H + 0.1)
    assert env.h.events == [("terminated", sid, "no ACK for our 200")]
    assert len(env.sent(200)) > 1  # resent until Timer H
    finish(env)
    assert len(env.h.events) == 1


def test_answer_in_the_ack_but_no_binding_ends_after_setup_timeout():
    env = Env(setup_timeout=20)
    sid = late_invite(env)
    ack(env, answer_to(our_200(env).body, prefer_active=True))  # the peer is to connect
    env.clock.advance(19.9)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.events == [("terminated", sid, "MSRP binding not done within 20 s")]
    assert len(env.sent("BYE")) == 1
    finish(env)


def test_bye_before_the_ack_terminates_as_a_bye_from_the_peer():
    env = Env()
    sid = late_invite(env)
    ok = our_200(env)
    bye = (
        "BYE sip:alice@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKlatebye\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        "Call-ID: late1@192.0.2.7\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    env.wire.deliver(bye, PEER)
    assert env.h.events == [("terminated", sid, "BYE from peer")]
    assert env.sent("BYE") == []  # the peer ended it: no BYE of ours
    env.drain()
    env.assert_no_leftovers()


def test_non_sdp_body_is_still_415_and_a_bodyless_invite_with_sdp_type_is_a_late_offer():
    env = Env()
    sid = late_invite(env, headers="Content-Type: application/sdp\r\n")
    assert sdp.parse_sdp(our_200(env).body).media  # our offer went out
    env.ua.end(sid)
    finish(env)


def test_late_offer_over_the_session_limit_is_503_and_keeps_nothing():
    env = Env(max_sessions=0)
    with pytest.raises(UAError) as refused:
        late_invite(env)
    assert refused.value.code == 503
    assert env.sent(200) == [] and len(env.msrp.table) == 0 and env.sip.dialogs() == []


def test_the_gateways_msrp_gw_answer_answers_a_late_offer_and_ends_it_on_a_bad_ack():
    """routing's default INVITE path (msrp_gw_answer) over the real UA, unchanged."""
    from msrp_gateway.gateway import OK, Gateway
    from msrp_gateway.routing import RequestView

    env = Env()
    gw = Gateway(env.clock, env.ua, env.sip, emit_event=lambda name, params: None)
    data = (
        "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKlate1;rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=77\r\n"
        "To: <sip:alice@gw.example>\r\nCall-ID: late1@192.0.2.7\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:bob@192.0.2.7:5060>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    env.wire.deliver(parse_message(data), PEER)
    [txn] = env.incoming
    req = RequestView(txn)
    key = "sip:bob@example.net-sip:alice@gw.example"
    assert gw.msrp_gw_answer(req, key, "text/plain", req.from_uri, req.to_uri, req.ruri) == OK
    assert sdp.parse_sdp(our_200(env).body).media and req.owned
    assert [s["key"] for s in gw.list_sessions()] == [key]
    ack(env)  # no answer in the ACK: BYE, and the gateway session is gone
    assert len(env.sent("BYE")) == 1 and gw.list_sessions() == []
    finish(env)


# ---- any order of what the peer does: one ending, nothing left ------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LATE_ACTIONS = ["ack_answer", "ack_empty", "ack_bad", "ack_again", "peer_bye", "advance_small",
                "advance_big", "end", "send"]


def _peer_bye(env: Env, cseq: int) -> None:
    ok = our_200(env)
    env.wire.deliver((
        "BYE sip:alice@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKlatebye{cseq}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: late1@192.0.2.7\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode(), PEER)


@settings(max_examples=60, deadline=None)
@given(actions=st.lists(st.sampled_from(LATE_ACTIONS), max_size=8))
def test_any_order_of_peer_events_gives_one_ending_and_no_leftovers(actions):
    env = Env(max_duration=500)
    sid = late_invite(env)
    offer = our_200(env).body
    for n, action in enumerate(actions):
        if action == "ack_answer":
            ack(env, answer_to(offer, prefer_active=True), branch=f"z9hG4bKa{n}")
        elif action == "ack_empty":
            ack(env, branch=f"z9hG4bKa{n}")
        elif action == "ack_bad":
            bad = answer_to(offer, prefer_active=True).replace(b"text/plain", b"image/png")
            ack(env, bad, branch=f"z9hG4bKa{n}")
        elif action == "ack_again":
            ack(env, answer_to(offer, prefer_active=True), branch="z9hG4bKa0")
        elif action == "peer_bye":
            _peer_bye(env, 10 + n)
        elif action == "advance_small":
            env.clock.advance(1)
        elif action == "advance_big":
            env.clock.advance(25)
        elif action == "end":
            env.ua.end(sid)
        elif action == "send":
            env.ua.send(sid, "text/plain", b"x").addErrback(lambda f: None)
    env.clock.advance(0)
    env.drain()  # setup_timeout (30 s) and every SIP timer have run out
    env.answer_byes()
    env.drain()
    endings = [e for e in env.h.events if e[0] in ("failed", "terminated")]
    assert len(endings) == 1 and endings[0][0] == "terminated", env.h.events
    assert env.h.events[-1] == endings[0]
    # at most one BYE of ours (its UDP retransmissions share its branch)
    assert len({bye.top_via.branch for bye in env.sent("BYE")}) <= 1
    env.assert_no_leftovers()
