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
import pytest_twisted
from twisted.internet import defer, reactor

from bench.gateway_harness import HOST, GatewayProcess, PeerProcess
from bench.ports import free_port
from msrp_gateway import config
from msrp_gateway.msrp.session import SessionSettings
from msrp_gateway.msrp.transport import MSRPStack
from msrp_gateway.service import build_service
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transport import SIPTransport
from msrp_gateway.ua import MSRPUserAgent, UASettings

# The 504 test's gateway: short, so the test is quick. Every other test gets a gateway
# whose delivery_timeout is far beyond any stall of a loaded machine: there a 3 s stall
# would turn an expected 200 into a 504 (it did).
DELIVERY_TIMEOUT = 3.0
LONG_DELIVERY_TIMEOUT = 25.0
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

    def more_requests(self, timeout: float, until=None) -> list[str]:
        """Requests that arrive within `timeout` (answered 200); with `until`, returns as
        soon as `until(requests)` holds, raising TimeoutError if it never does."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if until is not None and until(self.requests):
                return self.requests
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            text = data.decode("utf-8", "replace")
            if not text.startswith("SIP/2.0 "):
                self._answer(text, addr)
        if until is not None and not until(self.requests):
            raise TimeoutError(f"not within {timeout} s: {until.__doc__ or until}")
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


def _world(tmp_path_factory, delivery_timeout: float):
    """An end_to_end gateway, the MSRP peer routed through it and a sender; all closed
    afterwards, whatever the test did."""
    workdir = str(tmp_path_factory.mktemp("gw-e2e-delivery"))
    gw = GatewayProcess(workdir, msrp_gateway={"delivery": "end_to_end",
                                               "delivery_timeout": delivery_timeout})
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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """For the tests whose MESSAGE must not time out (LONG_DELIVERY_TIMEOUT)."""
    yield from _world(tmp_path_factory, LONG_DELIVERY_TIMEOUT)


@pytest.fixture(scope="module")
def short_world(tmp_path_factory):
    """For the test that waits for delivery_timeout (DELIVERY_TIMEOUT)."""
    yield from _world(tmp_path_factory, DELIVERY_TIMEOUT)


def set_mode(peer: PeerProcess, mode: str) -> None:
    peer.send(cmd="answer", mode=mode)
    peer.expect("ok", cmd="answer")


def user(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def test_message_is_answered_200_once_the_msrp_peer_took_it(world) -> None:
    _, peer, sender = world
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
    _, peer, sender = world
    set_mode(peer, "reject:486")
    try:
        alice, bob = user("alice"), user("bob")
        call_id = sender.message(alice, bob, peer.sip_port, "hello?")
        assert sender.final(call_id)[0] == 486

        def notices(requests: list[str]) -> list[str]:
            """the gateway's MESSAGEs to alice, one per transaction (a retransmission, sent
            when our 200 was slow to come, is the same request)"""
            found = {_header(r, "Call-ID"): r for r in requests
                     if r.startswith("MESSAGE ") and f"sip:{alice}@" in (_header(r, "To") or "")}
            return list(found.values())

        sender.more_requests(WAIT, until=notices)  # the notice, however slow the machine
        sender.more_requests(1.0)  # and no second one right behind it
        assert len(notices(sender.requests)) == 1
        assert "could not be delivered (486" in notices(sender.requests)[0]
    finally:
        set_mode(peer, "answer")


def test_peer_that_never_answers_the_send_gives_504_at_delivery_timeout(short_world) -> None:
    _, peer, sender = short_world
    alice, bob = user("alice"), user("bob")
    # Set-up: a session with the peer. Its MESSAGE's answer is 200, or 504 if this machine
    # stalled past the short DELIVERY_TIMEOUT (that a working delivery gets 200 is proved
    # on the long-timeout gateway above); either way the SEND reached the peer.
    assert sender.final(sender.message(alice, bob, peer.sip_port, "up"))[0] in (200, 504)
    sid = peer.expect("invite", has=f"sip:{bob}@")["sid"]
    assert peer.expect("message", sid=sid)["body"] == "up"
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



# ---- session -> page: the success REPORT follows the phone's answer ----------------------
# The MSRP peer process cannot ask for a success REPORT (its `send` command sets only
# failure_report) and prints a REPORT's Status alone, so this test runs the gateway
# (service.build_service), the session-mode UA and the phone in this process over real
# sockets on 127.0.0.1. The gateway's ports come from free_port(): my_uri must name its
# MSRP port before it binds.

E2E_TIMEOUT = 30.0  # bounds a failure only


class _Waitable:
    """Items as they come; `wait(n)` fires with the first n once there are n."""

    def __init__(self) -> None:
        self.items: list = []
        self._waiters: list = []

    def add(self, item) -> None:
        self.items.append(item)
        for n, d in list(self._waiters):
            if len(self.items) >= n:
                self._waiters.remove((n, d))
                d.callback(self.items[:n])

    def wait(self, n: int) -> defer.Deferred:
        if len(self.items) >= n:
            return defer.succeed(self.items[:n])
        d: defer.Deferred = defer.Deferred()
        self._waiters.append((n, d))
        return d.addTimeout(E2E_TIMEOUT, reactor)


class _SessionSide:
    """The MSRP user: our SIP stack (UDP, the gateway as outbound proxy), MSRP stack and
    UA, and the UA's handler; chunks of 1024 bytes, so a longer message is several SENDs."""

    def __init__(self, gw_sip_port: int) -> None:
        self.transport = SIPTransport(reactor)
        self.sip_port = self.transport.listen(f"udp:{HOST}:0").getHost().port
        self.sip = SIPStack(reactor, self.transport, local_uri_host=f"{HOST}:{self.sip_port}",
                            outbound_proxy=f"sip:{HOST}:{gw_sip_port};lr",
                            router=lambda txn: txn.respond(405))
        self.msrp = MSRPStack(reactor, settings=SessionSettings(chunk_size=1024))
        self.msrp.listen(f"msrp:{HOST}:0")
        self.ua = MSRPUserAgent(reactor, self.sip, self.msrp, UASettings(max_duration=0))
        self.up = _Waitable()
        self.reports = _Waitable()
        self.endings: list = []

    def established(self, sid) -> None:
        self.up.add(sid)

    def failed(self, sid, code, reason) -> None:
        self.endings.append(("failed", code, reason))

    def terminated(self, sid, why) -> None:
        self.endings.append(("terminated", why))

    def message_received(self, sid, msg) -> None:
        pass

    def report_received(self, sid, report) -> None:
        self.reports.add(report)

    async def stop(self) -> None:
        await self.ua.stop()
        await self.msrp.stop()
        self.sip.stop()
        await self.transport.stop()


