"""The UA's SIP side against sipp, with tshark judging what went over the wire.

- sipp as callee answers our INVITE with a canned MSRP SDP pointing at an MSRP peer run in
  this test, then hangs up; messages go both ways in between.
- sipp as caller offers a canned MSRP SDP (with a rejected audio line); we answer, connect
  or wait per its a=setup, exchange messages and hang up.
tshark captures the test's ports on lo and must find SIP, SDP and MSRP and nothing malformed.
Tools missing: skip locally, fail under CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task, threads

from bench.gateway_harness import Capture as Dumpcap
from bench.ports import free_port, is_bound
from msrp_gateway.msrp.transport import MSRPStack
from msrp_gateway.sip.stack import SIPStack
from msrp_gateway.sip.transport import SIPTransport
from msrp_gateway.ua import MSRPUserAgent, UAError, UASettings
from tests.integration.test_ua_loopback import Handler

SCENARIOS = Path(__file__).parent / "sipp_ua"
SIPP = shutil.which("sipp")
TSHARK = shutil.which("tshark")
TIMEOUT = 30.0  # a bound, never waited out when things work: room for a slow CI


def need(tool: str | None, name: str) -> None:
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} is not installed")


class Proc(protocol.ProcessProtocol):
    """A subprocess whose output we keep; `ended` fires with its exit code."""

    def __init__(self, ready_marker: bytes | None = None) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int] = defer.Deferred()
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._marker = ready_marker
        if ready_marker is None:
            self.ready.callback(None)

    def outReceived(self, data: bytes) -> None:
        self.out += data[-65536:]

    def errReceived(self, data: bytes) -> None:
        self.err += data
        if self._marker is not None and not self.ready.called and self._marker in self.err:
            self.ready.callback(None)

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", None)
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"process ended before it was ready: {self.err[-500:]!r}"))
        self.ended.callback(code if code is not None else -1)


RUNNING: list[Proc] = []  # ended by the fixture if a failed test left them running


def spawn(args: list[str], cwd: Path, ready_marker: bytes | None = None) -> Proc:
    p = Proc(ready_marker)
    reactor.spawnProcess(p, args[0], args, env=os.environ.copy(), path=str(cwd))
    RUNNING.append(p)
    return p


async def end_leftover_processes() -> None:
    while RUNNING:
        p = RUNNING.pop()
        if not p.ended.called:
            p.transport.signalProcess(signal.SIGKILL)  # type: ignore[union-attr]
            await p.ended


class Gateway:
    """Our UA on UDP SIP + TCP MSRP, and an MSRP peer standing in for the client's side."""

    def __init__(self) -> None:
        self.transport = SIPTransport(reactor)
        self.sip_port = self.transport.listen("udp:127.0.0.1:0").getHost().port
        self.sip = SIPStack(reactor, self.transport, local_uri_host=f"127.0.0.1:{self.sip_port}",
                            router=self.route)
        self.msrp = MSRPStack(reactor)
        self.msrp_port = self.msrp.listen("msrp:127.0.0.1:0").getHost().port
        self.ua = MSRPUserAgent(reactor, self.sip, self.msrp, UASettings(setup_timeout=10))
        self.h = Handler(TIMEOUT)
        self.peer = MSRPStack(reactor)
        self.peer_port = self.peer.listen("msrp:127.0.0.1:0").getHost().port
        self.peer_session = self.peer.create_session(["text/plain"])
        self.peer_inbox: list[bytes] = []
        self.peer_got: defer.Deferred = defer.Deferred()
        self.peer_session.on_message = self._peer_message

    def _peer_message(self, msg) -> None:
        self.peer_inbox.append(msg.body)
        if not self.peer_got.called:
            self.peer_got.callback(msg.body)

    def route(self, txn) -> None:
        if txn.request.method != "INVITE":
            txn.respond(405)
            return
        try:
            self.ua.answer(txn, "text/plain", self.h)
        except UAError as e:
            txn.respond(e.code, e.reason, headers=e.headers)

    async def stop(self) -> None:
        await self.ua.stop()
        self.peer_session.close()
        await defer.gatherResults([self.msrp.stop(), self.peer.stop()])
        self.sip.stop()  # cancels the stack's own timers
        await self.transport.stop()


