"""Which transports the UA answers on, and the URI it advertises on each (ua_transports).

`MSRPStack.listening()` is what the choice reads: it is tested here on a real stack over a
memory reactor that binds as a real one does (no socket opened); the choice itself runs on
a stand-in stack listing `MSRPListener` records. The loopback tests in
tests/integration/test_ua_loopback.py run the same choice over real sockets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactor, _FakePort

from msrp_gateway.msrp.transport import MSRPListener, MSRPStack
from msrp_gateway.msrp.uri import parse_msrp_uri
from msrp_gateway.ua_transports import local_uris, session_on

TCP, TLS = "TCP/MSRP", "TCP/TLS/MSRP"


class BindingReactor(MemoryReactor):
    """A memory reactor whose ports report the interface they were given and, for port
    0, a port of the OS's choosing, as a real reactor's getHost() does."""

    def __init__(self) -> None:
        super().__init__()
        self._next_port = 40000

    def _bound(self, port: int, interface: str) -> _FakePort:
        if port == 0:
            self._next_port += 1
            port = self._next_port
        cls = IPv6Address if ":" in interface else IPv4Address
        return _FakePort(cls("TCP", interface or "0.0.0.0", port))

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return self._bound(port, interface)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        super().listenSSL(port, factory, contextFactory, backlog, interface)
        return self._bound(port, interface)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from tests.tlscerts import make_certs

    return make_certs(tmp_path_factory.mktemp("tls"))


def test_listening_is_empty_before_any_listen():
    assert MSRPStack(BindingReactor(), "msrp://127.0.0.1:2855;tcp").listening() == []


def test_listening_lists_each_socket_with_its_kind_address_and_actual_port(tls_files):
    reactor = BindingReactor()
    stack = MSRPStack(reactor, tls=tls_files)
    stack.listen("msrp:127.0.0.1:0")
    stack.listen("msrps:[::1]:2856")
    stack.listen("msrp:0.0.0.0")
    assert stack.listening() == [MSRPListener(False, "127.0.0.1", 40001),
                                 MSRPListener(True, "::1", 2856),
                                 MSRPListener(False, "0.0.0.0", 2855)]
    # the msrps record is the socket handed to listenSSL, the others went to listenTCP
    assert [(p, i) for p, _f, _c, _b, i in reactor.sslServers] == [(2856, "::1")]
    assert [(p, i) for p, _f, _b, i in reactor.tcpServers] == [(0, "127.0.0.1"), (2855, "0.0.0.0")]


def test_listening_returns_a_copy_of_frozen_records():
    stack = MSRPStack(BindingReactor())
    stack.listen("msrp:127.0.0.1:0")
    listed = stack.listening()
    listed.clear()
    assert len(stack.listening()) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        stack.listening()[0].port = 1


def test_listening_is_empty_once_the_stack_stopped():
    stack = MSRPStack(BindingReactor())
    stack.listen("msrp:127.0.0.1:0")
    done = []
    stack.stop().addCallback(done.append)
    assert done == [None] and stack.listening() == []


def test_a_real_stack_with_msrp_and_msrps_sockets_answers_on_both(tls_files):
    stack = MSRPStack(BindingReactor(), tls=tls_files)
    stack.listen("msrp:127.0.0.1:0")  # the first listener gives my_uri
    stack.listen("msrps:127.0.0.1:0")
    assert {proto: str(uri) for proto, uri in local_uris(stack).items()} == {
        TCP: "msrp://127.0.0.1:40001;tcp", TLS: "msrps://127.0.0.1:40002;tcp"}


@dataclass
class Stack:
    """A stand-in MSRP stack: my_uri, what it listens on, a relay or not."""

    my_uri: Any
    listeners: list[MSRPListener] = field(default_factory=list)
    relay: Any = None

    def listening(self) -> list[MSRPListener]:
        return list(self.listeners)


def Port(host: str, port: int, tls: bool = False) -> MSRPListener:
    return MSRPListener(tls, host, port)


def _strs(uris: dict) -> dict:
    return {proto: str(uri) for proto, uri in uris.items()}


def test_my_uri_alone_serves_its_own_transport():
    stack = Stack(parse_msrp_uri("msrp://127.0.0.1:2855;tcp"), [Port("127.0.0.1", 2855)])
    assert _strs(local_uris(stack)) == {TCP: "msrp://127.0.0.1:2855;tcp"}


def test_a_tls_listener_beside_my_uri_adds_msrps_with_its_own_address_and_port():
    stack = Stack(parse_msrp_uri("msrp://127.0.0.1:2855;tcp"),
                  [Port("127.0.0.1", 2855), Port("127.0.0.2", 2856, tls=True)])
    assert _strs(local_uris(stack)) == {TCP: "msrp://127.0.0.1:2855;tcp",
                                        TLS: "msrps://127.0.0.2:2856;tcp"}


def test_a_tcp_listener_beside_an_msrps_my_uri_adds_msrp():
    stack = Stack("msrps://[::1]:2856;tcp", [Port("::1", 2856, tls=True), Port("::1", 2855)])
    assert _strs(local_uris(stack)) == {TLS: "msrps://[::1]:2856;tcp",
                                        TCP: "msrp://[::1]:2855;tcp"}


def test_an_advertised_my_uri_keeps_its_host_on_the_other_transport():
    """my_uri names a public address (NAT): only scheme and port change for msrps."""
    stack = Stack(parse_msrp_uri("msrp://203.0.113.5:2855;tcp"),
                  [Port("10.0.0.5", 2855), Port("10.0.0.5", 2856, tls=True)])
    assert _strs(local_uris(stack)) == {TCP: "msrp://203.0.113.5:2855;tcp",
                                        TLS: "msrps://203.0.113.5:2856;tcp"}


def test_a_wildcard_listener_takes_my_uris_host():
    stack = Stack(parse_msrp_uri("msrp://192.0.2.10:2855;tcp"),
                  [Port("0.0.0.0", 2855), Port("0.0.0.0", 2856, tls=True)])
    assert _strs(local_uris(stack))[TLS] == "msrps://192.0.2.10:2856;tcp"


def test_behind_a_relay_only_my_uris_transport_is_offered():
    stack = Stack(parse_msrp_uri("msrp://127.0.0.1:2855;tcp"),
                  [Port("127.0.0.1", 2855), Port("127.0.0.1", 2856, tls=True)],
                  relay=object())
    assert list(local_uris(stack)) == [TCP]


def test_nothing_listening_and_no_my_uri_offers_nothing():
    assert local_uris(Stack(None)) == {}


class _Session:
    def __init__(self, sid: str, uri: str) -> None:
        self.session_id = sid
        self.local_uri = uri
        self.local_path = ["msrp://relay.example:2855/r1;tcp", uri]


class _SessionStack:
    my_uri = parse_msrp_uri("msrp://127.0.0.1:2855;tcp")

    def create_session(self, types: list[str]) -> _Session:
        return _Session("abc123", "msrp://127.0.0.1:2855/abc123;tcp")


def test_session_on_another_transport_gets_that_uri_with_its_own_session_id():
    base = parse_msrp_uri("msrps://127.0.0.1:2856;tcp")
    session = session_on(_SessionStack(), ["text/plain"], base)
    assert session.local_uri == "msrps://127.0.0.1:2856/abc123;tcp"
    assert session.local_path == ["msrp://relay.example:2855/r1;tcp", session.local_uri]


def test_session_on_my_uris_transport_is_left_as_the_stack_made_it():
    session = session_on(_SessionStack(), ["text/plain"], _SessionStack.my_uri)
    assert session.local_uri == "msrp://127.0.0.1:2855/abc123;tcp"


# ---- the UA's choice, on the fakes (FakeMSRPStack: my_uri msrp:, no listener of its own) ----

def test_an_offer_with_tls_then_tcp_streams_is_answered_on_the_tcp_one_we_listen_on():
    from twisted.internet import task

    from msrp_gateway import sdp
    from msrp_gateway.sip.message import Headers, SIPRequest
    from msrp_gateway.testing import FakeInviteStack, FakeMSRPStack, FakeServerTransaction
    from msrp_gateway.ua import MSRPUserAgent, UASettings

    tls = sdp.build_offer(["msrps://192.0.2.7:7777/tlsSess;tcp"], ["text/plain"], sess_id=9)
    tcp = sdp.build_offer(["msrp://192.0.2.7:7778/tcpSess;tcp"], ["text/plain"], sess_id=9)
    # one offer, two MSRP streams: TLS first (we do not listen on it), then TCP
    body = tls + tcp[tcp.index(b"m="):]
    h = Headers([("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKtwo"),
                 ("From", "<sip:bob@example.net>;tag=77"), ("To", "<sip:alice@gw.example>"),
                 ("Call-ID", "two@192.0.2.7"), ("CSeq", "1 INVITE"),
                 ("Content-Type", "application/sdp")])
    clock = task.Clock()
    sip = FakeInviteStack(clock)
    ua = MSRPUserAgent(clock, sip, FakeMSRPStack(clock), UASettings())
    txn = FakeServerTransaction(SIPRequest("INVITE", "sip:alice@127.0.0.1", h, body))
    sid = ua.answer(txn, "text/plain", object())
    [info] = ua.sessions()
    assert info.session_id == sid and info.remote_path == ["msrp://192.0.2.7:7778/tcpSess;tcp"]
    [dialog] = sip.dialogs
    answer = sdp.parse_sdp(dialog.local_sdp)
    assert [(m.port == 0, m.proto) for m in answer.media] == [(True, "TCP/TLS/MSRP"),
                                                              (False, "TCP/MSRP")]
    ua.end(sid)


def test_an_offer_with_no_msrp_socket_to_answer_on_is_503():
    from twisted.internet import task

    from msrp_gateway import sdp
    from msrp_gateway.sip.message import Headers, SIPRequest
    from msrp_gateway.testing import FakeInviteStack, FakeServerTransaction
    from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings

    clock = task.Clock()
    body = sdp.build_offer(["msrp://192.0.2.7:7777/s1;tcp"], ["text/plain"], sess_id=9)
    h = Headers([("Via", "SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKnone"),
                 ("From", "<sip:bob@example.net>;tag=77"), ("To", "<sip:alice@gw.example>"),
                 ("Call-ID", "none@192.0.2.7"), ("CSeq", "1 INVITE"),
                 ("Content-Type", "application/sdp")])
    ua = MSRPUserAgent(clock, FakeInviteStack(clock), Stack(None), UASettings())
    with pytest.raises(UAError) as refused:
        ua.answer(FakeServerTransaction(SIPRequest("INVITE", "sip:a@127.0.0.1", h, body)),
                  "text/plain", object())
    assert refused.value.code == 503 and "no MSRP socket" in dict(refused.value.headers)["Warning"]
    assert ua.sessions() == [] and clock.getDelayedCalls() == []
