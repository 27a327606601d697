"""The SIP stack and its dialogs, driven through an in-memory transport on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet import task

from msrp_gateway.sip.message import SIPRequest, SIPResponse, make_response
from msrp_gateway.sip.stack import (
    SIPFinalResponse,
    SIPStack,
    SIPTimeout,
    SIPTransportError,
)
from msrp_gateway.testing import FakePeer, FakeSIPTransport

PEER = FakePeer("udp", "192.0.2.7", 5062)
TCP_PEER = FakePeer("tcp", "192.0.2.7", 5062)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"


class Env:
    def __init__(self, *, router=None, **kw) -> None:
        self.clock = task.Clock()
        self.transport = FakeSIPTransport("127.0.0.1", 5060)
        self.routed: list = []
        self.stack = SIPStack(self.clock, self.transport, local_uri_host="127.0.0.1:5060",
                              router=router or self.routed.append, **kw)

    def deliver(self, data: bytes, peer=PEER) -> None:
        self.transport.deliver(data, peer)

    def advance_to(self, when: float) -> None:
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                break
            self.clock.rightNow = max(self.clock.rightNow, min(due))
            self.clock.advance(0)
        self.clock.rightNow = max(self.clock.rightNow, when)

    def sent_times(self, pred) -> list[float]:
        return [round(t, 3) for t, m in self.log if pred(m)]


def req_bytes(method: str, *, branch: str = "z9hG4bKpeer1", call_id: str = "c1@peer",
              from_tag: str = "pt1", to_tag: str | None = None, cseq: int = 1,
              cseq_method: str | None = None, body: bytes = b"", ctype: str | None = None,
              max_forwards: int = 70, extra: str = "", transport: str = "UDP") -> bytes:
    to = "<sip:gw@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:gw@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 192.0.2.7:5062;branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: \"Peer\" <sip:alice@192.0.2.7>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@192.0.2.7:5062>\r\n"
        + (f"Content-Type: {ctype}\r\n" if ctype else "")
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def statuses(msgs) -> list:
    return [m.status if isinstance(m, SIPResponse) else m.method for m in msgs]


def recorder(env: Env) -> list:
    """Timestamped copy of everything sent: wraps the fake transport's send."""
    log: list = []
    orig = env.transport.send

    def send(msg, peer):
        d = orig(msg, peer)
        log.append((env.clock.seconds(), env.transport.sent[-1][0]))
        return d

    env.transport.send = send
    env.log = log
    return log


# -- server side: transactions and the UA core -------------------------------------------------


def test_message_reaches_router_once_and_retransmissions_get_the_same_answer():
    env = Env()
    env.deliver(req_bytes("MESSAGE", body=b"hi", ctype="text/plain"))
    assert len(env.routed) == 1
    txn = env.routed[0]
    assert txn.request.body == b"hi" and txn.source == PEER
    txn.respond(202)
    env.deliver(req_bytes("MESSAGE", body=b"hi", ctype="text/plain"))
    sent = env.transport.take()
    assert statuses(sent) == [202, 202]
    assert sent[0].to_tag == sent[1].to_tag and sent[0].to_tag
    assert len(env.routed) == 1
    env.advance_to(31.9)
    env.deliver(req_bytes("MESSAGE", body=b"hi", ctype="text/plain"))
    assert statuses(env.transport.take()) == [202]
    assert len(env.routed) == 1
    env.advance_to(32.1)  # Timer J is over: the same request is a new one now
    env.deliver(req_bytes("MESSAGE", body=b"hi", ctype="text/plain"))
    assert len(env.routed) == 2


def test_options_out_of_dialog_gets_200_without_the_router():
    env = Env()
    env.deliver(req_bytes("OPTIONS"))
    (resp,) = env.transport.take()
    assert resp.status == 200 and "INVITE" in resp.headers.get("Allow")
    assert env.routed == []


def test_max_forwards_zero_gets_483():
    env = Env()
    env.deliver(req_bytes("MESSAGE", max_forwards=0))
    assert statuses(env.transport.take()) == [483]
    assert env.routed == []


def test_request_for_an_unknown_dialog_gets_481():
    env = Env()
    env.deliver(req_bytes("BYE", to_tag="nosuch"))
    assert statuses(env.transport.take()) == [481]


