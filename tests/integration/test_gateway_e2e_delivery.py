"""`[msrp_gateway] delivery = "end_to_end"` over real sockets: `twistd -n msrpgw` and the
project's MSRP peer (tests/interop/msrp_peer.py) in subprocesses, the page-mode sender a
plain UDP socket of this test on 127.0.0.1. The MESSAGE's final answer is the MSRP
outcome: 200 once the peer took the SEND (never 202), the INVITE's refusal when the set-up
fails (and the sender is still paged about it), 504 at delivery_timeout when the peer
never answers the SEND.
"""

from __future__ import annotations

import secrets
import socket
import time

import pytest

from bench.gateway_harness import HOST, GatewayProcess, PeerProcess

DELIVERY_TIMEOUT = 3.0
WAIT = 30.0  # bounds a failure only; a loaded CI machine may be slow


class Sender:
    """A page-mode UA on a UDP socket (port from the OS): sends MESSAGEs, reads answers,
    answers the MESSAGEs the gateway sends it with 200."""

    def __init__(self, gw_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.gw = (HOST, gw_port)
        self.requests: list[str] = []  # MESSAGEs the gateway sent us

    def close(self) -> None:
        self.sock.close()

    def message(self, user: str, to_user: str, to_port: int, text: str) -> str:
        """Send one MESSAGE; returns its Call-ID."""
        call_id = secrets.token_hex(8)
        body = text.encode()
        head = (
            f"MESSAGE sip:{to_user}@{HOST}:{to_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"From: <sip:{user}@{HOST}:{self.port}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{to_user}@{HOST}:{to_port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendto(head.encode() + body, self.gw)
        return call_id

    def final(self, call_id: str, timeout: float = WAIT) -> tuple[int, float]:
        """(status, seconds waited) of the final answer to that MESSAGE."""
        start = time.monotonic()
        end = start + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no final answer to MESSAGE {call_id} in {timeout} s")
            self.sock.settimeout(left)
            data, addr = self.sock.recvfrom(65535)
            text = data.decode("utf-8", "replace")
            if not text.startswith("SIP/2.0 "):
                self._answer(text, addr)
                continue
            if _header(text, "Call-ID") != call_id:
                continue
            status = int(text.split(" ", 2)[1])
            if status >= 200:
                return status, time.monotonic() - start

    def more_requests(self, timeout: float) -> list[str]:
        """Requests that arrive within `timeout` (answered 200)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            text = data.decode("utf-8", "replace")
            if not text.startswith("SIP/2.0 "):
                self._answer(text, addr)
        return self.requests

    def _answer(self, text: str, addr: tuple[str, int]) -> None:
        self.requests.append(text)
        lines = [ln for ln in text.split("\r\n") if ln.split(":", 1)[0].strip().lower() in
                 ("via", "from", "to", "call-id", "cseq")]
        to_line = next((i for i, ln in enumerate(lines) if ln.lower().startswith("to:")), None)
        if to_line is not None and ";tag=" not in lines[to_line]:
            lines[to_line] += ";tag=sender1"
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
        self.sock.sendto(reply.encode(), addr)


def _header(text: str, name: str) -> str | None:
    for line in text.split("\r\n")[1:]:
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("gw-e2e-delivery"))
    gw = GatewayProcess(workdir, msrp_gateway={"delivery": "end_to_end",
                                               "delivery_timeout": DELIVERY_TIMEOUT})
    gw.start()
    peer = None
    sender = None
    try:
        peer = PeerProcess(workdir, proxy=f"sip:{HOST}:{gw.sip_port};lr")
        sender = Sender(gw.sip_port)
        yield gw, peer, sender
    finally:
        if sender is not None:
            sender.close()
        if peer is not None:
            peer.close()
        gw.stop()


def set_mode(peer: PeerProcess, mode: str) -> None:
    peer.send(cmd="answer", mode=mode)
    peer.expect("ok", cmd="answer")


def user(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def test_message_is_answered_200_once_the_msrp_peer_took_it(world) -> None:
    gw, peer, sender = world
    alice, bob = user("alice"), user("bob")
    first = sender.message(alice, bob, peer.sip_port, "one")
    status, _ = sender.final(first)
    assert status == 200  # not 202: the SEND reached the session-mode peer
    invite = peer.expect("invite", has=f"sip:{bob}@")
    assert peer.expect("message", sid=invite["sid"])["body"] == "one"
    second = sender.message(alice, bob, peer.sip_port, "two")
    assert sender.final(second)[0] == 200
    assert peer.expect("message", sid=invite["sid"])["body"] == "two"


def test_set_up_refused_486_answers_the_message_486_and_still_pages_the_sender(
        world) -> None:
    gw, peer, sender = world
    set_mode(peer, "reject:486")
    try:
        alice, bob = user("alice"), user("bob")
        call_id = sender.message(alice, bob, peer.sip_port, "hello?")
        assert sender.final(call_id)[0] == 486
        notices = [r for r in sender.more_requests(5.0) if r.startswith("MESSAGE ")]
        assert len(notices) == 1 and "could not be delivered (486" in notices[0]
    finally:
        set_mode(peer, "answer")


def test_peer_that_never_answers_the_send_gives_504_at_delivery_timeout(world) -> None:
    gw, peer, sender = world
    alice, bob = user("alice"), user("bob")
    assert sender.final(sender.message(alice, bob, peer.sip_port, "up"))[0] == 200
    sid = peer.expect("invite", has=f"sip:{bob}@")["sid"]
    peer.expect("message", sid=sid)
    peer.send(cmd="stall", on=True)
    peer.expect("ok", cmd="stall")
    try:
        call_id = sender.message(alice, bob, peer.sip_port, "into the void")
        status, waited = sender.final(call_id)
        assert status == 504
        assert DELIVERY_TIMEOUT - 0.5 <= waited < DELIVERY_TIMEOUT + 10
    finally:
        peer.send(cmd="stall", on=False)
        peer.expect("ok", cmd="stall")
