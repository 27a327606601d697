"""The real OpenSIPS clients against our MI: opensips-cli over HTTP, and the
``opensips`` package's event tooling subscribing over udp: and tcp:.

The MI site runs in the test's reactor on 127.0.0.1 (port from the OS) with a
registry double behind the real resource; the clients run as subprocesses (or,
for the Python API, in a thread) so the reactor keeps serving them.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task, threads

from bench.ports import free_port
from msrp_gateway.events import EVENT_SETUP_FAILED, EventBus
from msrp_gateway.mi import make_site
from msrp_gateway.mi_commands import _gateway_errors, build_table

SessionNotFound, _ = _gateway_errors()

OPENSIPS_CLI = shutil.which("opensips-cli")
OPENSIPS_EVENT = shutil.which("opensips-event")


def need(tool: str | None, name: str) -> None:
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI")
        pytest.skip(f"{name} is not installed")


KEY = "sip:alice@a.example-sip:bob@b.example"
PARAMS = {"key": KEY, "from_uri": "sip:bob@b.example", "to_uri": "sip:alice@a.example",
          "ruri": "sip:alice@a.example", "code": 486, "reason": "Busy Here"}


class Registry:
    """Stands in for the gateway registry: what the MI reads and ends."""

    def __init__(self) -> None:
        self.sessions = {KEY: {"key": KEY, "msg_side_to": "sip:bob@b.example",
                               "msg_side_ruri": "sip:bob@b.example",
                               "msrp_ua_session_id": "f00dfeed", "state": "established"}}
        self.ended: list[str] = []

    def list_sessions(self):
        return list(self.sessions.values())

    def end_session(self, key):
        if self.sessions.pop(key, None) is None:
            raise SessionNotFound(key)
        self.ended.append(key)


@pytest.fixture
def mi():
    registry = Registry()
    events = EventBus(reactor)
    table = build_table(clock=reactor, gateway=registry, events=events)
    port = reactor.listenTCP(0, make_site(table, clock=reactor), interface="127.0.0.1")

    class MI:
        pass

    m = MI()
    m.registry, m.events, m.port = registry, events, port.getHost().port
    m.url = f"http://127.0.0.1:{m.port}/mi"
    yield m
    pytest_twisted.blockon(events.stop())
    pytest_twisted.blockon(port.stopListening())


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out, self.err = b"", b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


@defer.inlineCallbacks
def run(executable: str, args: list[str], home: str, timeout: float = 90):
    """Run a client to completion without blocking the reactor: (rc, stdout, stderr)."""
    proc = Collect()
    env = dict(os.environ, HOME=home, NO_COLOR="1")
    transport = reactor.spawnProcess(proc, executable, [executable, *args], env=env, path=home)
    timer = reactor.callLater(timeout, transport.signalProcess, "KILL")
    rc = yield proc.ended
    if timer.active():
        timer.cancel()
    return rc, proc.out.decode(), proc.err.decode()


def cli(m, home, *command: str):
    return run(OPENSIPS_CLI, ["-o", "communication_type=http", "-o", f"url={m.url}",
                              "-o", "output_type=pretty-print", "-x", "mi", *command], home)


@defer.inlineCallbacks
def until(predicate, timeout: float = 60.0, describe=lambda: ""):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        yield task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"condition not reached in time {describe()}")


# --- opensips-cli ---------------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_opensips_cli_lists_and_ends_sessions(mi, tmp_path):
    need(OPENSIPS_CLI, "opensips-cli")
    rc, out, err = yield cli(mi, str(tmp_path), "msrp_gw_list_sessions")
    assert rc == 0, err
    assert json.loads(out) == [mi.registry.sessions[KEY]]

    rc, out, err = yield cli(mi, str(tmp_path), "msrp_gw_end_session", KEY)
    assert rc == 0, err
    assert json.loads(out) == "OK"
    assert mi.registry.ended == [KEY]

    rc, out, err = yield cli(mi, str(tmp_path), "msrp_gw_list_sessions")
    assert (rc, json.loads(out)) == (0, [])


@pytest_twisted.inlineCallbacks
def test_opensips_cli_prints_404_for_an_unknown_key(mi, tmp_path):
    need(OPENSIPS_CLI, "opensips-cli")
    rc, out, err = yield cli(mi, str(tmp_path), "msrp_gw_end_session", "sip:nobody@x-sip:y@z")
    assert rc != 0
    assert "404: Session doesn't exist" in out + err


@pytest_twisted.inlineCallbacks
def test_opensips_cli_which_and_aliases(mi, tmp_path):
    need(OPENSIPS_CLI, "opensips-cli")
    rc, out, err = yield cli(mi, str(tmp_path), "which")
    assert rc == 0, err
    names = json.loads(out)
    assert {"msrp_gw_list_sessions", "msrp_gw_end_session", "msrp_gateway:list_sessions",
            "msrp_gateway:end_session", "which", "event_subscribe"} <= set(names)
    rc, out, err = yield cli(mi, str(tmp_path), "which", "command=msrp_gw_end_session")
    assert (rc, json.loads(out)) == (0, [["key"]])
    rc, out, err = yield cli(mi, str(tmp_path), "msrp_gateway:end_session", f"key={KEY}")
    assert (rc, json.loads(out)) == (0, "OK")


# --- opensips-event (udp) ----------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_opensips_event_command_receives_setup_failed_over_udp(mi, tmp_path):
    need(OPENSIPS_EVENT, "opensips-event")
    proc = Collect()
    exe = OPENSIPS_EVENT
    transport = reactor.spawnProcess(
        proc, exe, [exe, "-t", "http", "-i", "127.0.0.1", "-p", str(mi.port),
                    "-T", "datagram", "-li", "127.0.0.1", EVENT_SETUP_FAILED],
        env=dict(os.environ, HOME=str(tmp_path)), path=str(tmp_path))
    killer = reactor.callLater(120, transport.signalProcess, "KILL")
    try:
        yield until(lambda: mi.events.subscribers(EVENT_SETUP_FAILED)[0][2])
        [sub] = mi.events.subscribers(EVENT_SETUP_FAILED)[0][2]
        assert str(sub.socket).startswith("udp:127.0.0.1:") and sub.expire == 3600
        assert mi.events.raise_event(EVENT_SETUP_FAILED, PARAMS) == 1
        yield until(lambda: proc.out.count(b"}") >= 2)
        message = json.loads(proc.out)
        assert message == {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": PARAMS}
        assert list(message["params"]) == ["key", "from_uri", "to_uri", "ruri", "code", "reason"]
    finally:
        transport.signalProcess("TERM")  # it unsubscribes (expire 0) over MI, then exits
        rc = yield proc.ended
        if killer.active():
            killer.cancel()
    assert rc == 0, proc.err
    assert mi.events.subscribers(EVENT_SETUP_FAILED)[0][2] == []


# --- the opensips Python event API (tcp) --------------------------------------------

def tcp_event_handler(url: str):
    """The opensips package's event handler with a stream (TCP) socket.

    opensips 0.1.11's Stream listens on TCP but names its socket "udp:"; the
    subclass changes only that name, so the subscription says tcp:.
    """
    from opensips.event import OpenSIPSEventHandler
    from opensips.event.stream import Stream
    from opensips.mi import OpenSIPSMI

    class TCPStream(Stream):
        def create(self):
            name = super().create()
            self.sock_name = "tcp:" + name.split(":", 1)[1]
            return self.sock_name

    class Handler(OpenSIPSEventHandler):
        def __new_socket__(self):
            return TCPStream(**self.kwargs)

    return Handler(OpenSIPSMI("http", url=url), "stream", ip="127.0.0.1", port=0)


@pytest_twisted.inlineCallbacks
def test_opensips_event_api_receives_setup_failed_over_tcp(mi):
    pytest.importorskip("opensips")
    received: defer.Deferred = defer.Deferred()

    def callback(message):  # runs in the package's reader thread
        reactor.callFromThread(lambda: received.called or received.callback(message))

    handler = tcp_event_handler(mi.url)
    event = yield threads.deferToThread(handler.subscribe, EVENT_SETUP_FAILED, callback, 120)
    try:
        [sub] = mi.events.subscribers(EVENT_SETUP_FAILED)[0][2]
        assert str(sub.socket) == event.socket.sock_name and sub.expire == 120
        params = dict(PARAMS, code=None, reason=None)
        assert mi.events.raise_event(EVENT_SETUP_FAILED, params) == 1
        message = yield received.addTimeout(60, reactor)
        assert message == {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": params}
    finally:
        yield threads.deferToThread(event.unsubscribe)
        yield mi.events.stop()  # closes our kept-open connection to the gone listener
    assert mi.events.subscribers(EVENT_SETUP_FAILED)[0][2] == []


# --- the real gateway registry (UA seam faked) behind the real MI ----------------------

ALICE = "sip:alice@example.net"  # page-mode user
BOB = "sip:bob@example.com"  # MSRP-side user
GW_KEY = f"{BOB}-{ALICE}"


class LiveGateway:
    """gateway.Gateway on the test reactor with testing.FakeUA as its MSRP side and its
    emit_event connected to the EventBus, as service.py wires it."""

    def __init__(self) -> None:
        from msrp_gateway.gateway import Gateway, GatewaySettings
        from msrp_gateway.testing import FakeSIPSender, FakeUA

        self.events = EventBus(reactor)
        self.ua = FakeUA()
        self.gw = Gateway(reactor, self.ua, FakeSIPSender(), GatewaySettings(),
                          self.events.raise_event)
        table = build_table(clock=reactor, gateway=self.gw, ua=self.ua, events=self.events)
        self.listener = reactor.listenTCP(0, make_site(table, clock=reactor),
                                          interface="127.0.0.1")
        self.port = self.listener.getHost().port
        self.url = f"http://127.0.0.1:{self.port}/mi"

    def message(self, body: bytes = b"hello") -> tuple[str, object]:
        """A MESSAGE from ALICE to BOB through msg_to_msrp; returns (UA session id, txn)."""
        import ipaddress

        from msrp_gateway.routing import RequestView
        from msrp_gateway.sip.message import Headers, SIPRequest
        from msrp_gateway.testing import FakePeer, FakeServerTransaction

        h = Headers()
        h.add("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmi1")
        h.add("From", f"<{ALICE}>;tag=a1")
        h.add("To", f"<{BOB}>")
        h.add("Call-ID", "mi-call-1")
        h.add("CSeq", "1 MESSAGE")
        h.add("Max-Forwards", "70")
        h.add("Content-Type", "text/plain")
        txn = FakeServerTransaction(SIPRequest("MESSAGE", BOB, h, body),
                                    FakePeer("udp", "127.0.0.1", 5070))
        req = RequestView(txn, [ipaddress.ip_network("127.0.0.0/8")])
        assert self.gw.msg_to_msrp(req, GW_KEY, "text/plain") == 1
        return self.ua.last().session_id, txn

    @defer.inlineCallbacks
    def close(self):
        yield self.gw.stop()
        yield self.events.stop()
        yield self.listener.stopListening()


@pytest.fixture
def live():
    pytest.importorskip("msrp_gateway.gateway")
    g = LiveGateway()
    yield g
    pytest_twisted.blockon(g.close())


@pytest_twisted.inlineCallbacks
def test_opensips_cli_lists_and_ends_a_live_gateway_session(live, tmp_path):
    need(OPENSIPS_CLI, "opensips-cli")
    sid, _ = live.message()
    live.ua.establish(sid)
    rc, out, err = yield cli(live, str(tmp_path), "msrp_gw_list_sessions")
    assert rc == 0, err
    [entry] = json.loads(out)
    assert (entry["key"], entry["msg_side_to"], entry["msg_side_ruri"],
            entry["msrp_ua_session_id"]) == (GW_KEY, ALICE, ALICE, sid)

    rc, out, err = yield cli(live, str(tmp_path), "msrp_ua_list_sessions")
    assert rc == 0, err
    assert [s["session_id"] for s in json.loads(out)] == [sid]

    rc, out, err = yield cli(live, str(tmp_path), "msrp_gw_end_session", GW_KEY)
    assert (rc, json.loads(out)) == (0, "OK"), err
    assert live.ua.ended == [sid]  # the UA was told to end it (BYE on the MSRP side)
    rc, out, err = yield cli(live, str(tmp_path), "msrp_gw_list_sessions")
    assert (rc, json.loads(out)) == (0, [])
    rc, out, err = yield cli(live, str(tmp_path), "msrp_gw_end_session", GW_KEY)
    assert rc != 0 and "404: Session doesn't exist" in out + err


@pytest_twisted.inlineCallbacks
def test_opensips_event_gets_the_gateways_setup_failure(live, tmp_path):
    need(OPENSIPS_EVENT, "opensips-event")
    proc = Collect()
    exe = OPENSIPS_EVENT
    transport = reactor.spawnProcess(
        proc, exe, [exe, "-t", "http", "-i", "127.0.0.1", "-p", str(live.port),
                    "-T", "datagram", "-li", "127.0.0.1", EVENT_SETUP_FAILED],
        env=dict(os.environ, HOME=str(tmp_path)), path=str(tmp_path))
    killer = reactor.callLater(120, transport.signalProcess, "KILL")
    try:
        yield until(lambda: live.events.subscribers(EVENT_SETUP_FAILED)[0][2])
        sid, _ = live.message()
        live.ua.fail(sid, 486, "Busy Here")  # the MSRP side refuses the INVITE
        yield until(lambda: proc.out.count(b"}") >= 2)
        assert json.loads(proc.out) == {
            "jsonrpc": "2.0", "method": EVENT_SETUP_FAILED,
            "params": {"key": GW_KEY, "from_uri": BOB, "to_uri": ALICE, "ruri": ALICE,
                       "code": 486, "reason": "Busy Here"}}
    finally:
        transport.signalProcess("TERM")
        rc = yield proc.ended
        if killer.active():
            killer.cancel()
    assert rc == 0, proc.err


# --- the whole gateway: `twistd -n msrpgw` with a SIP/MSRP peer played by the test ---------

from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TWISTD = shutil.which("twistd")


def sip_headers(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers, body


def sip_response(request: bytes, status: str, *, to_tag: str = "", extra: str = "",
                 body: bytes = b"") -> bytes:
    _, h, _ = sip_headers(request)
    to = h["to"] if ";tag=" in h["to"] or not to_tag else f"{h['to']};tag={to_tag}"
    text = (f"SIP/2.0 {status}\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {to}\r\n"
            f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return text.encode() + body


class SIPPeer(protocol.DatagramProtocol):
    """Bob's SIP side: answers INVITE with ``answer`` (a status line) and an MSRP SDP,
    records every request, answers BYE with 200."""

    def __init__(self, answer: str, msrp_port: int = 0) -> None:
        self.answer, self.msrp_port = answer, msrp_port
        self.requests: list[str] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        start, h, _ = sip_headers(data)
        if start.startswith("SIP/2.0"):
            return
        method = start.split(" ", 1)[0]
        self.requests.append(method)
        port = self.transport.getHost().port
        if method == "INVITE":
            if self.answer.startswith("200"):
                sdp = (f"v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                       f"t=0 0\r\nm=message {self.msrp_port} TCP/MSRP *\r\n"
                       f"a=accept-types:text/plain\r\n"
                       f"a=path:msrp://127.0.0.1:{self.msrp_port}/bobsess;tcp\r\n"
                       f"a=setup:passive\r\n").encode()
                reply = sip_response(data, self.answer, to_tag="bob1", body=sdp, extra=(
                    f"Contact: <sip:bob@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"))
            else:
                reply = sip_response(data, self.answer, to_tag="bob1")
            self.transport.write(reply, addr)
        elif method in ("BYE", "OPTIONS", "MESSAGE"):
            self.transport.write(sip_response(data, "200 OK"), addr)


class MSRPPeer(protocol.Protocol):
    """Bob's MSRP side: answers every SEND with 200 and keeps the bodies."""

    def connectionMade(self) -> None:
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while True:
            first, sep, _ = self.buf.partition(b"\r\n")
            if not sep:
                return
            tid = first.split(b" ")[1]
            end = b"-------" + tid
            i = self.buf.find(end)
            if i < 0:
                return
            frame, self.buf = self.buf[:i + len(end) + 3], self.buf[i + len(end) + 3:]
            _, h, body = sip_headers(frame)
            if b" SEND" in first:
                self.factory.bodies.append(body[:body.rfind(b"\r\n" + end)])
                self.transport.write(
                    b"MSRP " + tid + b" 200 OK\r\nTo-Path: " + h["from-path"].encode() +
                    b"\r\nFrom-Path: " + h["to-path"].split()[-1].encode() + b"\r\n" + end +
                    b"$\r\n")


