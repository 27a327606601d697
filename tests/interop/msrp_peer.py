"""The session-mode side for end-to-end tests and benchmarks: one process running the
project's own SIP stack, MSRP stack and MSRP user agent, driven by JSON lines.

    python tests/interop/msrp_peer.py --host 127.0.0.1 [--answer MODE] [--proxy SIP-URI]

MODE is answer, delay:SECONDS (answer late), hold (answer when told: `release`),
reject:CODE or ignore (never answer).

Prints `{"event": "ready", "sip_port": N, "msrp_port": M}` once listening (ports from the
OS), then one JSON object per line for everything that happens: `invite`, `established`,
`failed`, `terminated`, `message`, `report`, `send_result`, `ended`. Reads commands from
stdin, one JSON object per line:

    {"cmd": "invite", "from": URI, "to": URI, "ruri": URI, "types": "text/plain"}
    {"cmd": "send", "sid": ID, "ctype": "text/plain", "body": "text" | "size": 10000,
     "failure_report": "yes", "success_report": "no"}
    {"cmd": "bye", "sid": ID}
    {"cmd": "answer", "mode": "answer" | "reject:486" | "ignore" | "hold"}
    {"cmd": "release"}               # answer every held INVITE now -> {"event": "released",
                                     # "count": N}; with no time-based guess in a test
    {"cmd": "quiet", "on": true, "sample": 10}   # print only every 10th `message` event
                                                 # (load runs count them with `stats`)
    {"cmd": "stats"}                 # -> {"event": "stats", "messages": N, "sessions": N}
    {"cmd": "stall", "on": true}     # stop (false: resume) reading every MSRP connection,
                                     # as an overloaded peer does: the sender's queue fills
    {"cmd": "quit"}

`report` events carry the REPORT's `status`, `byte_range` and `message_id` (match it to the
SEND it reports on, e.g. in a capture). `send` with `"success_report": "yes"` asks for a
success REPORT (Success-Report: yes).
`send` with `"count": N` and `"rate": R` sends N messages at R per second (round-robin over
every established session when `"sid": "*"`) and reports once in a `burst_done` event.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver


def emit(**event: Any) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class PeerHandler:
    """UA handler for every session of the peer: each notification becomes one event."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def established(self, sid: str) -> None:
        self.peer.established.add(sid)
        emit(event="established", sid=sid)

    def failed(self, sid: str, code: int | None, reason: str | None) -> None:
        emit(event="failed", sid=sid, code=code, reason=reason)

    def terminated(self, sid: str, why: str) -> None:
        self.peer.established.discard(sid)
        emit(event="terminated", sid=sid, why=why)

    def message_received(self, sid: str, msg: Any) -> None:
        self.peer.messages += 1
        if self.peer.quiet and not (self.peer.sample and self.peer.messages % self.peer.sample
                                    == 0):
            return
        emit(event="message", sid=sid, ctype=msg.content_type, size=len(msg.body),
             body=msg.body.decode("utf-8", "replace") if len(msg.body) <= 2048 else None,
             received=time.time())

    def report_received(self, sid: str, report: Any) -> None:
        headers = getattr(report, "headers", None)
        get = headers.get if headers is not None else (lambda name: None)
        emit(event="report", sid=sid, status=get("Status"), byte_range=get("Byte-Range"),
             message_id=get("Message-ID"))


