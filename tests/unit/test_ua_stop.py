"""`ua.stop(deadline)` keeps shutdown bounded when peers never answer; `ua.send` fails at once.

The real SIP stack (on `testing.FakeSIPTransport`) and the real MSRP stack run on one
`task.Clock`: a peer that never ACKs our 200 holds our BYE for 64*T1, and a peer that never
answers a BYE holds it for Timer F; with a deadline `stop()` fires by then anyway.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.logger import globalLogPublisher

from msrp_gateway import sdp
from msrp_gateway.msrp.transport import MSRPStack
from msrp_gateway.sip.message import SIPRequest, make_response, parse_message
from msrp_gateway.sip.stack import ServerTransaction, SIPStack
from msrp_gateway.sip.transaction import TIMER_B
from msrp_gateway.testing import FakePeer, FakeSIPTransport
from msrp_gateway.ua import MSRPUserAgent, UASettings

PEER_PATH = "msrp://192.0.2.7:7777/peerSess01;tcp"
PEER = FakePeer("udp", "192.0.2.7", 5060)


class Handler:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def established(self, sid: str) -> None:
        self.events.append(("established", sid))

    def failed(self, sid: str, code: Any, reason: Any) -> None:
        self.events.append(("failed", sid))

    def terminated(self, sid: str, why: str) -> None:
        self.events.append(("terminated", sid, why))

    def message_received(self, sid: str, msg: Any) -> None:
        pass

    def report_received(self, sid: str, report: Any) -> None:
        pass


class Env:
    def __init__(self) -> None:
        self.clock = task.Clock()
        self.wire = FakeSIPTransport()
        self.incoming: list[ServerTransaction] = []
        self.sip = SIPStack(self.clock, self.wire, local_uri_host="127.0.0.1",
                            router=self.incoming.append)
        self.msrp = MSRPStack(self.clock, "msrp://127.0.0.1:2855;tcp")
        self.ua = MSRPUserAgent(self.clock, self.sip, self.msrp, UASettings())
        self.h = Handler()

    def sent(self, method: str) -> list[SIPRequest]:
        return [m for m, _ in self.wire.sent if isinstance(m, SIPRequest) and m.method == method]

    def invite_in(self, n: int) -> str:
        """An INVITE from the peer that the UA answers 200 (the peer will never ACK)."""
        offer = sdp.build_offer([PEER_PATH], ["text/plain"], setup="active", sess_id=9)
        data = (
            "INVITE sip:alice@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKpeer{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bob@example.net>;tag=7{n}\r\n"
            "To: <sip:alice@gw.example>\r\n"
            f"Call-ID: peercall{n}@192.0.2.7\r\n"
            "CSeq: 1 INVITE\r\n"
            "Contact: <sip:bob@192.0.2.7:5060>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(offer)}\r\n\r\n"
        ).encode() + offer
        self.wire.deliver(parse_message(data), PEER)
        return self.ua.answer(self.incoming[-1], "text/plain", self.h)

    def drain(self) -> None:
        for _ in range(int(3 * TIMER_B)):
            self.clock.advance(1.0)


def capture_logs() -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    return seen


def test_stop_with_a_deadline_fires_by_then_when_peers_never_ack_and_logs_how_many():
    env = Env()
    sids = [env.invite_in(n) for n in range(3)]
    assert len(env.ua) == 3
    seen = capture_logs()
    try:
        d = env.ua.stop(deadline=5.0)
        assert sorted(e[1] for e in env.h.events) == sorted(sids)  # ended at once
        env.clock.advance(4.99)
        assert not d.called  # BYEs wait for ACKs that never come (up to 64*T1)
        env.clock.advance(0.01)
        assert d.called and d.result is None
    finally:
        globalLogPublisher.removeObserver(seen.append)
    lines = [e for e in seen if "unanswered" in e.get("log_format", "")]
    assert len(lines) == 1 and lines[0]["n"] == 3 and lines[0]["total"] == 3
    env.drain()  # the stack's own timers still end what is left
    assert env.sip.transaction_count == 0 and env.sip.dialogs() == []
    assert env.clock.getDelayedCalls() == []


def test_stop_without_a_deadline_waits_for_the_bye_transactions():
    env = Env()
    env.invite_in(1)
    d = env.ua.stop()
    env.clock.advance(10.0)
    assert not d.called  # no bound: the old behaviour, kept for callers without one
    env.drain()
    assert d.called


def test_stop_with_a_deadline_fires_at_once_when_every_bye_is_answered():
    env = Env()
    sid = env.ua.start("text/plain", "sip:alice@gw.example", "sip:bob@example.net",
                       "sip:bob@192.0.2.7", env.h)
    [invite] = env.sent("INVITE")
    answer = sdp.build_offer([PEER_PATH], ["text/plain"], setup="active", sess_id=9)
    resp = make_response(invite, 200, to_tag="peer77", body=answer,
                         content_type="application/sdp")
    resp.headers.add("Contact", "<sip:bob@192.0.2.7:5060>")
    env.wire.deliver(resp.to_bytes(), PEER)
    d = env.ua.stop(deadline=30.0)
    [bye] = env.sent("BYE")
    assert not d.called
    env.wire.deliver(make_response(bye, 200).to_bytes(), PEER)
    assert d.called  # no waiting for the deadline once every BYE is answered
    assert env.h.events == [("terminated", sid, "ended locally")]
    env.drain()
    assert env.clock.getDelayedCalls() == []


def test_stop_with_nothing_to_end_fires_at_once():
    env = Env()
    d = env.ua.stop(deadline=5.0)
    assert d.called and env.clock.getDelayedCalls() == []
