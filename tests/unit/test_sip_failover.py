"""RFC 3263 s.4.3 failover of one request through the SIP stack, without sockets: the same
request (new branch, new client transaction) goes to the next SRV target when a target
refuses or stays silent for 16*T1, within 64*T1 (Timer F/B) from its first send, an INVITE
only before a provisional; and ``SIPTransport.resolve(..., exclude=)``, the way the stack
asks for that next target. The in-memory DNS zone and its helpers are
tests/unit/test_sip_resolution.py's, imported."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns

from msrp_gateway.sip.dns import TargetsExhausted
from msrp_gateway.sip.message import make_response, parse_message
from msrp_gateway.sip.peers import Peer, TransportError
from msrp_gateway.sip.stack import SIPStack, SIPTimeout, SIPTransportError
from msrp_gateway.sip.transaction import TimerSettings
from msrp_gateway.sip.transport import SIPTransport
from tests.unit.test_sip_resolution import (  # noqa: F401 - zone is a fixture
    resolver,
    result_of,
    three_targets,
    zone,
)

# -- s.4.3 failover of one request, through the stack (no sockets, task.Clock) --------------

class Wire:
    """What SIPStack needs of a SIPTransport, without sockets: ``resolve`` as
    SIPTransport.resolve does it (its resolver's ``locate``, the peer), ``send`` kept in
    ``sent`` as (parsed request, peer); it fails at once for ``refusing`` peers (connection
    refused) and waits, until the test says, for ``hanging`` ones (a connect underway)."""

    def __init__(self, resolver) -> None:
        self.resolver = resolver
        self.on_message = None
        self.sent: list = []
        self.refusing: set = set()
        self.hanging: dict = {}
        self.excluded: list[tuple] = []  # ``exclude`` of every resolve, in order

    def resolve(self, uri_text, size=0, *, exclude=()):
        self.excluded.append(tuple(exclude))
        return self.resolver.locate(uri_text, exclude=exclude or None).addCallback(
            lambda where: where.peer)

    def send(self, msg, peer):
        self.sent.append((parse_message(msg.to_bytes()), peer))
        if peer in self.refusing:
            return defer.fail(TransportError("connection refused"))
        if peer in self.hanging:
            d = defer.Deferred()
            self.hanging[peer].append(d)
            return d
        return defer.succeed(None)

    def local_via(self, peer):
        return (peer.transport.upper(), "127.0.0.1", 5060)

    def response_peer(self, request, source):
        return source

    def answer(self, index: int, status: int):
        """The target of the ``index``-th send answers it ``status``."""
        req, peer = self.sent[index]
        self.on_message(make_response(req, status, to_tag="t1"), peer)

    def peers(self):
        return [peer for _, peer in self.sent]


def failover_stack(zone, clock):
    r = resolver(zone, clock)
    wire = Wire(r)
    stack = SIPStack(clock, wire, local_uri_host="127.0.0.1", router=lambda txn: None)
    return stack, wire


T1 = TimerSettings().t1


def message(stack):
    return stack.new_request("MESSAGE", "sip:alice@127.0.0.1", "sip:bob@example.test",
                             "sip:bob@example.test", body=b"hi", content_type="text/plain")


def test_a_message_goes_to_each_refusing_srv_target_once_and_fails_with_the_last_error(zone):
    clock = task.Clock()
    a, b, c = three_targets(zone)
    stack, wire = failover_stack(zone, clock)
    wire.refusing |= {a, b, c}
    failure = result_of(stack.send_request(message(stack)))
    assert isinstance(failure.value, SIPTransportError)
    assert "connection refused" in str(failure.value)
    assert wire.peers() == [a, b, c]  # bounded by the targets: each once
    reqs = [req for req, _ in wire.sent]
    assert len({req.top_via.branch for req in reqs}) == 3  # a new transaction each
    assert {(req.call_id, req.cseq) for req in reqs} == {(reqs[0].call_id, reqs[0].cseq)}
    assert all(wire.resolver.is_unreachable(p) for p in (a, b, c))
    assert clock.getDelayedCalls() == [] and stack.transaction_count == 0


def test_a_message_that_got_a_provisional_waits_for_its_final_answer_there(zone):
    """A target that answered (100) is alive: no failover at 16*T1; Timer F ends it."""
    clock = task.Clock()
    a, b, _ = three_targets(zone)
    stack, wire = failover_stack(zone, clock)
    d = stack.send_request(message(stack))
    wire.answer(0, 100)
    clock.advance(16 * T1)
    assert b not in wire.peers() and not d.called
    clock.advance(48 * T1)
    assert isinstance(result_of(d).value, SIPTimeout)
    assert set(wire.peers()) == {a}


def test_a_message_to_a_target_found_without_srv_is_not_sent_elsewhere(zone):
    """s.4.3 is for SRV targets: a domain's own address (no SRV) that refuses fails the
    request at once, unmarked."""
    clock = task.Clock()
    stack, wire = failover_stack(zone, clock)
    only = Peer("udp", "127.0.0.10", 5060)
    wire.refusing.add(only)
    assert isinstance(result_of(stack.send_request(message(stack))).value, SIPTransportError)
    assert wire.peers() == [only] and not wire.resolver.is_unreachable(only)


def test_a_try_given_up_for_silence_that_ends_later_does_not_end_the_next_try(zone):
    """The first target's connection hangs: after 16*T1 the request goes to the second;
    the first connect failing afterwards changes nothing, the second's 200 is the answer."""
    clock = task.Clock()
    a, b, _ = three_targets(zone)
    stack, wire = failover_stack(zone, clock)
    wire.hanging[a] = []
    d = stack.send_request(message(stack))
    clock.advance(16 * T1)
    assert wire.peers()[-1] == b and wire.resolver.is_unreachable(a)
    to_b = len(wire.sent) - 1
    wire.hanging.pop(a)[0].errback(TransportError("connect timed out"))  # late
    assert not d.called and len(wire.sent) == to_b + 1  # nothing sent to a third target
    assert not wire.resolver.is_unreachable(b)
    wire.answer(to_b, 200)
    assert result_of(d).status == 200


def invite(stack):
    return stack.new_request("INVITE", "sip:alice@127.0.0.1", "sip:bob@example.test",
                             "sip:bob@example.test", body=b"offer",
                             content_type="application/sdp")


def test_an_invite_moves_on_while_silent_and_stays_once_a_provisional_came(zone):
    clock = task.Clock()
    a, b, c = three_targets(zone)
    stack, wire = failover_stack(zone, clock)
    client = stack.invite(invite(stack))
    clock.advance(16 * T1)  # a never answered: the same INVITE to b
    assert wire.peers()[-1] == b and wire.resolver.is_unreachable(a)
    to_b = len(wire.sent) - 1
    first, second = wire.sent[0][0], wire.sent[to_b][0]
    assert (second.call_id, second.cseq, second.from_tag) == \
        (first.call_id, first.cseq, first.from_tag)
    assert second.top_via.branch != first.top_via.branch
    wire.answer(to_b, 180)  # b rings: no failover from now on
    clock.advance(32 * T1)
    assert c not in wire.peers() and not client.deferred.called
    wire.answer(to_b, 200)
    dialog = result_of(client.deferred)
    assert dialog.remote_target and not wire.resolver.is_unreachable(b)


def test_an_invite_whose_targets_are_all_silent_fails_at_timer_b_from_its_first_send(zone):
    clock = task.Clock()
    a, b, c = three_targets(zone)
    stack, wire = failover_stack(zone, clock)
    client = stack.invite(invite(stack))
    clock.advance(16 * T1)
    clock.advance(16 * T1)
    assert set(wire.peers()) == {a, b, c}
    clock.advance(32 * T1 - 0.01)
    assert not client.deferred.called
    clock.advance(0.01)
    assert isinstance(result_of(client.deferred).value, SIPTimeout)
    assert clock.getDelayedCalls() == [] and stack.transaction_count == 0


def test_stopping_the_stack_while_the_next_target_is_looked_up_ends_the_request(zone):
    """The SRV answer's TTL ran out during the first try: the look-up of the next target
    waits for DNS when the stack stops; the request fails at once (SIPTransportError),
    no timer remains, and the late DNS answer sends nothing."""
    zone.add("c.example.test", dns.Record_A("127.0.0.13"))
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5101, b"a.example.test"), ttl=1)
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 0, 5102, b"b.example.test"), ttl=1)
    clock = task.Clock()
    stack, wire = failover_stack(zone, clock)
    d = stack.send_request(message(stack))
    zone.hold[("_sip._udp.example.test", dns.SRV)] = []
    clock.advance(16 * T1)
    assert not d.called and zone.hold[("_sip._udp.example.test", dns.SRV)]
    stack.stop()
    assert isinstance(result_of(d).value, SIPTransportError)
    sent = len(wire.sent)
    zone.release("_sip._udp.example.test", dns.SRV)
    assert len(wire.sent) == sent and clock.getDelayedCalls() == []