def test_full_transaction_table_answers_503():
    env = Env(max_transactions=1)
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKa", call_id="a"))
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKb", call_id="b"))
    (resp,) = env.transport.take()
    assert resp.status == 503 and resp.headers.get("Retry-After")
    assert len(env.routed) == 1


def test_router_exception_answers_500():
    def boom(txn):
        raise RuntimeError("script bug")

    env = Env(router=boom)
    env.deliver(req_bytes("MESSAGE"))
    assert statuses(env.transport.take()) == [500]


def test_cancel_gets_200_and_the_invite_487_and_on_cancel_runs():
    env = Env()
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (txn,) = env.routed
    cancelled = []
    txn.on_cancel = lambda: cancelled.append(True)
    env.deliver(req_bytes("CANCEL"))
    sent = env.transport.take()
    assert statuses(sent) == [100, 200, 487]
    assert sent[1].cseq == (1, "CANCEL") and sent[2].cseq == (1, "INVITE")
    assert cancelled == [True] and txn.responded
    # the ACK for the 487 is absorbed by the INVITE transaction (no retransmission after it)
    env.deliver(req_bytes("ACK", to_tag=sent[2].to_tag, cseq_method="ACK"))
    env.advance_to(10)
    assert env.transport.take() == []


def test_cancel_for_no_invite_gets_481():
    env = Env()
    env.deliver(req_bytes("CANCEL", branch="z9hG4bKunknown"))
    assert statuses(env.transport.take()) == [481]


def test_failure_to_invite_is_retransmitted_over_udp_until_ack():
    env = Env(router=lambda txn: txn.respond(486))
    log = recorder(env)
    env.deliver(req_bytes("INVITE"))
    env.advance_to(2)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 486) == [0, 0.5, 1.5]
    env.deliver(req_bytes("ACK", to_tag=log[-1][1].to_tag, cseq_method="ACK"))
    env.advance_to(20)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 486) == [0, 0.5, 1.5]


def test_no_retransmission_of_responses_over_tcp():
    env = Env(router=lambda txn: txn.respond(486))
    recorder(env)
    env.deliver(req_bytes("INVITE", transport="TCP"), TCP_PEER)
    env.advance_to(40)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 486) == [0]
    assert env.stack.transaction_count == 0  # Timer H ended it


def test_unanswered_request_gets_500_from_the_guard():
    env = Env()
    env.deliver(req_bytes("MESSAGE"))
    env.advance_to(33)
    assert statuses(env.transport.take()) == [500]


# -- UAS dialogs ----------------------------------------------------------------------------


def accept_router(env: Env):
    dialogs = []

    def route(txn):
        dialogs.append(env.stack.accept(txn, body=b"answer-sdp", content_type="application/sdp"))

    return route, dialogs