async def start_capture(tmp_path: Path, udp_ports: list[int], tcp_ports: list[int]) -> Capture:
    """The harness's dumpcap capture (live before this returns: a probe datagram is in the
    file), started in a thread so the reactor keeps running."""
    dumpcap = await threads.deferToThread(Dumpcap, str(tmp_path), udp_ports + tcp_ports)
    if dumpcap.error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"dumpcap could not capture: {dumpcap.error}")
        pytest.skip(f"dumpcap could not capture: {dumpcap.error}")
    return Capture(dumpcap, udp_ports, tcp_ports)


async def until_bound(port: int, timeout: float = TIMEOUT) -> None:
    """A child's UDP port is bound (read from /proc/net, the reactor keeps running)."""
    await until(lambda: is_bound(port, "udp"), f"bound udp port {port}", timeout)


async def until(predicate, what: str, timeout: float = TIMEOUT) -> None:
    """Poll `predicate`, bounded by `timeout` s of wall-clock time (not loop turns, which
    stretch on a loaded machine)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            raise TimeoutError(f"no {what} within {timeout} s")
        await task.deferLater(reactor, 0.02, lambda: None)


def bounded(d: defer.Deferred, timeout: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(timeout, reactor)


class Capture:
    """A capture of the test's ports on lo; tshark judges it once it is stopped."""

    def __init__(self, dumpcap: Dumpcap, udp_ports: list[int], tcp_ports: list[int]) -> None:
        self.dumpcap = dumpcap
        self.pcap = Path(dumpcap.path)
        self.udp_ports, self.tcp_ports = udp_ports, tcp_ports

    async def stop_and_check(self) -> dict[str, int]:
        # stops once a last probe is in the file: every frame of the test is in it too
        await threads.deferToThread(self.dumpcap.stop)
        decode = []
        for p in self.udp_ports:
            decode += ["-d", f"udp.port=={p},sip"]
        for p in self.tcp_ports:
            decode += ["-d", f"tcp.port=={p},msrp"]
        counts = {}
        for name, flt in [("bad", "_ws.malformed || _ws.expert.severity == error"),
                          ("sip", "sip"), ("sdp", "sdp"), ("msrp", "msrp")]:
            p = spawn([TSHARK, "-n", "-r", str(self.pcap), *decode, "-Y", flt,
                       "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"], self.pcap.parent)
            assert await p.ended == 0, p.err
            lines = [l for l in p.out.decode(errors="replace").splitlines() if l.strip()]
            if name == "bad":
                assert lines == [], "tshark found malformed frames:\n" + "\n".join(lines)
            counts[name] = len(lines)
        return counts


@pytest.fixture
def gateway(clean_reactor):
    need(SIPP, "sipp")
    need(TSHARK, "tshark")
    gw = Gateway()
    yield gw
    pytest_twisted.blockon(defer.ensureDeferred(end_leftover_processes()))
    pytest_twisted.blockon(defer.ensureDeferred(gw.stop()))
    # until the closed connections and the stacks' timers have wound down (bounded)
    if clean_reactor is not None:
        pytest_twisted.blockon(defer.ensureDeferred(clean_reactor.settle()))


def sipp_args(scenario: str, *extra: str) -> list[str]:
    return [SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-m", "1", "-nostdin",
            "-timeout", str(int(TIMEOUT)), "-timeout_error", "-trace_err", *extra]


