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
def run(executable: str, args: list[str], home: str, timeout: float = 30):
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
def until(predicate, timeout: float = 15.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        yield task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("condition not reached in time")


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
    killer = reactor.callLater(30, transport.signalProcess, "KILL")
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

@pytest_twisted.inlineCallbacks
def test_opensips_event_api_receives_setup_failed_over_tcp(mi):
    pytest.importorskip("opensips")
    from opensips.event import OpenSIPSEventHandler
    from opensips.event.stream import Stream
    from opensips.mi import OpenSIPSMI

    class TCPStream(Stream):
        # opensips 0.1.11's Stream listens on TCP but names its socket "udp:";
        # the name is the only change, so the subscription says tcp:.
        def create(self):
            name = super().create()
            self.sock_name = "tcp:" + name.split(":", 1)[1]
            return self.sock_name

    class Handler(OpenSIPSEventHandler):
        def __new_socket__(self):
            return TCPStream(**self.kwargs)

    received: defer.Deferred = defer.Deferred()

    def callback(message):  # runs in the package's reader thread
        reactor.callFromThread(lambda: received.called or received.callback(message))

    handler = Handler(OpenSIPSMI("http", url=mi.url), "stream", ip="127.0.0.1", port=0)
    event = yield threads.deferToThread(handler.subscribe, EVENT_SETUP_FAILED, callback, 120)
    try:
        [sub] = mi.events.subscribers(EVENT_SETUP_FAILED)[0][2]
        assert str(sub.socket) == event.socket.sock_name and sub.expire == 120
        params = dict(PARAMS, code=None, reason=None)
        assert mi.events.raise_event(EVENT_SETUP_FAILED, params) == 1
        message = yield received.addTimeout(15, reactor)
        assert message == {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": params}
    finally:
        yield threads.deferToThread(event.unsubscribe)
        yield mi.events.stop()  # closes our kept-open connection to the gone listener
    assert mi.events.subscribers(EVENT_SETUP_FAILED)[0][2] == []