def test_uas_2xx_is_retransmitted_t1_doubling_to_t2_until_the_ack_confirms_the_dialog():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    log = recorder(env)
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    ok = log[-1][1]
    assert ok.status == 200 and ok.to_tag == dialog.local_tag
    assert ok.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    assert ok.body == b"answer-sdp"
    confirmed = []
    dialog.confirmed.addCallback(confirmed.append)
    env.advance_to(8)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 200) == [0, 0.5, 1.5, 3.5, 7.5]
    env.deliver(req_bytes("ACK", branch="z9hG4bKack1", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    assert confirmed == [dialog]
    env.advance_to(40)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 200) == [0, 0.5, 1.5, 3.5, 7.5]
    assert dialog.remote_sdp == SDP and dialog.remote_target == "sip:alice@192.0.2.7:5062"


def test_uas_without_ack_gives_up_after_64_t1_and_sends_bye():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    recorder(env)
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    failures = []
    dialog.confirmed.addErrback(failures.append)
    env.advance_to(33)
    assert len(failures) == 1 and failures[0].check(SIPTimeout)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 200) == [
        0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    byes = [m for _, m in env.log if getattr(m, "method", "") == "BYE"]
    assert len({b.top_via.branch for b in byes}) == 1  # one BYE (and its retransmission)
    assert byes[0].uri == "sip:alice@192.0.2.7:5062"
    assert dialog.terminated


def test_uas_bye_from_peer_gets_200_calls_on_bye_and_ends_the_dialog():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    env.deliver(req_bytes("ACK", branch="z9hG4bKack", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    byes = []
    dialog.on_bye = lambda: byes.append(True)
    env.transport.take()
    env.deliver(req_bytes("BYE", branch="z9hG4bKbye", to_tag=dialog.local_tag, cseq=2))
    assert statuses(env.transport.take()) == [200]
    assert byes == [True] and dialog.terminated
    env.deliver(req_bytes("BYE", branch="z9hG4bKbye2", to_tag=dialog.local_tag, cseq=3))
    assert statuses(env.transport.take()) == [481]


def test_reinvite_gets_200_with_the_last_sdp_and_keeps_the_dialog():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    env.deliver(req_bytes("ACK", branch="z9hG4bKack", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    env.transport.take()
    env.deliver(req_bytes("INVITE", branch="z9hG4bKre", to_tag=dialog.local_tag, cseq=2,
                          body=SDP, ctype="application/sdp"))
    sent = env.transport.take()
    assert statuses(sent) == [100, 200]
    assert sent[1].body == b"answer-sdp" and sent[1].to_tag == dialog.local_tag
    env.deliver(req_bytes("ACK", branch="z9hG4bKack2", to_tag=dialog.local_tag, cseq=2,
                          cseq_method="ACK"))
    env.advance_to(5)
    assert env.transport.take() == []  # the ACK stopped the re-INVITE's 2xx retransmission
    assert not dialog.terminated and len(env.routed) == 0
    env.deliver(req_bytes("BYE", branch="z9hG4bKbye", to_tag=dialog.local_tag, cseq=3))
    assert statuses(env.transport.take()) == [200]


def test_in_dialog_request_with_old_cseq_gets_500():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp", cseq=5))
    (dialog,) = dialogs
    env.transport.take()
    env.deliver(req_bytes("INFO", branch="z9hG4bKinfo", to_tag=dialog.local_tag, cseq=4))
    assert statuses(env.transport.take()) == [500]


def test_uas_bye_waits_for_the_ack():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    env.transport.take()
    done = []
    dialog.bye().addCallback(done.append)
    assert "BYE" not in statuses(env.transport.take())
    env.deliver(req_bytes("ACK", branch="z9hG4bKack", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    (bye,) = env.transport.take()
    assert bye.method == "BYE" and bye.to_tag == "pt1" and bye.from_tag == dialog.local_tag
    env.deliver(make_response(bye, 200).to_bytes())
    assert [r.status for r in done] == [200]


# -- UAC: requests and INVITE dialogs --------------------------------------------------------


def outgoing(env: Env, method: str, ruri: str = "sip:bob@192.0.2.9:5070", **kw) -> SIPRequest:
    return env.stack.new_request(method, "sip:gw@127.0.0.1", "sip:bob@192.0.2.9", ruri, **kw)


def test_send_request_retransmits_over_udp_and_fires_with_the_final_response():
    env = Env()
    recorder(env)
    req = outgoing(env, "MESSAGE", body=b"hello", content_type="text/plain")
    results = []
    env.stack.send_request(req).addCallback(results.append)
    env.advance_to(2)
    assert env.sent_times(lambda m: getattr(m, "method", "") == "MESSAGE") == [0, 0.5, 1.5]
    sent = env.log[0][1]
    assert sent.top_via.branch.startswith("z9hG4bK") and "rport" in sent.top_via.params
    assert sent.top_via.host == "127.0.0.1" and sent.top_via.port == 5060
    assert env.transport.sent[0][1] == FakePeer("udp", "192.0.2.9", 5070)
    env.deliver(make_response(sent, 202, to_tag="x").to_bytes())
    assert [r.status for r in results] == [202]
    env.advance_to(10)
    assert env.sent_times(lambda m: getattr(m, "method", "") == "MESSAGE") == [0, 0.5, 1.5]


def test_send_request_times_out_with_sip_timeout_after_timer_f():
    env = Env()
    failures = []
    env.stack.send_request(outgoing(env, "MESSAGE")).addErrback(failures.append)
    env.advance_to(31.9)
    assert failures == []
    env.advance_to(32.1)
    assert len(failures) == 1 and failures[0].check(SIPTimeout)


def test_send_request_over_tcp_is_sent_once():
    env = Env()
    recorder(env)
    env.stack.send_request(outgoing(env, "MESSAGE", "sip:bob@192.0.2.9;transport=tcp"))
    env.advance_to(40)
    assert env.sent_times(lambda m: getattr(m, "method", "") == "MESSAGE") == [0]
    assert env.transport.sent[0][1].transport == "tcp"
    assert env.log[0][1].top_via.protocol == "TCP"


def test_send_failure_errbacks_sip_transport_error():
    env = Env()
    env.transport.fail_sends = True
    failures = []
    env.stack.send_request(outgoing(env, "MESSAGE")).addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(SIPTransportError)
    assert env.stack.transaction_count == 0


def test_outbound_proxy_is_a_preloaded_loose_route_and_the_next_hop():
    env = Env(outbound_proxy="sip:proxy.example.net:5080;transport=tcp")
    req = outgoing(env, "MESSAGE")
    assert req.headers.get_all("Route") == ["<sip:proxy.example.net:5080;transport=tcp;lr>"]
    assert req.uri == "sip:bob@192.0.2.9:5070"
    env.stack.send_request(req)
    assert env.transport.sent[0][1] == FakePeer("tcp", "proxy.example.net", 5080)


def uac_answer(env: Env, invite: SIPRequest, status: int, *, rr: bool = True,
               body: bytes = b"") -> bytes:
    headers = [("Contact", "<sip:bob@192.0.2.9:5099;transport=udp>")]
    resp = make_response(invite, status, to_tag="callee1", headers=headers, body=body,
                         content_type="application/sdp" if body else None)
    if rr:
        resp.headers.add("Record-Route", "<sip:p1.example.net;lr>, <sip:p2.example.net;lr>")
    return resp.to_bytes()


def bye_from_callee(invite: SIPRequest, cseq: int = 9, branch: str = "z9hG4bKcross") -> bytes:
    return (
        "BYE sip:127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.9:5099;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:bob@192.0.2.9>;tag=callee1\r\n"
        f"To: {invite.headers.get('From')}\r\n"
        f"Call-ID: {invite.call_id}\r\n"
        f"CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_uac_invite_2xx_is_acked_and_gives_a_dialog_with_route_set_and_target():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE", body=SDP, content_type="application/sdp"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    assert invite.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    env.deliver(uac_answer(env, invite, 180, rr=False))
    env.deliver(uac_answer(env, invite, 200, body=b"answer"))
    (dialog,) = dialogs
    assert dialog.remote_tag == "callee1" and dialog.local_tag == invite.from_tag
    assert dialog.remote_target == "sip:bob@192.0.2.9:5099;transport=udp"
    assert dialog.route_set == ["<sip:p2.example.net;lr>", "<sip:p1.example.net;lr>"]
    assert dialog.response.body == b"answer" and dialog.remote_sdp == b"answer"
    ((ack, hop),) = env.transport.sent
    env.transport.take()
    assert hop == FakePeer("udp", "p2.example.net", 5060)  # first hop of the route set
    assert ack.method == "ACK" and ack.cseq == (invite.cseq[0], "ACK")
    assert ack.uri == "sip:bob@192.0.2.9:5099;transport=udp"
    assert ack.headers.get_all("Route") == ["<sip:p2.example.net;lr>", "<sip:p1.example.net;lr>"]
    assert ack.top_via.branch != invite.top_via.branch  # a new transaction-less request
    # a 2xx retransmission (our ACK was lost) is ACKed again
    env.deliver(uac_answer(env, invite, 200, body=b"answer"))
    assert statuses(env.transport.take()) == ["ACK"]
    # BYE from us: next CSeq, to the remote target, through the route set
    results = []
    dialog.bye().addCallback(results.append)
    (bye,) = env.transport.take()
    assert bye.cseq == (invite.cseq[0] + 1, "BYE")
    assert bye.uri == dialog.remote_target and bye.to_tag == "callee1"
    assert dialog.terminated
    env.deliver(make_response(bye, 200).to_bytes())
    assert [r.status for r in results] == [200]


def test_uac_bye_from_peer_gets_200_and_on_bye():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE", body=SDP, content_type="application/sdp"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 200, rr=False, body=b"answer"))
    (dialog,) = dialogs
    ended = []
    dialog.on_bye = lambda: ended.append(True)
    env.transport.take()
    env.deliver(bye_from_callee(invite), FakePeer("udp", "192.0.2.9", 5099))
    assert statuses(env.transport.take()) == [200]
    assert ended == [True] and dialog.terminated


def test_uac_invite_refused_errbacks_final_response_and_the_transaction_acks():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    failures = []
    client.deferred.addErrback(failures.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 486, rr=False))
    assert failures[0].check(SIPFinalResponse) and failures[0].value.code == 486
    (ack,) = env.transport.take()
    assert ack.method == "ACK" and ack.top_via.branch == invite.top_via.branch


def test_uac_invite_times_out_with_timer_b():
    env = Env()
    recorder(env)
    client = env.stack.invite(outgoing(env, "INVITE"))
    failures = []
    client.deferred.addErrback(failures.append)
    env.advance_to(40)
    assert failures[0].check(SIPTimeout)
    assert env.sent_times(lambda m: True) == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def test_uac_cancel_after_provisional_sends_cancel_and_487_errbacks():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    failures = []
    client.deferred.addErrback(failures.append)
    (invite,) = env.transport.take()
    client.cancel()
    assert env.transport.take() == []  # s.9.1: no CANCEL before a provisional response
    env.deliver(uac_answer(env, invite, 180, rr=False))
    (cancel,) = env.transport.take()
    assert cancel.method == "CANCEL" and cancel.cseq == (invite.cseq[0], "CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch and cancel.uri == invite.uri
    env.deliver(make_response(cancel, 200).to_bytes())
    env.deliver(uac_answer(env, invite, 487, rr=False))
    assert failures[0].check(SIPFinalResponse) and failures[0].value.code == 487
    assert statuses(env.transport.take()) == ["ACK"]


def test_uac_2xx_crossing_a_cancel_is_acked_and_byed():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    failures = []
    client.deferred.addErrback(failures.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 180, rr=False))
    client.cancel()
    env.transport.take()
    env.deliver(uac_answer(env, invite, 200, rr=False, body=b"answer"))
    assert statuses(env.transport.take()) == ["ACK", "BYE"]
    assert failures[0].check(SIPFinalResponse) and failures[0].value.code == 487


@pytest.mark.parametrize("status", [404, 503])
def test_send_request_fires_with_any_final_status(status):
    env = Env()
    results = []
    req = outgoing(env, "MESSAGE")
    env.stack.send_request(req).addCallback(results.append)
    (sent,) = env.transport.take()
    env.deliver(make_response(sent, status).to_bytes())
    assert [r.status for r in results] == [status]


def test_require_of_an_unknown_extension_gets_420_with_unsupported():
    env = Env()
    env.deliver(req_bytes("MESSAGE", extra="Require: 100rel, timer\r\n"))
    (resp,) = env.transport.take()
    assert resp.status == 420 and resp.headers.get("Unsupported") == "100rel, timer"
    assert env.routed == []


def test_a_2xx_from_a_second_fork_is_acked_and_byed():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 200, rr=False, body=b"answer"))
    assert statuses(env.transport.take()) == ["ACK"]
    fork = make_response(invite, 200, to_tag="fork2", body=b"other",
                         headers=[("Contact", "<sip:carol@192.0.2.10>")])
    env.deliver(fork.to_bytes())
    sent = env.transport.take()
    assert statuses(sent) == ["ACK", "BYE"] and all(m.to_tag == "fork2" for m in sent)
    assert len(dialogs) == 1 and not dialogs[0].terminated


def test_completed_table_past_its_bound_drops_the_oldest_first():
    env = Env(max_completed=2, router=lambda txn: txn.respond(200))
    for n in ("1", "2", "3"):
        env.deliver(req_bytes("MESSAGE", branch="z9hG4bK" + n, call_id=n))
    env.transport.take()
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bK3", call_id="3"))  # absorbed: 200 again
    assert statuses(env.transport.take()) == [200]
    routed = []
    env.stack.router = routed.append
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bK1", call_id="1"))  # evicted: new again
    assert len(routed) == 1


def test_stop_cancels_every_timer():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    failures = []
    env.stack.send_request(outgoing(env, "MESSAGE")).addErrback(failures.append)
    env.stack.invite(outgoing(env, "INVITE")).deferred.addErrback(failures.append)
    env.stack.router = lambda txn: txn.respond(200)
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKm"))
    assert env.clock.getDelayedCalls()
    env.stack.stop()
    assert env.clock.getDelayedCalls() == []
    # what was in flight fails at once rather than hanging
    assert [f.check(SIPTransportError) for f in failures] == [SIPTransportError] * 2


def test_a_2xx_retransmitted_after_our_bye_is_only_acked_again():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    answer = uac_answer(env, invite, 200, rr=False, body=b"answer")
    env.deliver(answer)
    dialogs[0].bye()
    assert statuses(env.transport.take()) == ["ACK", "BYE"]
    env.deliver(answer)
    assert statuses(env.transport.take()) == ["ACK"]


def test_contact_names_the_transport_of_a_tcp_dialog():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp", transport="TCP"),
                TCP_PEER)
    ok = [m for m in env.transport.take() if m.status == 200][0]
    assert ok.headers.get("Contact") == "<sip:127.0.0.1:5060;transport=tcp>"
    env.stack.invite(outgoing(env, "INVITE", "sip:bob@192.0.2.9;transport=tcp"))
    (invite,) = env.transport.take()
    assert invite.headers.get("Contact") == "<sip:127.0.0.1:5060;transport=tcp>"


def test_a_retransmitted_2xx_of_a_cancelled_invite_is_re_acked_but_not_byed_twice():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    client.deferred.addErrback(lambda f: None)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 180, rr=False))
    client.cancel()
    env.transport.take()
    answer = uac_answer(env, invite, 200, rr=False, body=b"answer")
    env.deliver(answer)
    assert statuses(env.transport.take()) == ["ACK", "BYE"]
    env.deliver(answer)
    assert statuses(env.transport.take()) == ["ACK"]


def test_a_request_merged_by_forking_gets_482_and_reaches_the_router_once():
    env = Env()
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKpath1", body=b"x", ctype="text/plain"))
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKpath2", body=b"x", ctype="text/plain"))
    assert statuses(env.transport.take()) == [482]
    assert len(env.routed) == 1
    env.routed[0].respond(200)
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKpath3", body=b"x", ctype="text/plain"))
    assert statuses(env.transport.take()) == [200, 482]  # still merged while Timer J runs
    env.advance_to(33)
    env.deliver(req_bytes("MESSAGE", branch="z9hG4bKpath4", body=b"x", ctype="text/plain"))
    assert len(env.routed) == 2  # the window is over: a request in its own right


def test_ringing_to_an_invite_carries_contact_and_the_tag_of_the_final_answer():
    env = Env()
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (txn,) = env.routed
    txn.respond(180)
    dialog = env.stack.accept(txn, body=b"answer-sdp", content_type="application/sdp")
    trying, ringing, ok = env.transport.take()
    assert ringing.status == 180 and ringing.headers.get("Contact")
    assert ringing.to_tag == ok.to_tag == dialog.local_tag and trying.to_tag is None


def test_rfc2543_peer_without_magic_cookie_gets_its_retransmissions_absorbed_and_ack_matched():
    env = Env(router=lambda txn: txn.respond(486))
    log = recorder(env)
    env.deliver(req_bytes("INVITE", branch="oldstyle1"))
    env.deliver(req_bytes("INVITE", branch="oldstyle1"))  # retransmission: 486 again
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 486) == [0, 0]
    env.deliver(req_bytes("ACK", branch="oldstyle1", to_tag=log[-1][1].to_tag,
                          cseq_method="ACK"))
    env.advance_to(10)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 486) == [0, 0]


