"""events.py: socket parsing, subscriptions and expiry on a Clock, delivery without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from msrp_gateway.events import (
    DEFAULT_EXPIRE,
    EVENT_SETUP_FAILED,
    EventBus,
    EventError,
    SocketSpec,
    encode_notification,
    parse_socket,
)

PARAMS = {"key": "sip:alice@a.example-sip:bob@b.example", "from_uri": "sip:alice@a.example",
          "to_uri": "sip:bob@b.example", "ruri": "sip:bob@b.example", "code": 486,
          "reason": "Busy Here"}


class FakeUDPTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.stopped = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def stopListening(self) -> None:
        self.stopped = True


class Reactor(MemoryReactorClock):
    """MemoryReactorClock whose listenUDP hands the protocol a recording transport."""

    def __init__(self) -> None:
        super().__init__()
        self.udp_transports: list[FakeUDPTransport] = []
        self.udp_interfaces: list[str] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        t = FakeUDPTransport()
        protocol.makeConnection(t)
        self.udp_transports.append(t)
        self.udp_interfaces.append(interface)
        return t


@pytest.fixture
def reactor() -> Reactor:
    return Reactor()


@pytest.fixture
def bus(reactor: Reactor) -> EventBus:
    return EventBus(reactor)


def connect_tcp(reactor: Reactor, index: int = -1) -> tuple[StringTransport, object]:
    """Complete the index-th connectTCP attempt with an in-memory transport."""
    host, port, factory, timeout, _ = reactor.tcpClients[index]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    proto.makeConnection(transport)
    return transport, proto


# --- parse_socket -------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("udp:127.0.0.1:9000", SocketSpec("udp", "127.0.0.1", 9000)),
    ("UDP:10.0.0.1:1", SocketSpec("udp", "10.0.0.1", 1)),
    ("tcp:127.0.0.1:8080", SocketSpec("tcp", "127.0.0.1", 8080)),
    ("tcp:127.0.0.1:8080/my_method", SocketSpec("tcp", "127.0.0.1", 8080, "my_method")),
    ("udp:[::1]:5000", SocketSpec("udp", "::1", 5000)),
    ("tcp:[2001:db8::1]:65535/m", SocketSpec("tcp", "2001:db8::1", 65535, "m")),
])
def test_parse_socket_accepts_opensips_socket_strings(text, expected):
    assert parse_socket(text) == expected


@pytest.mark.parametrize("text", [
    "", "udp:", "udp:127.0.0.1", "udp:127.0.0.1:0", "udp:127.0.0.1:65536",
    "udp:127.0.0.1:x", "sctp:127.0.0.1:1", "udp:localhost:9000",
    "udp:127.0.0.1:9000/method", "tcp:127.0.0.1:1/", "tcp:127.0.0.1:1/a b",
    "udp:::1:5000", "udp:[::1:5000", "udp:" + "1" * 300, "udp:127.0.0.1:-1",
])
def test_parse_socket_rejects_bad_sockets_with_event_error(text):
    with pytest.raises(EventError):
        parse_socket(text)


def test_socket_str_round_trips_to_canonical_form():
    for text in ["udp:127.0.0.1:9", "tcp:[::1]:80/m", "tcp:10.1.2.3:5060"]:
        assert str(parse_socket(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_socket_raises_only_event_error_on_any_text(text):
    try:
        spec = parse_socket(text)
    except EventError:
        return
    assert parse_socket(str(spec)) == spec


# --- subscriptions --------------------------------------------------------------

def test_setup_failed_event_is_published(bus):
    assert (EVENT_SETUP_FAILED, 0) in bus.events()


def test_subscribe_defaults_to_3600_seconds_and_expires_on_the_clock(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    [(name, _id, subs)] = bus.subscribers()
    assert name == EVENT_SETUP_FAILED
    assert [(str(s.socket), s.expire, s.ttl(reactor.seconds())) for s in subs] == [
        ("udp:127.0.0.1:9000", DEFAULT_EXPIRE, 3600)]
    reactor.advance(3599)
    assert bus.subscriber_count() == 1
    reactor.advance(1)
    assert bus.subscribers() == []
    assert bus.raise_event(EVENT_SETUP_FAILED, PARAMS) == 0
    assert reactor.udp_transports == []


def test_resubscribing_the_same_socket_refreshes_instead_of_duplicating(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000", 100)
    reactor.advance(90)
    bus.subscribe(EVENT_SETUP_FAILED, "UDP:127.0.0.1:9000", 100)
    reactor.advance(90)
    [(_, _, [sub])] = bus.subscribers()
    assert sub.ttl(reactor.seconds()) == 10
    assert bus.subscriber_count() == 1


def test_expire_zero_unsubscribes(bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000", 0)
    assert bus.subscribers() == []
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000", 0)  # unknown: still fine


def test_subscribing_to_an_unpublished_event_is_refused(bus):
    with pytest.raises(EventError):
        bus.subscribe("E_NO_SUCH_EVENT", "udp:127.0.0.1:9000")


@pytest.mark.parametrize("expire", [-1, True, "10", 1.5])
def test_subscribe_rejects_bad_expire(bus, expire):
    with pytest.raises(EventError):
        bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000", expire)


def test_subscriber_table_is_bounded(reactor):
    bus = EventBus(reactor, max_subscribers=2)
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:1")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:2")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:2", 50)  # refresh is not a new one
    with pytest.raises(EventError, match="too many subscribers"):
        bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:3")


def test_find_subscriber_matches_socket_in_any_spelling(bus):
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:[0:0::1]:80")
    assert bus.find_subscriber(EVENT_SETUP_FAILED, "tcp:[::1]:80") is not None
    assert bus.find_subscriber(EVENT_SETUP_FAILED, "tcp:[::1]:81") is None
    assert bus.find_subscriber(EVENT_SETUP_FAILED, "garbage") is None


# --- delivery -----------------------------------------------------------------

def test_notification_is_compact_jsonrpc_without_id():
    data = encode_notification(EVENT_SETUP_FAILED, {"key": "k", "code": None})
    assert data == b'{"jsonrpc":"2.0","method":"E_MSRP_GW_SETUP_FAILED",' \
                   b'"params":{"key":"k","code":null}}'


def test_udp_subscriber_gets_one_datagram_per_raise_with_params_in_order(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.2:9001")
    assert bus.raise_event(EVENT_SETUP_FAILED, PARAMS) == 2
    assert bus.raise_event(EVENT_SETUP_FAILED, dict(PARAMS, code=None, reason=None)) == 2
    [udp] = reactor.udp_transports  # one shared socket
    assert [addr for _, addr in udp.sent] == [("127.0.0.1", 9000), ("127.0.0.2", 9001)] * 2
    first = json.loads(udp.sent[0][0])
    assert first == {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": PARAMS}
    assert list(first["params"]) == ["key", "from_uri", "to_uri", "ruri", "code", "reason"]
    assert json.loads(udp.sent[2][0])["params"]["code"] is None


def test_ipv6_udp_subscriber_uses_an_ipv6_socket(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:[::1]:9000")
    bus.raise_event(EVENT_SETUP_FAILED, PARAMS)
    assert reactor.udp_interfaces == ["::"]
    assert reactor.udp_transports[0].sent[0][1] == ("::1", 9000)


def test_oversized_event_is_dropped_for_udp_not_raised(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    bus.raise_event(EVENT_SETUP_FAILED, {"body": "x" * 70000})
    assert all(not t.sent for t in reactor.udp_transports)


def test_tcp_subscriber_gets_notifications_back_to_back_on_one_connection(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, PARAMS)
    assert len(reactor.tcpClients) == 1
    host, port, _, timeout, _ = reactor.tcpClients[0]
    assert (host, port, timeout) == ("127.0.0.1", 8000, 5.0)
    bus.raise_event(EVENT_SETUP_FAILED, dict(PARAMS, key="second"))  # queued while connecting
    transport, _ = connect_tcp(reactor)
    bus.raise_event(EVENT_SETUP_FAILED, dict(PARAMS, key="third"))
    assert len(reactor.tcpClients) == 1
    data = transport.value()
    decoder, pos, keys = json.JSONDecoder(), 0, []
    while pos < len(data):
        obj, pos = decoder.raw_decode(data.decode(), pos)
        keys.append(obj["params"]["key"])
        assert obj["method"] == EVENT_SETUP_FAILED and "id" not in obj
    assert keys == [PARAMS["key"], "second", "third"]


def test_tcp_method_suffix_replaces_the_method_name(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000/gw_failed")
    bus.raise_event(EVENT_SETUP_FAILED, PARAMS)
    transport, _ = connect_tcp(reactor)
    assert json.loads(transport.value())["method"] == "gw_failed"


def test_unreachable_tcp_subscriber_costs_a_bounded_queue_and_backed_off_retries(reactor):
    bus = EventBus(reactor, tcp_queue_limit=3, retry_delay=1.0, max_retry_delay=4.0)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    for i in range(10):
        bus.raise_event(EVENT_SETUP_FAILED, {"n": i})
    # the udp subscriber is not held up by the tcp one
    assert len(reactor.udp_transports[0].sent) == 10
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    for i in range(10, 20):
        bus.raise_event(EVENT_SETUP_FAILED, {"n": i})
    assert len(reactor.tcpClients) == 1  # no reconnect storm while backing off
    reactor.advance(1.0)
    assert len(reactor.tcpClients) == 2
    reactor.tcpClients[1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    reactor.advance(1.9)
    assert len(reactor.tcpClients) == 2  # second delay doubled to 2 s
    reactor.advance(0.1)
    assert len(reactor.tcpClients) == 3
    transport, _ = connect_tcp(reactor)
    got = [json.loads(line)["params"]["n"]
           for line in transport.value().replace(b"}{", b"}\n{").splitlines()]
    assert got == [17, 18, 19]  # only the newest queue_limit survived


def test_slow_tcp_reader_pauses_delivery_into_the_bounded_queue(reactor):
    bus = EventBus(reactor, tcp_queue_limit=2)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 0})
    transport, _ = connect_tcp(reactor)
    assert transport.producer is not None and transport.streaming
    transport.producer.pauseProducing()  # what a full send buffer does
    for i in range(1, 6):
        bus.raise_event(EVENT_SETUP_FAILED, {"n": i})
    assert transport.value().count(b'"n"') == 1
    transport.producer.resumeProducing()
    got = [json.loads(x)["params"]["n"]
           for x in transport.value().replace(b"}{", b"}\n{").splitlines()]
    assert got == [0, 4, 5]


def test_lost_tcp_connection_is_reopened_on_the_next_event(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    _, proto = connect_tcp(reactor)
    proto.connectionLost(Failure(ConnectionRefusedError()))
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 2})
    assert len(reactor.tcpClients) == 2
    transport, _ = connect_tcp(reactor)
    assert json.loads(transport.value())["params"] == {"n": 2}


def test_unsubscribing_closes_the_tcp_connection(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, _ = connect_tcp(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000", 0)
    assert transport.disconnecting


def test_stop_closes_sockets_and_cancels_retries(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    bus.raise_event(EVENT_SETUP_FAILED, {})
    reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert reactor.getDelayedCalls()
    bus.stop()
    assert not [c for c in reactor.getDelayedCalls() if c.active()]
    assert reactor.udp_transports[0].stopped


def test_observers_see_every_raise_and_a_failing_one_harms_nobody(reactor, bus):
    seen = []
    bus.observers.append(lambda name, params: 1 / 0)
    bus.observers.append(lambda name, params: seen.append((name, params)))
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    assert bus.raise_event(EVENT_SETUP_FAILED, PARAMS) == 1
    assert seen == [(EVENT_SETUP_FAILED, PARAMS)]


def test_raising_an_unpublished_event_delivers_nothing(reactor, bus):
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    assert bus.raise_event("E_OTHER", {}) == 0
    assert reactor.udp_transports == []


# --- closing a tcp connection whose peer stopped reading -----------------------

class StuckTransport(StringTransport):
    """A transport whose peer never reads: loseConnection() never completes; records aborts."""

    def __init__(self) -> None:
        super().__init__()
        self.aborts = 0

    def abortConnection(self) -> None:
        self.aborts += 1
        super().abortConnection()


def connect_stuck(reactor: Reactor, index: int = -1) -> tuple[StuckTransport, object]:
    host, port, factory, _, _ = reactor.tcpClients[index]
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    transport = StuckTransport()
    proto.makeConnection(transport)
    return transport, proto


def pending(reactor: Reactor) -> list:
    return [c for c in reactor.getDelayedCalls() if c.active()]


def test_stop_aborts_a_connection_whose_peer_never_reads_at_the_grace(reactor):
    from msrp_gateway.events import CLOSE_GRACE
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, _ = connect_stuck(reactor)
    transport.producer.pauseProducing()  # peer stopped reading: bytes wait
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 2})
    done = bus.stop()
    fired = []
    done.addCallback(fired.append)
    assert transport.disconnecting and transport.aborts == 0
    reactor.advance(CLOSE_GRACE - 0.01)
    assert fired == [] and transport.aborts == 0
    reactor.advance(0.01)
    assert transport.aborts == 1
    assert len(fired) == 1
    assert pending(reactor) == []


def test_stop_fires_on_a_prompt_close_without_abort_or_leftover_timer(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, proto = connect_stuck(reactor)
    fired = []
    bus.stop().addCallback(fired.append)
    assert fired == []
    proto.connectionLost(None)  # the peer read everything and the close finished
    assert len(fired) == 1
    assert pending(reactor) == []
    reactor.advance(10)
    assert transport.aborts == 0


def test_connection_lost_after_the_abort_is_harmless_and_reconnects_nothing(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, proto = connect_stuck(reactor)
    fired = []
    bus.stop().addCallback(fired.append)
    reactor.advance(5)
    proto.connectionLost(None)  # a real transport reports the abort a turn later
    assert len(fired) == 1 and transport.aborts == 1
    assert len(reactor.tcpClients) == 1 and pending(reactor) == []


def test_unsubscribed_stuck_connection_is_aborted_and_waited_for_by_stop(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, _ = connect_stuck(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000", 0)  # released, closing
    assert transport.disconnecting and transport.aborts == 0
    reactor.advance(0.5)
    fired = []
    bus.stop().addCallback(fired.append)
    assert fired == []  # stop still waits for the released connection
    reactor.advance(0.5)  # its grace counts from the unsubscribe
    assert transport.aborts == 1 and len(fired) == 1
    assert pending(reactor) == []


def test_stop_with_a_separate_clock_aborts_on_that_clock(reactor):
    from twisted.internet.task import Clock
    clock = Clock()
    bus = EventBus(reactor, clock=clock)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, _ = connect_stuck(reactor)
    fired = []
    bus.stop().addCallback(fired.append)
    clock.advance(1.0)
    assert transport.aborts == 1 and len(fired) == 1
    assert clock.getDelayedCalls() == [] and pending(reactor) == []


def test_closing_twice_shares_one_abort_timer(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    transport, _ = connect_stuck(reactor)
    first, second = [], []
    bus.stop().addCallback(first.append)
    bus.stop().addCallback(second.append)
    assert len(pending(reactor)) == 1
    reactor.advance(1.0)
    assert transport.aborts == 1 and len(first) == 1 and len(second) == 1


def test_close_waiters_fire_after_the_target_forgot_its_connection(reactor):
    bus = EventBus(reactor)
    bus.subscribe(EVENT_SETUP_FAILED, "tcp:127.0.0.1:8000")
    bus.raise_event(EVENT_SETUP_FAILED, {"n": 1})
    _, proto = connect_stuck(reactor)
    target = next(iter(bus._tcp.values()))
    seen = []
    bus.stop().addCallback(lambda _: seen.append(target.proto))
    proto.connectionLost(None)
    assert seen == [None]
