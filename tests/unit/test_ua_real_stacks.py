"""The UA's failure paths over the real SIP and MSRP stacks: nothing is left behind.

test_ua.py proves "no leftovers" against the fakes in `msrp_gateway.testing`; here the same
paths (486, 603, Timer B, an answer with no common type, no ACK, no MSRP connection) run
through the real `SIPStack` over `testing.FakeSIPTransport` and the real `MSRPStack`, all
on one `task.Clock`, and the real tables are checked: SIP transactions and dialogs, MSRP
sessions and connections, and the clock's pending calls. The paths that need a socket (our
MSRP connect refused or never answered) are in tests/integration/test_ua_loopback.py, on
this module's `Env` with the MSRP stack on the real reactor.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task

from msrp_gateway import sdp
from msrp_gateway.msrp.session import SessionSettings
from msrp_gateway.msrp.transport import MSRPStack
from msrp_gateway.sip.message import SIPRequest, SIPResponse, make_response, parse_message
from msrp_gateway.sip.stack import ServerTransaction, SIPStack
from msrp_gateway.sip.transaction import TIMER_B, TIMER_H
from msrp_gateway.testing import FakePeer, FakeSIPTransport
from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings

PEER_PATH = "msrp://192.0.2.7:7777/peerSess01;tcp"
PEER = FakePeer("udp", "192.0.2.7", 5060)
# Long enough for every transaction and dialog timer to run out (Timer D/J/K/L, 64*T1).
DRAIN = 3 * 64 * 0.5


class Recorder:
    """A UA handler writing down its notifications."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def established(self, sid: str) -> None:
        self.events.append(("established", sid))

    def failed(self, sid: str, code: int | None, reason: str | None) -> None:
        self.events.append(("failed", sid, code, reason))

    def terminated(self, sid: str, why: str) -> None:
        self.events.append(("terminated", sid, why))

    def message_received(self, sid: str, msg: Any) -> None:
        self.events.append(("message", sid))

    def report_received(self, sid: str, report: Any) -> None:
        self.events.append(("report", sid))


def peer_sdp(types: tuple[str, ...] = ("text/plain",), setup: str = "passive") -> bytes:
    return sdp.build_offer([PEER_PATH], list(types), setup=setup, sess_id=9)


class Env:
    """Real SIP stack on a fake wire, real MSRP stack, the UA; one clock for all of them.

    `msrp_reactor` replaces the clock for the MSRP stack only (a path that needs sockets),
    `msrp_settings` its `SessionSettings`.
    """

    def __init__(self, msrp_reactor: Any = None, msrp_settings: SessionSettings | None = None,
                 **settings: Any) -> None:
        self.clock = task.Clock()
        self.wire = FakeSIPTransport()
        self.incoming: list[ServerTransaction] = []
        self.sip = SIPStack(self.clock, self.wire, local_uri_host="127.0.0.1",
                            router=self.incoming.append)
        self.msrp = MSRPStack(msrp_reactor or self.clock, "msrp://127.0.0.1:2855;tcp",
                              settings=msrp_settings)
        self.ua = MSRPUserAgent(self.clock, self.sip, self.msrp, UASettings(**settings))
        self.h = Recorder()

    # -- playing the SIP peer -----------------------------------------------------------
    def sent(self, method: str | int) -> list[Any]:
        """Messages we sent so far with that method (requests) or status (responses)."""
        out = []
        for msg, _ in self.wire.sent:
            if isinstance(msg, SIPRequest) and msg.method == method:
                out.append(msg)
            elif isinstance(msg, SIPResponse) and msg.status == method:
                out.append(msg)
        return out

    def start(self, handler: Any = None) -> tuple[str, SIPRequest]:
        sid = self.ua.start("text/plain", "sip:alice@gw.example", "sip:bob@example.net",
                            "sip:bob@192.0.2.7", handler or self.h)
        [invite] = self.sent("INVITE")
        return sid, invite

    def answer(self, req: SIPRequest, status: int, *, body: bytes = b"") -> SIPResponse:
        resp = make_response(req, status, to_tag="peer77", body=body,
                             content_type="application/sdp" if body else None)
        if 200 <= status < 300 and req.method == "INVITE":
            resp.headers.add("Contact", "<sip:bob@192.0.2.7:5060>")
        self.wire.deliver(resp.to_bytes(), PEER)
        return resp

    def answer_byes(self) -> int:
        """200 to every BYE we sent; how many there were."""
        byes = self.sent("BYE")
        for bye in byes:
            self.wire.deliver(make_response(bye, 200).to_bytes(), PEER)
        return len(byes)

    def invite_in(self, offer: bytes) -> str:
        """An INVITE from the peer, answered by the UA; returns the session id."""
        data = (
            "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKpeer1;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:bob@example.net>;tag=77\r\n"
            "To: <sip:alice@gw.example>\r\n"
            "Call-ID: peercall1@192.0.2.7\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:bob@192.0.2.7:5060>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(offer)}\r\n\r\n"
        ).encode() + offer
        self.wire.deliver(parse_message(data), PEER)
        [txn] = self.incoming
        return self.ua.answer(txn, "text/plain", self.h)

    # -- the proof ----------------------------------------------------------------------
    def drain(self) -> None:
        """Let every timer that is meant to end run out (retransmissions answered or not)."""
        for _ in range(int(DRAIN)):
            self.clock.advance(1.0)

    def assert_no_leftovers(self) -> None:
        assert self.ua.sessions() == [] and len(self.ua) == 0
        assert self.sip.transaction_count == 0, "SIP transactions left"
        assert self.sip.dialogs() == [], "SIP dialogs left"
        assert len(self.msrp.table) == 0, "MSRP sessions left"
        assert self.msrp.connection_count() == 0, "MSRP connections left"
        assert self.clock.getDelayedCalls() == [], "timers left on the clock"


