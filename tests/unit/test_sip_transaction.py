"""RFC 3261 s.17 transaction machines, driven by hand on a task.Clock (no sockets)."""

from __future__ import annotations

import pytest
from twisted.internet import task

from msrp_gateway.sip.message import SIPRequest, SIPResponse, make_response, parse_message
from msrp_gateway.sip.transaction import (
    T1,
    T2,
    T4,
    CancelTimer,
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    StartTimer,
    State,
    Terminated,
    TimerSettings,
    client_key,
    response_key,
    server_key,
)

BRANCH = "z9hG4bKabc123"


def request(method: str = "MESSAGE", branch: str = BRANCH, *, to_tag: str | None = None,
            cseq: int = 7, cseq_method: str | None = None) -> SIPRequest:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    raw = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@192.0.2.1\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Route: <sip:proxy.example.com;lr>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, SIPRequest)
    return msg


def response(req: SIPRequest, status: int) -> SIPResponse:
    return make_response(req, status, to_tag="b2" if status > 100 else None)


class Harness:
    """Performs a machine's actions on a task.Clock and records what it sent and delivered."""

    def __init__(self, txn: object) -> None:
        self.txn = txn
        self.clock = task.Clock()
        self.timers: dict[str, object] = {}
        self.sent: list[tuple[float, object]] = []
        self.delivered: list[object] = []
        self.terminated: list[tuple[float, str]] = []

    def run(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.sent.append((self.clock.seconds(), a.message))
            elif isinstance(a, StartTimer):
                old = self.timers.pop(a.name, None)
                if old is not None and old.active():
                    old.cancel()
                self.timers[a.name] = self.clock.callLater(a.delay, self.fire, a.name)
            elif isinstance(a, CancelTimer):
                old = self.timers.pop(a.name, None)
                if old is not None and old.active():
                    old.cancel()
            elif isinstance(a, Deliver):
                self.delivered.append(a.message)
            elif isinstance(a, Terminated):
                self.terminated.append((self.clock.seconds(), a.reason))
                for call in self.timers.values():
                    if call.active():
                        call.cancel()
                self.timers.clear()

    def fire(self, name: str) -> None:
        self.timers.pop(name, None)
        self.run(self.txn.on_timer(name))

    def advance_to(self, when: float) -> None:
        """Run every timer due up to ``when``, landing exactly on each one's time."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                break
            self.clock.rightNow = max(self.clock.rightNow, min(due))
            self.clock.advance(0)
        self.clock.rightNow = max(self.clock.rightNow, when)

    def send_times(self) -> list[float]:
        return [round(t, 3) for t, _ in self.sent]


# -- client, non-INVITE (s.17.1.2) ------------------------------------------------------------


def test_non_invite_client_udp_retransmits_at_t1_doubling_capped_at_t2_then_timer_f():
    txn = NonInviteClientTransaction(request(), reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(40)
    # E: 0.5, 1, 2, 4, 4, 4 ... (capped at T2); F fires at 64*T1 = 32 s
    assert h.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert h.terminated == [(32.0, "timeout")]
    assert h.delivered == []


def test_non_invite_client_after_provisional_retransmits_every_t2():
    req = request()
    txn = NonInviteClientTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(0.2)
    h.run(txn.on_response(response(req, 100)))
    assert txn.state is State.PROCEEDING
    h.advance_to(10)
    assert h.send_times() == [0, 0.5, 4.5, 8.5]
    assert [m.status for m in h.delivered] == [100]


def test_non_invite_client_over_tcp_never_retransmits_but_still_times_out():
    txn = NonInviteClientTransaction(request(), reliable=True)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(40)
    assert h.send_times() == [0]
    assert h.terminated == [(32.0, "timeout")]


def test_non_invite_client_timer_k_absorbs_response_retransmissions_for_t4():
    req = request()
    txn = NonInviteClientTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(0.7)
    h.run(txn.on_response(response(req, 200)))
    assert txn.state is State.COMPLETED
    h.advance_to(3)
    h.run(txn.on_response(response(req, 200)))  # retransmitted 200: absorbed
    h.advance_to(0.7 + T4 + 0.1)
    assert [m.status for m in h.delivered] == [200]
    assert h.send_times() == [0, 0.5]  # no retransmission after the final response
    assert h.terminated == [(pytest.approx(0.7 + T4, abs=1e-9), "normal")]


def test_non_invite_client_over_tcp_terminates_on_final_response_at_once():
    req = request()
    txn = NonInviteClientTransaction(req, reliable=True)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 404)))
    assert h.terminated == [(0, "normal")]
    assert [m.status for m in h.delivered] == [404]


def test_client_transport_error_terminates_the_transaction():
    txn = NonInviteClientTransaction(request(), reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_transport_error())
    h.advance_to(40)
    assert h.terminated == [(0, "transport_error")]
    assert h.send_times() == [0]


# -- client, INVITE (s.17.1.1) -----------------------------------------------------------------


def test_invite_client_udp_timer_a_doubles_without_cap_until_timer_b():
    txn = InviteClientTransaction(request("INVITE"), reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(40)
    assert h.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert h.terminated == [(32.0, "timeout")]


def test_invite_client_provisional_stops_retransmission_and_timer_b():
    req = request("INVITE")
    txn = InviteClientTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(0.6)
    h.run(txn.on_response(response(req, 180)))
    h.advance_to(60)
    assert h.send_times() == [0, 0.5]
    assert h.terminated == []
    assert [m.status for m in h.delivered] == [180]


def test_invite_client_acks_non_2xx_itself_and_absorbs_retransmissions_until_timer_d():
    req = request("INVITE")
    txn = InviteClientTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    busy = response(req, 486)
    h.run(txn.on_response(busy))
    assert txn.state is State.COMPLETED
    ack = h.sent[-1][1]
    assert isinstance(ack, SIPRequest) and ack.method == "ACK"
    # s.17.1.1.3: same R-URI, Call-ID, From, CSeq number, top Via and Route; To of the response
    assert ack.uri == req.uri
    assert ack.cseq == (7, "ACK")
    assert ack.top_via.branch == BRANCH
    assert ack.to_tag == "b2"
    assert ack.from_tag == "a1"
    assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    h.advance_to(10)
    h.run(txn.on_response(busy))  # retransmitted 486: ACK again, not delivered again
    assert [type(m).__name__ for _, m in h.sent] == ["SIPRequest"] * 3
    assert h.sent[-1][1].method == "ACK"
    assert [m.status for m in h.delivered] == [486]
    h.advance_to(40)
    assert h.terminated == [(32.0, "normal")]


def test_invite_client_over_tcp_terminates_right_after_acking_a_failure():
    req = request("INVITE")
    txn = InviteClientTransaction(req, reliable=True)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 603)))
    assert h.sent[-1][1].method == "ACK"
    assert h.terminated == [(0, "normal")]


def test_invite_client_2xx_is_delivered_and_ends_the_transaction_without_ack():
    req = request("INVITE")
    txn = InviteClientTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 200)))
    h.advance_to(5)
    assert [m.status for m in h.delivered] == [200]
    assert h.terminated == [(0, "normal")]
    assert h.send_times() == [0]  # the ACK for 2xx belongs to the dialog, not here


# -- server, non-INVITE (s.17.2.2) --------------------------------------------------------------


def test_non_invite_server_absorbs_retransmissions_and_resends_the_last_response():
    req = request()
    txn = NonInviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    assert h.delivered == [req]
    h.run(txn.on_request(req))  # Trying: nothing to resend
    assert h.sent == []
    h.run(txn.on_response(response(req, 100)))
    h.run(txn.on_request(req))
    assert [m.status for _, m in h.sent] == [100, 100]
    h.run(txn.on_response(response(req, 202)))
    h.advance_to(20)
    h.run(txn.on_request(req))
    assert [m.status for _, m in h.sent] == [100, 100, 202, 202]
    assert h.delivered == [req]  # the request reached the TU once


def test_non_invite_server_timer_j_keeps_it_for_64_t1_on_udp():
    req = request()
    txn = NonInviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 200)))
    h.advance_to(31.9)
    assert h.terminated == []
    h.advance_to(33)
    assert h.terminated == [(32.0, "normal")]


def test_non_invite_server_over_tcp_ends_with_its_final_response():
    req = request()
    txn = NonInviteServerTransaction(req, reliable=True)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 200)))
    assert h.terminated == [(0, "normal")]


# -- server, INVITE (s.17.2.1, RFC 6026) ---------------------------------------------------------


def test_invite_server_sends_100_trying_at_once_and_resends_it_for_retransmissions():
    req = request("INVITE")
    txn = InviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    assert [m.status for _, m in h.sent] == [100]
    assert h.delivered == [req]
    h.run(txn.on_request(req))
    assert [m.status for _, m in h.sent] == [100, 100]
    assert h.delivered == [req]


def test_invite_server_timer_g_retransmits_failure_t1_doubling_capped_at_t2_until_timer_h():
    req = request("INVITE")
    txn = InviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.sent.clear()
    h.run(txn.on_response(response(req, 486)))
    h.advance_to(40)
    assert h.send_times() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert h.terminated == [(32.0, "timeout")]


def test_invite_server_ack_stops_retransmission_and_timer_i_absorbs_acks_for_t4():
    req = request("INVITE")
    txn = InviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.sent.clear()
    h.run(txn.on_response(response(req, 486)))
    h.advance_to(0.7)
    ack = request("ACK", to_tag="b2", cseq_method="ACK")
    assert server_key(ack) == server_key(req)
    h.run(txn.on_request(ack))
    assert txn.state is State.CONFIRMED
    h.run(txn.on_request(ack))  # retransmitted ACK: absorbed
    h.advance_to(20)
    assert h.send_times() == [0, 0.5]
    assert h.terminated == [(pytest.approx(0.7 + T4, abs=1e-9), "normal")]
    assert h.delivered == [req]


def test_invite_server_over_tcp_has_no_timer_g_and_ends_on_ack():
    req = request("INVITE")
    txn = InviteServerTransaction(req, reliable=True)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 486)))
    h.advance_to(10)
    assert [m.status for _, m in h.sent] == [100, 486]
    h.run(txn.on_request(request("ACK", to_tag="b2", cseq_method="ACK")))
    assert h.terminated == [(10, "normal")]


def test_invite_server_accepted_state_absorbs_invite_retransmissions_until_timer_l():
    req = request("INVITE")
    txn = InviteServerTransaction(req, reliable=False)
    h = Harness(txn)
    h.run(txn.start())
    h.run(txn.on_response(response(req, 200)))
    assert txn.state is State.ACCEPTED
    h.advance_to(3)
    h.run(txn.on_request(req))
    assert [m.status for _, m in h.sent] == [100, 200]  # the dialog resends 2xx, not us
    assert h.delivered == [req]
    h.advance_to(40)
    assert h.terminated == [(32.0, "normal")]


def test_timer_settings_scale_the_schedule():
    txn = NonInviteClientTransaction(request(), reliable=False,
                                     timers=TimerSettings(t1=0.1, t2=0.4, t4=1.0))
    h = Harness(txn)
    h.run(txn.start())
    h.advance_to(7)
    assert h.send_times()[:6] == [0, 0.1, 0.3, 0.7, 1.1, 1.5]
    assert h.terminated == [(pytest.approx(6.4), "timeout")]


# -- matching (s.17.1.3, s.17.2.3) -----------------------------------------------------------


def test_response_matches_client_transaction_by_branch_and_cseq_method():
    req = request("INVITE")
    txn = InviteClientTransaction(req, reliable=False)
    assert response_key(response(req, 180)) == txn.key == client_key(BRANCH, "INVITE")
    other = request("INVITE", branch="z9hG4bKother")
    assert response_key(response(other, 180)) != txn.key


def test_server_key_maps_ack_and_cancel_to_their_invite_and_separates_branches():
    invite = request("INVITE")
    cancel = request("CANCEL", cseq_method="CANCEL")
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, "INVITE") == server_key(invite)
    assert server_key(request("INVITE", branch="z9hG4bKzz")) != server_key(invite)


def test_rfc2543_branchless_requests_match_on_call_id_tags_cseq_and_via():
    invite = request("INVITE", branch="1234")  # no magic cookie: RFC 2543 peer
    retrans = request("INVITE", branch="1234")
    ack = request("ACK", branch="1234", to_tag="b2", cseq_method="ACK")
    assert server_key(retrans) == server_key(invite)
    assert server_key(ack) == server_key(invite)
    assert server_key(request("INVITE", branch="1234", cseq=8)) != server_key(invite)
    assert T1 == 0.5 and T2 == 4.0 and T4 == 5.0


# -- properties: any order of inputs (hypothesis) ----------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_events = st.lists(st.one_of(
    st.tuples(st.just("resp"), st.sampled_from([100, 180, 200, 202, 404, 486, 503])),
    st.tuples(st.just("timer"), st.sampled_from(list("ABDEFGHIJKL"))),
    st.tuples(st.just("advance"), st.floats(0, 40)),
    st.tuples(st.sampled_from(["retrans", "ack", "err"]), st.none()),
), max_size=25)


def _drive(h: Harness, txn, events, server: bool) -> None:
    """Feed ``events``; once Terminated, the machine must not send or deliver anything."""
    req = txn.request
    frozen = None
    for kind, arg in events:
        if kind == "resp":
            h.run(txn.on_response(response(req, arg)))
        elif kind == "timer":
            h.run(txn.on_timer(arg))
        elif kind == "advance":
            h.advance_to(h.clock.seconds() + arg)
        elif kind == "err":
            h.run(txn.on_transport_error())
        elif server and kind == "retrans":
            h.run(txn.on_request(req))
        elif server and kind == "ack":
            h.run(txn.on_request(request("ACK", to_tag="b2", cseq_method="ACK")))
        if h.terminated:
            now = (len(h.sent), len(h.delivered))
            assert frozen is None or now == frozen, "acted after Terminated"
            frozen = now
    assert len(h.terminated) <= 1


@settings(max_examples=150, deadline=None)
@given(invite=st.booleans(), reliable=st.booleans(), events=_events)
def test_client_machines_survive_any_input_order_and_deliver_one_final(invite, reliable, events):
    cls = InviteClientTransaction if invite else NonInviteClientTransaction
    txn = cls(request("INVITE" if invite else "MESSAGE"), reliable=reliable)
    h = Harness(txn)
    h.run(txn.start())
    _drive(h, txn, events, server=False)
    finals = [m for m in h.delivered if m.status >= 200]
    assert len(finals) <= 1
    h.advance_to(h.clock.seconds() + 100)
    # every client machine ends by itself, except an INVITE that got a provisional (s.17.1.1.2)
    if not (invite and txn.state is State.PROCEEDING):
        assert txn.state is State.TERMINATED and len(h.terminated) == 1
    if not reliable:
        assert len(h.sent) <= 12  # retransmissions are bounded by Timer B/F


@settings(max_examples=150, deadline=None)
@given(invite=st.booleans(), reliable=st.booleans(), events=_events)
def test_server_machines_survive_any_input_order_and_pass_the_request_up_once(invite, reliable,
                                                                             events):
    cls = InviteServerTransaction if invite else NonInviteServerTransaction
    req = request("INVITE" if invite else "MESSAGE")
    txn = cls(req, reliable=reliable)
    h = Harness(txn)
    h.run(txn.start())
    _drive(h, txn, events, server=True)
    assert [m for m in h.delivered if getattr(m, "method", "") != "ACK"] == [req]
    h.advance_to(h.clock.seconds() + 100)
    if txn.final_sent:
        assert txn.state is State.TERMINATED and len(h.terminated) == 1