class Alice(protocol.DatagramProtocol):
    """The page-mode user: sends MESSAGEs, keeps the final answers."""

    def __init__(self) -> None:
        self.answers: list[str] = []

    def datagramReceived(self, data: bytes, addr) -> None:
        start, _, _ = sip_headers(data)
        if start.startswith("SIP/2.0"):
            self.answers.append(start)

    def message(self, gw_port: int, bob_port: int, body: bytes, n: int = 1) -> None:
        port = self.transport.getHost().port
        text = (f"MESSAGE sip:bob@127.0.0.1:{bob_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKalice{n};rport\r\n"
                f"From: <sip:alice@127.0.0.1>;tag=alice{n}\r\nTo: <sip:bob@127.0.0.1>\r\n"
                f"Call-ID: alice-call-{n}\r\nCSeq: {n} MESSAGE\r\nMax-Forwards: 70\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n")
        self.transport.write(text.encode() + body, ("127.0.0.1", gw_port))


GW_LIVE_KEY = "sip:bob@127.0.0.1-sip:alice@127.0.0.1"


def collapse(methods: list[str]) -> list[str]:
    """Requests as transactions: a retransmission right after its original counts once."""
    return [m for i, m in enumerate(methods) if i == 0 or methods[i - 1] != m]


def mi_call(url: str, method: str) -> dict:
    """One JSON-RPC call, blocking (run it in a thread)."""
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(
        {"jsonrpc": "2.0", "method": method, "id": 1}).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def twistd_gateway(tmp_path):
    """`twistd -n msrpgw` on free loopback ports; yields an object with the ports."""
    need(TWISTD, "twistd")

    class GW:
        sip = free_port()
        msrp = free_port(both=False)
        mi = free_port(both=False)

    gw = GW()
    gw.port = gw.mi
    gw.url = f"http://127.0.0.1:{gw.mi}/mi"
    config = tmp_path / "msrpgw.toml"
    config.write_text(f"""
[sip]
socket = ["udp:127.0.0.1:{gw.sip}"]
[msrp]
socket = ["msrp:127.0.0.1:{gw.msrp}"]
my_uri = "msrp://127.0.0.1:{gw.msrp};tcp"
[msrp_ua]
setup_timeout = 10.0
[mi]
http = "127.0.0.1:{gw.mi}"
""")
    proc = Collect()
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path))
    gw.transport = reactor.spawnProcess(
        proc, TWISTD, [TWISTD, "-n", "--pidfile=", "msrpgw", "--config", str(config)],
        env=env, path=str(REPO))
    gw.proc = proc
    try:
        pytest_twisted.blockon(until(lambda: b"msrpgw started" in proc.out
                                     or proc.ended.called, timeout=60))
        assert not proc.ended.called, proc.out.decode() + proc.err.decode()
        yield gw
    finally:
        if not proc.ended.called:
            gw.transport.signalProcess("TERM")
            killer = reactor.callLater(30, gw.transport.signalProcess, "KILL")
            pytest_twisted.blockon(proc.ended)
            if killer.active():
                killer.cancel()


