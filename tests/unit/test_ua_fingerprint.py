"""The UA and msrps fingerprints on the real SIP and MSRP stacks, on one task.Clock.

Our offers, answers and late offers on msrps carry the fingerprint of the certificate our
MSRP stack presents; a peer's a=fingerprint pins its session in the MSRP stack before any
binding. The pin is observed the way a peer would: a binding SEND on a connection without
the pinned certificate (a hand-fed `LinkCore`, no socket) gets 403 and the session ends
with the reason; a fingerprint-less peer's binding is taken as before.
"""

from __future__ import annotations

import pytest

from msrp_gateway import sdp
from msrp_gateway.msrp.fingerprint import Fingerprint, fingerprint_of, pem_to_der
from msrp_gateway.msrp.link import LinkCore
from msrp_gateway.msrp.message import FrameParser
from msrp_gateway.msrp.session import SessionSettings
from msrp_gateway.msrp.transport import MSRPStack, TLSSettings
from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings
from tests.tlscerts import make_certs
from tests.unit.test_ua_late_offer import ack, late_invite, our_200
from tests.unit.test_ua_real_stacks import Env

PEER_TLS_PATH = "msrps://192.0.2.7:7777/peerSess01;tcp"
THEIRS = Fingerprint("sha-256", bytes(range(32)))


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TLSSettings:
    certs = make_certs(tmp_path_factory.mktemp("uafp"))
    return TLSSettings(certs.certificate, certs.private_key, certs.ca_certificates)


@pytest.fixture(scope="module")
def ours(tls) -> Fingerprint:
    with open(tls.certificate, "rb") as f:
        return fingerprint_of(pem_to_der(f.read()))


def tls_env(tls: TLSSettings, **settings) -> Env:
    """Env with an msrps MSRP stack (my_uri msrps:, our certificate), no socket."""
    env = Env(**settings)
    env.msrp = MSRPStack(env.clock, "msrps://127.0.0.1:2856;tcp", tls=tls)
    env.ua = MSRPUserAgent(env.clock, env.sip, env.msrp, UASettings(**settings))
    return env


def peer_offer(*fps: Fingerprint | str, setup: str = "active") -> bytes:
    return sdp.build_offer([PEER_TLS_PATH], ["text/plain"], setup=setup, sess_id=9,
                           fingerprints=list(fps))


class HandLink:
    """One MSRP connection fed by hand: what we write back is kept."""

    def __init__(self, env: Env) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.core = LinkCore(env.clock, env.msrp.table, SessionSettings(), FrameParser(),
                             self.written.append, self._lose, lambda core: None, "hand")

    def _lose(self) -> None:
        self.closed = True

    def bind(self, session_uri: str) -> bytes:
        """The peer's binding SEND; the bytes we answered."""
        self.core.data_received(
            (f"MSRP b1 SEND\r\nTo-Path: {session_uri}\r\nFrom-Path: {PEER_TLS_PATH}\r\n"
             "Message-ID: m1\r\nByte-Range: 1-0/0\r\n-------b1$\r\n").encode())
        return b"".join(self.written)

    def drop(self) -> None:
        self.core.connection_lost("test over")


def our_msrp_media(body: bytes) -> sdp.MSRPMedia:
    return sdp.find_msrp_media(sdp.parse_sdp(body))


def test_our_msrps_offer_carries_the_fingerprint_of_our_certificate(tls, ours):
    env = tls_env(tls)
    sid, invite = env.start()
    media = our_msrp_media(invite.body)
    assert media.proto == sdp.PROTO_TLS and media.fingerprints == [ours]
    assert env.msrp.local_fingerprint() == ours
    env.ua.end(sid)
    env.drain()


def test_a_plain_msrp_offer_carries_no_fingerprint():
    env = Env()
    _, invite = env.start()
    assert b"a=fingerprint" not in invite.body
    env.clock.advance(64 * 0.5)  # Timer B: nothing answers
    env.drain()


def test_our_answer_carries_our_fingerprint_and_the_peers_pins_its_binding(tls, ours):
    env = tls_env(tls)
    sid = env.invite_in(peer_offer(THEIRS))  # the peer is active: it will connect
    [ok] = [r for r in env.sent(200)]
    assert our_msrp_media(ok.body).fingerprints == [ours]
    [info] = env.ua.sessions()
    link = HandLink(env)
    answer = link.bind(info.local_path[-1])
    # no certificate on that connection: refused 403, the session ends with the reason
    assert answer.startswith(b"MSRP b1 403 ")
    [(kind, ended_sid, why)] = env.h.events
    assert kind == "terminated" and ended_sid == sid
    assert why.startswith("MSRP session not bound: peer certificate does not match the SDP "
                          "fingerprint (got no certificate)")
    link.drop()  # (a socket would be closed by the stack; a hand link has no protocol)
    env.drain()
    env.assert_no_leftovers()


def test_a_peer_without_fingerprint_binds_as_before(tls):
    env = tls_env(tls)
    sid = env.invite_in(peer_offer())
    [info] = env.ua.sessions()
    link = HandLink(env)
    assert link.bind(info.local_path[-1]).startswith(b"MSRP b1 200 OK\r\n")
    assert env.h.events == []  # bound, waiting for the ACK only
    env.ua.end(sid)
    link.drop()
    env.answer_byes()
    env.drain()
    env.assert_no_leftovers()


def test_late_offer_carries_our_fingerprint_and_the_ack_answer_pins(tls, ours):
    env = tls_env(tls)
    sid = late_invite(env)
    offer = our_200(env).body
    assert our_msrp_media(offer).fingerprints == [ours]
    answer = sdp.build_answer(offer, [PEER_TLS_PATH], ["text/plain"], prefer_active=True,
                              sess_id=9, fingerprints=[THEIRS]).body
    ack(env, answer)
    [info] = env.ua.sessions()
    link = HandLink(env)
    assert link.bind(info.local_path[-1]).startswith(b"MSRP b1 403 ")
    assert [e[0] for e in env.h.events] == ["terminated"]
    assert "does not match the SDP fingerprint" in env.h.events[0][2]
    assert env.answer_byes() == 1
    link.drop()
    env.drain()
    env.assert_no_leftovers()


def test_an_offer_with_only_malformed_fingerprints_is_refused_488(tls):
    env = tls_env(tls)
    bad = peer_offer() + b"a=fingerprint:sha-256 00:11\r\n"
    with pytest.raises(UAError) as e:
        env.invite_in(bad)
    assert e.value.code == 488
    assert "a=fingerprint" in dict(e.value.headers)["Warning"]
    assert env.ua.sessions() == [] and len(env.msrp.table) == 0