class _Phone:
    """The page-mode UA (our SIP stack on UDP): keeps each MESSAGE's transaction for the
    test to answer when it chooses."""

    def __init__(self) -> None:
        self.transport = SIPTransport(reactor)
        self.port = self.transport.listen(f"udp:{HOST}:0").getHost().port
        self.sip = SIPStack(reactor, self.transport, local_uri_host=f"{HOST}:{self.port}",
                            router=self.route)
        self.messages = _Waitable()

    def route(self, txn) -> None:
        if txn.request.method != "MESSAGE":
            txn.respond(405)
            return
        self.messages.add(txn)

    async def stop(self) -> None:
        self.sip.stop()
        await self.transport.stop()


@pytest_twisted.async_yield_fixture
async def in_process():
    """Gateway (end_to_end), session-mode side and phone; all stopped afterwards."""
    sip_port, msrp_port = free_port(HOST), free_port(HOST, both=False)
    svc = build_service(config.from_dict({
        "sip": {"socket": [f"udp:{HOST}:{sip_port}"]},
        "msrp": {"socket": [f"msrp:{HOST}:{msrp_port}"],
                 "my_uri": f"msrp://{HOST}:{msrp_port};tcp"},
        "mi": {"http": ""},
        "msrp_gateway": {"delivery": "end_to_end", "delivery_timeout": 10},
    }), reactor)
    svc.startService()
    side = phone = None
    try:
        side = _SessionSide(sip_port)
        phone = _Phone()
        yield side, phone
    finally:
        if side is not None:
            await side.stop()
        await svc.stopService()
        if phone is not None:
            await phone.stop()


def _range(report) -> tuple:
    br = report.byte_range
    return (br.start, br.end, br.total)


@pytest_twisted.ensureDeferred
async def test_success_report_only_after_the_phones_200_and_a_failure_report_for_its_486(
        in_process) -> None:
    """A SEND with Success-Report: yes gets its 200 at once but its success REPORT only
    when the MESSAGE it became is answered 2xx (one REPORT over the whole of a chunked
    message); a MESSAGE answered 486 gets a failure REPORT and no success REPORT."""
    side, phone = in_process
    uri = f"sip:phone{secrets.token_hex(3)}@{HOST}:{phone.port}"
    sid = side.ua.start("text/plain", f"sip:alice@{HOST}:{side.sip_port}", uri, uri, side)
    await side.up.wait(1)

    def send(body: bytes) -> defer.Deferred:
        return side.ua.send(sid, "text/plain", body, failure_report="yes",
                            success_report="yes").addTimeout(E2E_TIMEOUT, reactor)

    # 1. 2500 bytes, three chunks: the SEND's 200 comes while the MESSAGE waits unanswered
    long_body = (b"0123456789abcdefghijklmnopqrstuvwxyz\n" * 70)[:2500]
    assert await send(long_body) == 200
    [txn] = await phone.messages.wait(1)
    assert txn.request.body == long_body
    # A hop-by-hop REPORT would have been written before the last chunk's 200 on the same
    # connection: none came, so none is on its way.
    assert side.reports.items == []
    txn.respond(200)
    [success] = await side.reports.wait(1)
    assert success.headers.get("Status") == "000 200 OK"
    assert _range(success) == (1, 2500, 2500)

    # 2. the phone answers 486: a failure REPORT, never a success one
    assert await send(b"busy?") == 200
    txn = (await phone.messages.wait(2))[1]
    assert side.reports.items == [success]
    txn.respond(486)
    failure = (await side.reports.wait(2))[1]
    assert failure.headers.get("Status") == "000 400 MESSAGE answered 486 Busy Here"
    assert _range(failure) == (1, 5, 5)

    # 3. a later message's success REPORT fences the second: nothing else came for it
    assert await send(b"fenced!") == 200
    txn = (await phone.messages.wait(3))[2]
    txn.respond(200)
    await side.reports.wait(3)
    assert [(r.headers.get("Status")[:7], _range(r)) for r in side.reports.items] == [
        ("000 200", (1, 2500, 2500)), ("000 400", (1, 5, 5)), ("000 200", (1, 7, 7))]
    assert len({r.message_id for r in side.reports.items}) == 3
    assert side.endings == []