class Peer:
    def __init__(self, reactor: Any, host: str, answer: str, types: str,
                 proxy: str | None = None) -> None:
        from msrp_gateway.msrp.session import SessionSettings
        from msrp_gateway.msrp.transport import MSRPStack
        from msrp_gateway.sip.stack import SIPStack
        from msrp_gateway.ua import MSRPUserAgent, UASettings

        self.reactor = reactor
        self.answer_mode = answer
        self.types = types
        self.quiet = False
        self.sample = 0  # when quiet: still print every sample-th message (latency probes)
        self.messages = 0
        self.established: set[str] = set()
        self.held: list[Any] = []  # INVITE transactions waiting for `release`
        self.msrp = MSRPStack(reactor, None, settings=SessionSettings(chunk_size=4096))
        mport = self.msrp.listen(f"msrp:{host}:0")
        self.transport, sip_port = self._listen_udp_and_tcp(reactor, host)
        self.sip = SIPStack(reactor, self.transport, local_uri_host=f"{host}:{sip_port}",
                            outbound_proxy=proxy, router=self.route)
        self.ua = MSRPUserAgent(reactor, self.sip, self.msrp, UASettings(max_duration=0))
        self.handler = PeerHandler(self)
        self.sip_port = sip_port
        self.msrp_port = mport.getHost().port

    @staticmethod
    def _listen_udp_and_tcp(reactor: Any, host: str) -> tuple[Any, int]:
        """One port number for UDP and TCP. The OS picks the UDP port; TCP may find that
        number held by some outgoing connection, so then another transport tries again."""
        from msrp_gateway.sip.transport import ListenError, SIPTransport

        for _ in range(20):
            transport = SIPTransport(reactor)
            port: int = transport.listen(f"udp:{host}:0").getHost().port
            try:
                transport.listen(f"tcp:{host}:{port}")
            except ListenError:
                transport.stop()
                continue
            return transport, port
        raise RuntimeError(f"no port free for both UDP and TCP on {host}")

    def route(self, txn: Any) -> None:
        req = txn.request
        if req.method != "INVITE":
            txn.respond(405, "Method Not Allowed")
            return
        mode = self.answer_mode
        if mode.startswith("delay:"):  # answer later: the caller's early messages queue
            self.reactor.callLater(float(mode.split(":", 1)[1]), self._answer, txn)
            return
        if mode == "hold":
            self.held.append(txn)
            emit(event="invite_held", ruri=req.uri)
            return
        if mode == "ignore":
            emit(event="invite_ignored", ruri=req.uri)
            return
        if mode.startswith("reject:"):
            code = int(mode.split(":", 1)[1])
            txn.respond(code)
            emit(event="invite_rejected", code=code, ruri=req.uri)
            return
        self._answer(txn)

    def _answer(self, txn: Any) -> None:
        req = txn.request
        try:
            sid = self.ua.answer(txn, self.types, self.handler)
        except Exception as e:  # UAError
            txn.respond(getattr(e, "code", 500), getattr(e, "reason", None))
            emit(event="invite_refused", error=str(e))
            return
        emit(event="invite", sid=sid, ruri=req.uri, **{"from": req.headers.get("From"),
                                                       "to": req.headers.get("To")})

    def command(self, cmd: dict[str, Any]) -> None:
        name = cmd.get("cmd")
        if name == "invite":
            sid = self.ua.start(cmd.get("types", self.types), cmd["from"], cmd["to"],
                                cmd["ruri"], self.handler)
            emit(event="started", sid=sid)
        elif name == "send":
            self.send(cmd)
        elif name == "bye":
            emit(event="ended", sid=cmd["sid"], ok=self.ua.end(cmd["sid"]))
        elif name == "answer":
            self.answer_mode = cmd["mode"]
            emit(event="ok", cmd=name)
        elif name == "release":
            held, self.held = self.held, []
            for txn in held:
                self._answer(txn)
            emit(event="released", count=len(held))
        elif name == "quiet":
            self.quiet = bool(cmd.get("on", True))
            self.sample = int(cmd.get("sample", 0))
            emit(event="ok", cmd=name)
        elif name == "stall":
            emit(event="ok", cmd=name, connections=self.stall(bool(cmd.get("on", True))))
        elif name == "stats":
            emit(event="stats", messages=self.messages, sessions=len(self.established))
        elif name == "quit":
            d = self.ua.stop()
            d.addBoth(lambda _: self.reactor.stop())
        else:
            emit(event="error", error=f"unknown command {name!r}")

    def stall(self, on: bool) -> int:
        """Stop or resume reading our MSRP connections (a test tool may look inside the
        stack it drives: the stack has no public switch for this)."""
        protocols = list(getattr(self.msrp, "_protocols", ()))
        for proto in protocols:
            transport = proto.transport
            if transport is None:
                continue
            if on:
                transport.pauseProducing()
            else:
                transport.resumeProducing()
        return len(protocols)

    def _body(self, cmd: dict[str, Any], i: int = 0) -> bytes:
        if "size" in cmd:
            size = int(cmd["size"])
            unit = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
            return (unit * (size // len(unit) + 1))[:size]
        text = str(cmd.get("body", "")).replace("{i}", str(i))
        if "{t}" in text:  # the send time, for end-to-end latency at the receiver
            text = text.replace("{t}", f"{time.time():.6f}")
        return text.encode()

    def send(self, cmd: dict[str, Any]) -> None:
        ctype = cmd.get("ctype", "text/plain")
        fr = cmd.get("failure_report", "yes")
        sr = cmd.get("success_report", "no")
        count = int(cmd.get("count", 0))
        if not count:
            sid = cmd["sid"]
            d = self.ua.send(sid, ctype, self._body(cmd), failure_report=fr, success_report=sr)
            d.addCallbacks(lambda status: emit(event="send_result", sid=sid, status=status),
                           lambda f: emit(event="send_result", sid=sid,
                                          status=getattr(f.value, "code", 0),
                                          comment=getattr(f.value, "comment", None)))
            return
        self.burst(cmd, ctype, fr, count, float(cmd.get("rate", 100.0)))

    def burst(self, cmd: dict[str, Any], ctype: str, fr: str, count: int, rate: float) -> None:
        """count SENDs at `rate` per second; one `burst_done` with ok/failed counts."""
        sids = sorted(self.established) if cmd.get("sid") == "*" else [cmd["sid"]]
        results = {"ok": 0, "failed": 0}
        pending: list[defer.Deferred[Any]] = []
        started = time.time()
        sent = [0]

        def one() -> None:
            i = sent[0]
            sent[0] += 1
            sid = sids[i % len(sids)]
            d = self.ua.send(sid, ctype, self._body(cmd, i), failure_report=fr)

            def ok(_: object) -> None:
                results["ok"] += 1

            def bad(_: object) -> None:
                results["failed"] += 1

            d.addCallbacks(ok, bad)
            pending.append(d)

        if rate <= 100:
            interval, per_tick = 1.0 / rate, 1
        else:
            interval, per_tick = 0.01, max(1, int(round(rate * 0.01)))

        def several() -> None:
            for _ in range(per_tick):
                if sent[0] >= count:
                    break
                one()
            if sent[0] >= count and loop.running:
                loop.stop()

        loop = task.LoopingCall(several)
        loop.clock = self.reactor
        done = loop.start(interval, now=True)

        def finished(_: object) -> defer.Deferred[Any]:
            return defer.DeferredList(pending, consumeErrors=True)

        done.addCallback(finished)
        done.addCallback(lambda _: emit(event="burst_done", sent=sent[0], **results,
                                        seconds=time.time() - started))


class Commands(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 20

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def lineReceived(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            self.peer.command(json.loads(line))
        except Exception as e:  # noqa: BLE001 - report and keep serving
            emit(event="error", error=f"{type(e).__name__}: {e}")

    def connectionLost(self, reason: Any = None) -> None:
        if self.peer.reactor.running:
            self.peer.reactor.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--answer", default="answer")
    ap.add_argument("--types", default="text/plain")
    ap.add_argument("--log", default="", help="write the stacks' log to this file")
    ap.add_argument("--proxy", default=None,
                    help="outbound proxy for our INVITEs (the gateway: sip:HOST:PORT;lr)")
    args = ap.parse_args(argv)
    from twisted.internet import reactor

    if args.log:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo([textFileLogObserver(open(args.log, "a"))],
                                         redirectStandardIO=False)
    peer = Peer(reactor, args.host, args.answer, args.types, args.proxy)
    stdio.StandardIO(Commands(peer))
    emit(event="ready", sip_port=peer.sip_port, msrp_port=peer.msrp_port)
    reactor.run()


if __name__ == "__main__":
    main()