# ---- UAC: our INVITE ----------------------------------------------------------------------

@pytest.mark.parametrize("code, reason", [(486, "Busy Here"), (603, "Decline")])
def test_refused_invite_fails_once_and_leaves_nothing_in_the_real_stacks(code, reason):
    env = Env()
    sid, invite = env.start()
    assert len(env.msrp.table) == 1 and env.sip.transaction_count == 1
    env.answer(invite, code)
    assert env.h.events == [("failed", sid, code, reason)]
    [ack] = env.sent("ACK")  # s.17.1.1.3: the stack ACKs the failure itself
    assert ack.cseq == (invite.cseq[0], "ACK")
    env.drain()
    assert env.h.events == [("failed", sid, code, reason)]
    env.assert_no_leftovers()


def test_timer_b_fails_without_code_and_leaves_nothing_in_the_real_stacks():
    env = Env()
    sid, _ = env.start()
    env.clock.advance(TIMER_B - 0.1)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.events == [("failed", sid, None, None)]
    assert len(env.sent("INVITE")) > 1  # retransmitted over UDP meanwhile (Timer A)
    env.drain()
    env.assert_no_leftovers()


def test_answer_without_common_type_is_acked_byed_and_leaves_nothing():
    env = Env()
    sid, invite = env.start()
    env.answer(invite, 200, body=peer_sdp(types=("image/png",)))
    assert env.h.events == [("failed", sid, None, None)]
    assert len(env.sent("ACK")) == 1 and env.answer_byes() == 1
    env.drain()
    env.assert_no_leftovers()


def test_answer_without_common_type_leaves_nothing_even_if_the_bye_is_never_answered():
    env = Env()
    sid, invite = env.start()
    env.answer(invite, 200, body=peer_sdp(types=("image/png",)))
    assert env.h.events == [("failed", sid, None, None)]
    env.drain()  # Timer F ends our BYE's transaction
    assert len(env.sent("BYE")) > 1  # retransmitted, never answered
    env.assert_no_leftovers()


def test_answerer_that_never_connects_to_us_gets_bye_and_leaves_nothing():
    env = Env(setup_timeout=10)
    sid, invite = env.start()
    env.answer(invite, 200, body=peer_sdp(setup="active"))  # the peer will connect: it never does
    assert len(env.msrp.table) == 1
    env.clock.advance(10)
    assert env.h.events == [("failed", sid, None, None)]
    assert env.answer_byes() == 1
    env.drain()
    env.assert_no_leftovers()


# ---- UAS: the peer's INVITE ------------------------------------------------------------------

def test_ack_never_received_terminates_once_with_bye_and_leaves_nothing():
    env = Env(setup_timeout=60)
    sid = env.invite_in(peer_sdp(setup="actpass"))  # we answer passive: the peer connects
    assert len(env.sent(200)) == 1 and env.sip.dialogs() != []
    env.clock.advance(TIMER_H + 0.1)
    assert env.h.events == [("terminated", sid, "no ACK for our 200")]
    assert len(env.sent(200)) > 1  # the 200 was resent until Timer H
    assert env.answer_byes() == 1
    env.drain()
    assert len(env.h.events) == 1
    env.assert_no_leftovers()


def test_msrp_connection_never_made_terminates_with_bye_and_leaves_nothing():
    env = Env()
    sid = env.invite_in(peer_sdp(setup="active"))  # the peer connects to us: it never does
    [ok] = env.sent(200)
    ack = (
        "ACK sip:127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKpeer2\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        "Call-ID: peercall1@192.0.2.7\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    env.wire.deliver(ack, PEER)
    env.clock.advance(29.9)
    assert env.h.events == []
    env.clock.advance(0.2)
    assert env.h.events == [("terminated", sid, "MSRP binding not done within 30 s")]
    assert env.answer_byes() == 1
    env.drain()
    env.assert_no_leftovers()


def test_offer_without_common_type_is_refused_488_and_leaves_nothing():
    env = Env()
    with pytest.raises(UAError) as refused:
        env.invite_in(peer_sdp(types=("image/png",)))
    assert refused.value.code == 488
    assert len(env.msrp.table) == 0 and env.sip.dialogs() == []  # nothing kept for it
    [txn] = env.incoming
    txn.respond(refused.value.code, refused.value.reason, headers=refused.value.headers)
    [answer] = env.sent(488)
    assert (answer.headers.get("Warning") or "").startswith("305 ")
    env.drain()  # the peer never ACKs: Timer H ends the transaction
    assert env.h.events == []
    env.assert_no_leftovers()