def test_an_invite_that_ends_while_its_next_target_is_looked_up_is_sent_on_once(zone):
    """Silence past 16*T1 starts a look-up of the next target that waits for DNS (the SRV
    TTL ran out); the first try's connect then fails, which asks for the next target too:
    when DNS answers, the INVITE goes to the second target once, not twice."""
    zone.add("_sip._udp.example.test", dns.Record_SRV(10, 0, 5101, b"a.example.test"), ttl=1)
    zone.add("_sip._udp.example.test", dns.Record_SRV(20, 0, 5102, b"b.example.test"), ttl=1)
    a, b = Peer("udp", "127.0.0.11", 5101), Peer("udp", "127.0.0.12", 5102)
    clock = task.Clock()
    stack, wire = failover_stack(zone, clock)
    wire.hanging[a] = []
    client = stack.invite(invite(stack))
    zone.hold[("_sip._udp.example.test", dns.SRV)] = []
    clock.advance(16 * T1)
    assert set(wire.peers()) == {a}  # (Timer A resent it) and it waits for DNS
    wire.hanging.pop(a)[0].errback(TransportError("connection refused"))
    assert set(wire.peers()) == {a} and not client.deferred.called
    before = len(wire.sent)
    zone.release("_sip._udp.example.test", dns.SRV)
    assert wire.peers()[before:] == [b]  # one try, not two
    wire.answer(before, 200)
    assert result_of(client.deferred).remote_target