@pytest_twisted.inlineCallbacks
def test_whole_gateway_live_session_listed_and_ended_by_opensips_cli(twistd_gateway, tmp_path):
    need(OPENSIPS_CLI, "opensips-cli")
    gw = twistd_gateway
    msrp_factory = protocol.Factory.forProtocol(MSRPPeer)
    msrp_factory.bodies = []
    msrp_port = reactor.listenTCP(0, msrp_factory, interface="127.0.0.1")
    bob = SIPPeer("200 OK", msrp_port.getHost().port)
    bob_port = reactor.listenUDP(0, bob, interface="127.0.0.1")
    alice = Alice()
    alice_port = reactor.listenUDP(0, alice, interface="127.0.0.1")
    try:
        alice.message(gw.sip, bob_port.getHost().port, b"hello bob")
        # an empty binding SEND first (RFC 4975 s.5.4), then the MESSAGE's body
        yield until(lambda: [b for b in msrp_factory.bodies if b] == [b"hello bob"],
                    describe=lambda: (alice.answers, bob.requests, msrp_factory.bodies,
                                      gw.proc.out.decode()[-3000:]))
        assert alice.answers[-1].startswith("SIP/2.0 202")
        # the INVITE may come more than once (Timer A when our 200 was read late)
        assert collapse(bob.requests)[:2] == ["INVITE", "ACK"]

        rc, out, err = yield cli(gw, str(tmp_path), "msrp_gw_list_sessions")
        assert rc == 0, err
        [entry] = json.loads(out)
        assert entry["key"] == GW_LIVE_KEY
        assert entry["msg_side_to"] == "sip:alice@127.0.0.1"
        assert entry["msrp_ua_session_id"] != ""

        rc, out, err = yield cli(gw, str(tmp_path), "msrp_gw_end_session", GW_LIVE_KEY)
        assert (rc, json.loads(out)) == (0, "OK"), err
        yield until(lambda: "BYE" in bob.requests)  # the MSRP side sees BYE

        rc, out, err = yield cli(gw, str(tmp_path), "msrp_gw_list_sessions")
        assert (rc, json.loads(out)) == (0, [])
        rc, out, err = yield cli(gw, str(tmp_path), "msrp_gw_end_session", GW_LIVE_KEY)
        assert rc != 0 and "404: Session doesn't exist" in out + err
        rc, out, err = yield cli(gw, str(tmp_path), "which")
        assert rc == 0 and "msrp_gw_end_session" in json.loads(out)
    finally:
        yield msrp_port.stopListening()
        yield bob_port.stopListening()
        yield alice_port.stopListening()