@pytest_twisted.ensureDeferred
async def test_sipp_callee_answers_our_offer_and_hangs_up(gateway, tmp_path):
    gw = gateway
    sipp_port = free_port()
    cap = await start_capture(tmp_path, [gw.sip_port, sipp_port], [gw.msrp_port, gw.peer_port])
    peer_bound = gw.peer_session.wait_bound(TIMEOUT)
    sipp = spawn(sipp_args("uas_msrp_answer.xml", "-p", str(sipp_port),
                           "-key", "msrp_port", str(gw.peer_port),
                           "-key", "msrp_path", gw.peer_session.local_uri, "-d", "1500"), tmp_path)
    await until_bound(sipp_port)  # traffic is aimed at sipp only once it listens
    sid = gw.ua.start("text/plain", f"sip:gw@127.0.0.1:{gw.sip_port}", f"sip:sipp@127.0.0.1:{sipp_port}",
                      f"sip:sipp@127.0.0.1:{sipp_port}", gw.h)
    await gw.h.wait("established")
    await peer_bound  # our binding SEND reached the peer named in sipp's answer
    gw.peer_session.set_remote_path(gw.ua.sessions()[0].local_path)
    assert await gw.ua.send(sid, "text/plain", b"hello from the gateway") == 200
    assert await bounded(gw.peer_got) == b"hello from the gateway"
    assert await gw.peer_session.send("text/plain", b"hello from the client") == 200
    assert (await gw.h.wait("message")) == [("message", sid, "text/plain", b"hello from the client")]
    [ended] = await gw.h.wait("terminated")
    assert ended == ("terminated", sid, "BYE from peer")
    code = await bounded(sipp.ended, TIMEOUT + 30)  # sipp's own -timeout ends it first
    assert code == 0, (sipp.out[-2000:], sipp.err[-2000:])
    assert gw.h.endings() == [ended]
    counts = await cap.stop_and_check()
    assert counts["sip"] >= 6 and counts["sdp"] >= 2 and counts["msrp"] >= 4, counts


@pytest.mark.parametrize("setup", ["passive", "active"])
@pytest_twisted.ensureDeferred
async def test_sipp_caller_offers_we_answer_and_hang_up(gateway, tmp_path, setup):
    gw = gateway
    cap = await start_capture(tmp_path, [gw.sip_port], [gw.msrp_port, gw.peer_port])
    peer_bound = gw.peer_session.wait_bound(TIMEOUT) if setup == "passive" else None
    sipp = spawn(sipp_args("uac_msrp_offer.xml", f"127.0.0.1:{gw.sip_port}", "-p", str(free_port()),
                           "-key", "msrp_port", str(gw.peer_port),
                           "-key", "msrp_path", gw.peer_session.local_uri,
                           "-key", "msrp_setup", setup), tmp_path)
    if setup == "active":
        # the caller is to connect: we must wait; the peer connects to our answer's path
        await until(gw.ua.sessions, "session answered for sipp's INVITE")
        info = gw.ua.sessions()[0]
        assert gw.msrp.connection_count() == 0  # we never connect toward an active peer
        gw.peer_session.set_remote_path(info.local_path)
        await gw.peer_session.connect()
    else:
        await peer_bound
    [(_, sid)] = await gw.h.wait("established")
    info = gw.ua.sessions()[0]
    assert info.role == "uas" and info.remote_path == [gw.peer_session.local_uri]
    gw.peer_session.set_remote_path(info.local_path)
    assert await gw.peer_session.send("text/plain", b"hi gateway") == 200
    assert (await gw.h.wait("message")) == [("message", sid, "text/plain", b"hi gateway")]
    assert await gw.ua.send(sid, "text/plain", b"hi client") == 200
    assert await bounded(gw.peer_got) == b"hi client"
    assert gw.ua.end(sid)
    code = await bounded(sipp.ended, TIMEOUT + 30)  # sipp's own -timeout ends it first
    assert code == 0, (sipp.out[-2000:], sipp.err[-2000:])
    assert gw.h.endings() == [("terminated", sid, "ended locally")]
    counts = await cap.stop_and_check()
    assert counts["sip"] >= 5 and counts["sdp"] >= 2 and counts["msrp"] >= 4, counts


@pytest_twisted.ensureDeferred
async def test_sipp_caller_without_a_common_type_gets_488_with_warning(gateway, tmp_path):
    gw = gateway
    cap = await start_capture(tmp_path, [gw.sip_port], [])
    sipp = spawn(sipp_args("uac_msrp_refused.xml", f"127.0.0.1:{gw.sip_port}", "-p", str(free_port())),
                 tmp_path)
    code = await bounded(sipp.ended, TIMEOUT + 30)  # sipp's own -timeout ends it first
    assert code == 0, (sipp.out[-2000:], sipp.err[-2000:])
    assert gw.h.events == [] and gw.ua.sessions() == []
    counts = await cap.stop_and_check()
    assert counts["sip"] >= 3 and counts["sdp"] >= 1, counts