def test_the_stack_asks_the_transport_for_the_next_target_excluding_those_tried(zone):
    """The next target comes from ``transport.resolve(..., exclude=tried)`` (which keeps
    the transport's TLS names and size rules), not from a resolver-wide setting."""
    a, b, c = three_targets(zone)
    stack, wire = failover_stack(zone, task.Clock())
    wire.refusing |= {a, b}
    d = stack.send_request(message(stack))
    assert wire.peers() == [a, b, c]
    assert wire.excluded == [(), (a,), (a, b)]
    wire.answer(2, 200)
    assert result_of(d).status == 200


# -- SIPTransport.resolve(exclude=): the transport's part of s.4.3 -------------------------

def test_transport_resolve_gives_the_next_srv_target_after_those_excluded(zone):
    a, b, c = three_targets(zone)
    t = SIPTransport(MemoryReactorClock())
    t.resolver = resolver(zone)
    assert result_of(t.resolve("sip:bob@example.test")) == a
    assert result_of(t.resolve("sip:bob@example.test", exclude=[a])) == b
    assert result_of(t.resolve("sip:bob@example.test", exclude=(a, b))) == c
    assert isinstance(result_of(t.resolve("sip:bob@example.test", exclude={a, b, c})).value,
                      TargetsExhausted)
    assert result_of(t.resolve("sip:bob@example.test")) == a  # nothing kept between calls


def test_transport_resolve_of_an_ip_host_already_tried_has_no_next_target():
    """An IP host is a single target (no DNS): once it is excluded there is none."""
    t = SIPTransport(MemoryReactorClock())
    only = Peer("udp", "127.0.0.1", 5070)
    assert result_of(t.resolve("sip:bob@127.0.0.1:5070", exclude=[Peer("udp", "127.0.0.2",
                                                                       5070)])) == only
    exhausted = result_of(t.resolve("sip:bob@127.0.0.1:5070", exclude=[only]))
    assert isinstance(exhausted.value, TargetsExhausted)
    assert isinstance(exhausted.value, TransportError)  # the stack's 503
