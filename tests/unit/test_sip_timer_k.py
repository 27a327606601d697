"""Timer K through the table's shared sweep: each non-INVITE client transaction over UDP
still ends exactly T4 after its final response, absorbing retransmitted responses until
then, while all of them wait on one DelayedCall instead of one each."""

from __future__ import annotations

from twisted.internet import task

from msrp_gateway.sip.message import make_response
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transaction import TimerSettings
from msrp_gateway.testing import FakePeer, FakeSIPTransport

PEER = FakePeer("udp", "192.0.2.7", 5062)


def _env(**kw):
    clock = task.Clock()
    transport = FakeSIPTransport("127.0.0.1", 5060)
    stack = SIPStack(clock, transport, local_uri_host="127.0.0.1:5060", router=lambda t: None,
                     **kw)
    return clock, transport, stack


def _send(stack, finals, n):
    req = stack.new_request("MESSAGE", "sip:gw@127.0.0.1", "sip:bob@192.0.2.7",
                            "sip:bob@192.0.2.7:5062", body=f"m{n}".encode(),
                            content_type="text/plain")
    stack.send_request(req).addCallback(lambda resp: finals.append((n, resp.status)))


def _answer(transport, index, status=200):
    sent = transport.sent[index][0]
    transport.deliver(make_response(sent, status, to_tag="x").to_bytes(), PEER)


def test_each_transaction_ends_exactly_t4_after_its_final_response_on_one_shared_call():
    clock, transport, stack = _env()
    finals: list = []
    for n in range(3):
        _send(stack, finals, n)
    assert len(transport.sent) == 3
    for index, when in ((0, 1.0), (1, 1.1), (2, 1.3)):
        clock.advance(when - clock.seconds())
        _answer(transport, index)
    assert finals == [(0, 200), (1, 200), (2, 200)]
    sent_before = len(transport.sent)  # with Timer E's retransmissions up to the 200s
    # E and F were cancelled by the 200s; the three Timer Ks wait on one call
    assert len([c for c in clock.getDelayedCalls() if c.active()]) == 1
    clock.advance(5.999 - clock.seconds())
    assert len(stack.table) == 3
    for index in range(3):  # retransmitted 200s are absorbed: no second result, no send
        _answer(transport, index)
    assert finals == [(0, 200), (1, 200), (2, 200)] and len(transport.sent) == sent_before
    clock.advance(6.0 - clock.seconds())
    assert len(stack.table) == 2
    clock.advance(6.1 - clock.seconds())
    assert len(stack.table) == 1
    clock.advance(6.29 - clock.seconds())
    assert len(stack.table) == 1
    clock.advance(6.3 - clock.seconds())
    assert len(stack.table) == 0
    assert clock.getDelayedCalls() == []


def test_timer_k_uses_the_configured_t4():
    clock, transport, stack = _env(timers=TimerSettings(0.5, 4.0, 2.0))
    _send(stack, [], 0)
    _answer(transport, 0, 404)
    clock.advance(1.999)
    assert len(stack.table) == 1
    clock.advance(0.001)
    assert len(stack.table) == 0 and clock.getDelayedCalls() == []


def test_stop_forgets_transactions_waiting_on_timer_k():
    clock, transport, stack = _env()
    for n in range(2):
        _send(stack, [], n)
        _answer(transport, n)
    stack.stop()
    assert clock.getDelayedCalls() == []
    assert len(stack.table) == 0