@pytest_twisted.inlineCallbacks
def test_whole_gateway_setup_failure_reaches_opensips_event_over_udp(twistd_gateway, tmp_path):
    need(OPENSIPS_EVENT, "opensips-event")
    gw = twistd_gateway
    bob = SIPPeer("486 Busy Here")
    bob_port = reactor.listenUDP(0, bob, interface="127.0.0.1")
    alice = Alice()
    alice_port = reactor.listenUDP(0, alice, interface="127.0.0.1")
    proc = Collect()
    exe = OPENSIPS_EVENT
    transport = reactor.spawnProcess(
        proc, exe, [exe, "-t", "http", "-i", "127.0.0.1", "-p", str(gw.mi),
                    "-T", "datagram", "-li", "127.0.0.1", EVENT_SETUP_FAILED],
        env=dict(os.environ, HOME=str(tmp_path)), path=str(tmp_path))
    killer = reactor.callLater(120, transport.signalProcess, "KILL")
    try:
        # subscribed once the gateway lists the subscriber (asked over HTTP directly:
        # an opensips-cli per poll took seconds on a loaded machine)
        for _ in range(600):
            answer = yield threads.deferToThread(mi_call, gw.url, "subscribers_list")
            if answer.get("result", {}).get("Events"):
                break
            assert not proc.ended.called, proc.err
            yield task.deferLater(reactor, 0.1, lambda: None)
        else:
            pytest.fail(f"opensips-event never subscribed: {proc.err[-1000:]!r}")
        alice.message(gw.sip, bob_port.getHost().port, b"are you there?")
        yield until(lambda: proc.out.count(b"}") >= 2)
        bob_uri = f"sip:bob@127.0.0.1:{bob_port.getHost().port}"
        message = json.loads(proc.out)
        assert message["method"] == EVENT_SETUP_FAILED
        assert message["params"] == {"key": GW_LIVE_KEY, "from_uri": "sip:bob@127.0.0.1",
                                     "to_uri": "sip:alice@127.0.0.1",
                                     "ruri": "sip:alice@127.0.0.1",
                                     "code": 486, "reason": "Busy Here"}, bob_uri
        assert bob.requests[0] == "INVITE"
    finally:
        transport.signalProcess("TERM")
        rc = yield proc.ended
        if killer.active():
            killer.cancel()
        yield bob_port.stopListening()
        yield alice_port.stopListening()
    assert rc == 0, proc.err


