"""Which transports the UA answers on, and the URI it advertises on each (ua_transports).

The listeners are stand-ins for the reactor's ports (``getHost()`` and, for ``listenSSL``,
a TLSMemoryBIOFactory as their factory), so no socket is opened here; the loopback tests
in tests/integration/test_ua_loopback.py run the same choice over real sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory
from twisted.internet.ssl import CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory

from msrp_gateway.msrp.uri import parse_msrp_uri
from msrp_gateway.ua_transports import local_uris, session_on

TCP, TLS = "TCP/MSRP", "TCP/TLS/MSRP"


@dataclass
class Port:
    host: str
    port: int
    tls: bool = False
    factory: Any = None

    def __post_init__(self) -> None:
        inner = Factory()
        self.factory = TLSMemoryBIOFactory(CertificateOptions(), False, inner) if self.tls else inner

    def getHost(self) -> Any:
        cls = IPv6Address if ":" in self.host else IPv4Address
        return cls("TCP", self.host, self.port)


@dataclass
class Stack:
    my_uri: Any
    _ports: list[Port] = field(default_factory=list)
    relay: Any = None


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