def test_strict_router_in_the_route_set_gets_the_request_uri():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    resp = make_response(invite, 200, to_tag="callee1",
                         headers=[("Contact", "<sip:bob@192.0.2.9:5099>"),
                                  ("Record-Route", "<sip:strict.example.net>")])
    env.deliver(resp.to_bytes())
    env.transport.take()
    dialogs[0].bye()
    (bye,) = env.transport.take()
    assert bye.uri == "sip:strict.example.net"
    assert bye.headers.get_all("Route") == ["<sip:bob@192.0.2.9:5099>"]


def test_ringing_invite_we_sent_is_cancelled_after_timer_c():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    client.deferred.addErrback(lambda f: None)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 180, rr=False))
    env.advance_to(179)
    assert env.transport.take() == []
    env.advance_to(180.2)  # (Timer E would resend the CANCEL at 180.5)
    assert statuses(env.transport.take()) == ["CANCEL"]


def test_unanswered_invite_gets_408_from_the_guard():
    env = Env()
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    env.advance_to(180.2)  # (Timer G would resend the 408 at 180.5)
    assert statuses(env.transport.take()) == [100, 408]


def test_reinvite_answered_by_on_request_is_retransmitted_until_its_ack():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp"))
    (dialog,) = dialogs
    env.deliver(req_bytes("ACK", branch="z9hG4bKack", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    seen = []
    dialog.on_request = lambda txn: (seen.append(txn.request.method),
                                     txn.respond(200, body=b"new-sdp",
                                                 content_type="application/sdp"))
    recorder(env)
    env.deliver(req_bytes("INVITE", branch="z9hG4bKre", to_tag=dialog.local_tag, cseq=2,
                          body=SDP, ctype="application/sdp"))
    env.advance_to(1.6)
    assert seen == ["INVITE"]
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 200) == [0, 0.5, 1.5]
    env.deliver(req_bytes("ACK", branch="z9hG4bKack2", to_tag=dialog.local_tag, cseq=2,
                          cseq_method="ACK"))
    env.advance_to(10)
    assert env.sent_times(lambda m: getattr(m, "status", 0) == 200) == [0, 0.5, 1.5]
    assert dialog.local_sdp == b"new-sdp" and not dialog.terminated


def test_uas_route_set_comes_from_record_route_in_order_and_the_2xx_echoes_it():
    env = Env()
    route, dialogs = accept_router(env)
    env.stack.router = route
    rr = "Record-Route: <sip:p1.example.net;lr>, <sip:p2.example.net;lr>\r\n"
    env.deliver(req_bytes("INVITE", body=SDP, ctype="application/sdp", extra=rr))
    (dialog,) = dialogs
    ok = [m for m in env.transport.take() if m.status == 200][0]
    assert ok.headers.get_all("Record-Route") == ["<sip:p1.example.net;lr>",
                                                  "<sip:p2.example.net;lr>"]
    env.deliver(req_bytes("ACK", branch="z9hG4bKack", to_tag=dialog.local_tag,
                          cseq_method="ACK"))
    dialog.bye()
    ((bye, peer),) = env.transport.sent
    assert peer == FakePeer("udp", "p1.example.net", 5060)  # the first route is the next hop
    assert bye.uri == "sip:alice@192.0.2.7:5062"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
    assert dialog.terminated


def test_a_bye_crossing_our_bye_gets_200_and_the_dialog_is_forgotten_when_ours_ends():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 200, rr=False, body=b"answer"))
    (dialog,) = dialogs
    byes_seen = []
    dialog.on_bye = lambda: byes_seen.append(True)
    results = []
    dialog.bye().addCallback(results.append)
    ours = env.transport.take()[-1]
    assert ours.method == "BYE" and dialog.terminated
    env.deliver(bye_from_callee(invite), FakePeer("udp", "192.0.2.9", 5099))
    (answer,) = env.transport.take()
    assert answer.status == 200 and answer.cseq == (9, "BYE")
    assert byes_seen == []  # we ended it: the application is not told twice
    env.deliver(make_response(ours, 200).to_bytes())
    assert [r.status for r in results] == [200]
    assert env.stack.dialogs() == []
    # once our BYE is over the dialog is gone: a late BYE is unknown
    env.deliver(bye_from_callee(invite, cseq=10, branch="z9hG4bKlate"),
                FakePeer("udp", "192.0.2.9", 5099))
    assert statuses(env.transport.take()) == [481]


def test_a_dialog_whose_bye_times_out_is_forgotten_after_timer_f():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    dialogs = []
    client.deferred.addCallback(dialogs.append)
    (invite,) = env.transport.take()
    env.deliver(uac_answer(env, invite, 200, rr=False))
    failures = []
    dialogs[0].bye().addErrback(failures.append)
    assert len(env.stack.dialogs()) == 1
    env.advance_to(32.5)
    assert failures and failures[0].check(SIPTimeout)
    assert env.stack.dialogs() == []


def test_the_ack_resent_for_a_retransmitted_2xx_keeps_the_first_acks_branch():
    env = Env()
    client = env.stack.invite(outgoing(env, "INVITE"))
    (invite,) = env.transport.take()
    answer = uac_answer(env, invite, 200, rr=False, body=b"answer")
    env.deliver(answer)
    (first,) = env.transport.take()
    env.deliver(answer)
    env.deliver(answer)
    again = env.transport.take()
    assert statuses(again) == ["ACK", "ACK"]
    assert {a.top_via.branch for a in again} == {first.top_via.branch}
    assert first.top_via.branch != invite.top_via.branch
    assert client.deferred.called