@pytest_twisted.inlineCallbacks
def test_whole_gateway_setup_failure_reaches_a_tcp_subscriber(twistd_gateway):
    pytest.importorskip("opensips")
    gw = twistd_gateway
    bob = SIPPeer("603 Decline")
    bob_port = reactor.listenUDP(0, bob, interface="127.0.0.1")
    alice = Alice()
    alice_port = reactor.listenUDP(0, alice, interface="127.0.0.1")
    received: defer.Deferred = defer.Deferred()

    def callback(message):  # the package's reader thread
        reactor.callFromThread(lambda: received.called or received.callback(message))

    handler = tcp_event_handler(gw.url)
    event = yield threads.deferToThread(handler.subscribe, EVENT_SETUP_FAILED, callback, 300)
    try:
        alice.message(gw.sip, bob_port.getHost().port, b"ping", n=7)
        message = yield received.addTimeout(60, reactor)
        assert message == {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": {
            "key": GW_LIVE_KEY, "from_uri": "sip:bob@127.0.0.1", "to_uri": "sip:alice@127.0.0.1",
            "ruri": "sip:alice@127.0.0.1", "code": 603, "reason": "Decline"}}
    finally:
        yield threads.deferToThread(event.unsubscribe)
        yield bob_port.stopListening()
        yield alice_port.stopListening()
