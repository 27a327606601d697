"""The MI site on a real HTTP port (127.0.0.1, port from the OS), driven with curl.

Each README example is run with curl and its JSON asserted; bad input gets its
JSON-RPC error or HTTP status and the server keeps serving.  Event delivery is
checked over real UDP and TCP sockets.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.utils import getProcessOutputAndValue

from bench.ports import free_port
from msrp_gateway.events import EVENT_SETUP_FAILED, EventBus
from msrp_gateway.mi import MIAuth, make_site
from msrp_gateway.mi_commands import _gateway_errors, build_table

SessionNotFound, EndSessionFailed = _gateway_errors()
KEY = "sip:alice@a.example-sip:bob@b.example"
CURL = shutil.which("curl")
# a bound only ever waited out when something is broken: generous, so a slow CI run passes
WAIT = 30.0

if CURL is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("curl is required under CI")
    pytest.skip("curl is not installed", allow_module_level=True)


class FakeRegistry:
    """A registry behind the real resource until the full gateway runs here."""

    def __init__(self) -> None:
        self.sessions = {KEY: {"key": KEY, "msg_side_to": "sip:bob@b.example",
                               "msg_side_ruri": "sip:bob@b.example",
                               "msrp_ua_session_id": "a1b2c3", "state": "established"}}

    def list_sessions(self):
        return list(self.sessions.values())

    def end_session(self, key):
        if self.sessions.pop(key, None) is None:
            raise SessionNotFound(key)


class Server:
    def __init__(self, **site_kwargs) -> None:
        self.gw = FakeRegistry()
        self.events = EventBus(reactor)
        table = build_table(clock=reactor, gateway=self.gw, events=self.events)
        self.port = reactor.listenTCP(0, make_site(table, clock=reactor, **site_kwargs),
                                      interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/mi"

    @defer.inlineCallbacks
    def close(self):
        yield self.events.stop()
        yield self.port.stopListening()


@pytest.fixture
def server():
    s = Server()
    yield s
    pytest_twisted.blockon(s.close())


@defer.inlineCallbacks
def curl(*args: str):
    """Run curl; returns (HTTP status, body bytes)."""
    out, err, code = yield getProcessOutputAndValue(
        CURL, ["-s", "-S", "--max-time", str(int(WAIT)), "-o", "-", "-w", "\n%{http_code}", *args],
        env=os.environ)
    assert code == 0, err
    body, _, status = out.rpartition(b"\n")
    return int(status), body


@defer.inlineCallbacks
def post(server, data: str | bytes, *extra: str):
    if isinstance(data, bytes):
        data = data.decode()
    return (yield curl("-X", "POST", server.url, "-H", "Content-Type: application/json",
                       "--data-binary", data, *extra))


@defer.inlineCallbacks
def wait_until(condition, what: str, timeout: float = WAIT):
    """Let the reactor run until `condition()` holds; fail naming `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what}")
        yield task.deferLater(reactor, 0.01, lambda: None)


def drain_udp(sock: socket.socket, into: list, decode=lambda d: d):
    """A condition-helper: read every datagram waiting on non-blocking `sock` into `into`."""
    while True:
        try:
            into.append(decode(sock.recv(65535)))
        except BlockingIOError:
            return


@defer.inlineCallbacks
def still_serving(server):
    status, body = yield post(server, '{"jsonrpc":"2.0","method":"version","id":99}')
    assert status == 200 and json.loads(body)["id"] == 99


# --- README examples ----------------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_readme_list_sessions(server):
    status, body = yield post(server, '{"jsonrpc":"2.0","method":"msrp_gw_list_sessions","id":1}')
    assert status == 200
    assert json.loads(body) == {"jsonrpc": "2.0", "result": [
        {"key": KEY, "msg_side_to": "sip:bob@b.example", "msg_side_ruri": "sip:bob@b.example",
         "msrp_ua_session_id": "a1b2c3", "state": "established"}], "id": 1}
    assert body.startswith(b'{"jsonrpc":"2.0","result":')


@pytest_twisted.inlineCallbacks
def test_readme_end_session_then_unknown_key(server):
    req = json.dumps({"jsonrpc": "2.0", "method": "msrp_gw_end_session",
                      "params": {"key": KEY}, "id": 2})
    status, body = yield post(server, req)
    assert (status, json.loads(body)) == (200, {"jsonrpc": "2.0", "result": "OK", "id": 2})
    status, body = yield post(server, req)
    assert (status, json.loads(body)) == (200, {"jsonrpc": "2.0", "error": {
        "code": 404, "message": "Session doesn't exist"}, "id": 2})


@pytest_twisted.inlineCallbacks
def test_readme_alias_and_which(server):
    status, body = yield post(
        server, '{"jsonrpc":"2.0","method":"msrp_gateway:list_sessions","id":"a"}')
    assert json.loads(body)["id"] == "a" and len(json.loads(body)["result"]) == 1
    status, body = yield post(
        server, '{"jsonrpc":"2.0","method":"which","params":["msrp_gw_end_session"],"id":3}')
    assert json.loads(body) == {"jsonrpc": "2.0", "result": [["key"]], "id": 3}


@pytest_twisted.inlineCallbacks
def test_readme_event_subscribe_and_subscribers_list(server):
    status, body = yield post(server, json.dumps({
        "jsonrpc": "2.0", "method": "event_subscribe",
        "params": [EVENT_SETUP_FAILED, "udp:127.0.0.1:9999", 60], "id": 4}))
    assert json.loads(body) == {"jsonrpc": "2.0", "result": "OK", "id": 4}
    status, body = yield post(server, '{"jsonrpc":"2.0","method":"subscribers_list","id":5}')
    assert json.loads(body) == {"jsonrpc": "2.0", "result": {"Events": [
        {"name": EVENT_SETUP_FAILED, "id": 0, "Subscribers": [
            {"socket": "udp:127.0.0.1:9999", "expire": 60, "ttl": 60}]}]}, "id": 5}
    status, body = yield post(server, '{"jsonrpc":"2.0","method":"events_list","id":6}')
    assert json.loads(body)["result"] == {"Events": [{"name": EVENT_SETUP_FAILED, "id": 0}]}


@pytest_twisted.inlineCallbacks
def test_readme_uptime_version_log_level(server):
    _, body = yield post(server, '{"jsonrpc":"2.0","method":"uptime","id":7}')
    assert list(json.loads(body)["result"]) == ["Now", "Up since", "Up time"]
    _, body = yield post(server, '{"jsonrpc":"2.0","method":"version","id":8}')
    assert json.loads(body)["result"]["Server"].startswith("msrpgw ")
    _, body = yield post(server, '{"jsonrpc":"2.0","method":"log_level","params":[4],"id":9}')
    assert json.loads(body)["result"] == {"New global log level": 4}
    _, body = yield post(server, '{"jsonrpc":"2.0","method":"log_level","id":10}')
    assert json.loads(body)["result"]["Processes"][0]["Log level"] == 4
    yield post(server, '{"jsonrpc":"2.0","method":"log_level","params":[3],"id":11}')


# --- bad input, server keeps serving ------------------------------------------------

@pytest_twisted.inlineCallbacks
def test_malformed_json_wrong_types_unknown_methods_missing_params(server):
    cases = [
        ('{"jsonrpc":"2.0","method":', {"code": -32700, "message": "Parse error"}, None),
        ('[]', {"code": -32600, "message": "Invalid Request"}, None),
        ('{"jsonrpc":"2.0","method":"nope","id":1}',
         {"code": -32601, "message": "Method not found"}, 1),
        ('{"jsonrpc":"2.0","method":"msrp_gw_end_session","id":1}',
         {"code": -32602, "message": "Invalid params",
          "data": "Too few or too many parameters"}, 1),
        ('{"jsonrpc":"2.0","method":"msrp_gw_end_session","params":{"k":"x"},"id":1}',
         {"code": -32602, "message": "Invalid params",
          "data": "Named parameters do not match"}, 1),
        ('{"jsonrpc":"2.0","method":"msrp_gw_end_session","params":[[1]],"id":"z"}',
         {"code": -32602, "message": "Invalid params",
          "data": "Bad type for parameter 'key'"}, "z"),
        ('{"jsonrpc":"2.0","method":"event_subscribe","params":["E_X","udp:1.2.3.4:5"],"id":2}',
         {"code": 400, "message": "Bad parameter value"}, 2),
    ]
    for data, error, rid in cases:
        status, body = yield post(server, data)
        assert status == 200, data
        assert json.loads(body) == {"jsonrpc": "2.0", "error": error, "id": rid}, data
        yield still_serving(server)


@pytest_twisted.inlineCallbacks
def test_http_status_rules(server):
    status, body = yield curl(server.url)  # GET
    assert (status, body) == (405, b"")
    status, body = yield curl("-X", "POST", server.url, "--data-binary", "")
    assert (status, body) == (400, b"")
    status, body = yield post(server, '{"jsonrpc":"2.0","method":"uptime"}')
    assert (status, body) == (202, b"")
    status, _ = yield curl("-X", "POST", server.url.replace("/mi", "/other"), "-d", "{}")
    assert status == 404
    status, _ = yield curl(server.url.replace("/mi", "/"))
    assert status == 404
    yield still_serving(server)


@pytest_twisted.inlineCallbacks
def test_huge_bodies_get_413_and_the_server_keeps_serving(server, tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b'{"jsonrpc":"2.0","method":"version","params":["' + b"a" * 200_000 + b'"]}')
    status, body = yield curl("-X", "POST", server.url, "--data-binary", f"@{big}")
    assert (status, body) == (413, b"")
    status, body = yield curl("-X", "POST", server.url, "-H", "Transfer-Encoding: chunked",
                              "--data-binary", f"@{big}")
    assert (status, body) == (413, b"")
    yield still_serving(server)


@pytest_twisted.inlineCallbacks
def test_batch_over_http(server):
    status, body = yield post(server, json.dumps([
        {"jsonrpc": "2.0", "method": "version", "id": 1},
        {"jsonrpc": "2.0", "method": "uptime"},
        {"jsonrpc": "2.0", "method": "nope", "id": 2}]))
    answers = json.loads(body)
    assert status == 200 and [a["id"] for a in answers] == [1, 2]


@pytest_twisted.inlineCallbacks
def test_auth_required_when_configured():
    s = Server(auth=MIAuth(token="t0ken"))
    try:
        status, body = yield post(s, '{"jsonrpc":"2.0","method":"msrp_gw_end_session",'
                                     f'"params":["{KEY}"],"id":1}}')
        assert (status, body) == (401, b"")
        assert KEY in s.gw.sessions  # nothing ran
        status, body = yield post(s, '{"jsonrpc":"2.0","method":"msrp_gw_end_session",'
                                     f'"params":["{KEY}"],"id":1}}',
                                  "-H", "Authorization: Bearer t0ken")
        assert (status, json.loads(body)["result"]) == (200, "OK")
    finally:
        yield s.close()


@pytest_twisted.inlineCallbacks
def test_connections_beyond_the_limit_are_closed_and_service_resumes():
    s = Server(max_connections=2)
    site = s.port.factory
    held = []
    try:
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", s.port.getHost().port))
            held.append(c)
        yield wait_until(lambda: site.open_connections == 2, "the server accepted both")
        extra = socket.create_connection(("127.0.0.1", s.port.getHost().port))
        extra.settimeout(0)
        received: list[bytes] = []

        def extra_closed() -> bool:
            try:
                received.append(extra.recv(1))
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True
            return True

        try:
            yield wait_until(extra_closed, "the server closed the connection beyond the limit")
        finally:
            extra.close()
        assert received in ([], [b""])  # closed (EOF or reset), never served
        for c in held:
            c.close()
        yield wait_until(lambda: site.open_connections == 0, "the server saw both closes")
        yield still_serving(s)
    finally:
        for c in held:
            c.close()
        yield s.close()


# --- events over real sockets ---------------------------------------------------------

class Collector(protocol.Protocol):
    def connectionMade(self):
        self.factory.connections += 1

    def dataReceived(self, data):
        self.factory.data += data
        if self.factory.waiter and self.factory.data.count(b"}}") >= self.factory.want:
            d, self.factory.waiter = self.factory.waiter, None
            d.callback(self.factory.data)


class CollectorFactory(protocol.Factory):
    protocol = Collector

    def __init__(self, want):
        self.data, self.connections, self.want = b"", 0, want
        self.waiter = defer.Deferred()


@pytest_twisted.inlineCallbacks
def test_event_reaches_udp_and_tcp_subscribers_subscribed_over_http(server):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    factory = CollectorFactory(want=2)
    tcp_port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        for sock in (f"udp:127.0.0.1:{udp.getsockname()[1]}",
                     f"tcp:127.0.0.1:{tcp_port.getHost().port}/on_fail"):
            _, body = yield post(server, json.dumps({"jsonrpc": "2.0", "method": "event_subscribe",
                                                    "params": [EVENT_SETUP_FAILED, sock], "id": 1}))
            assert json.loads(body)["result"] == "OK"
        params = {"key": KEY, "from_uri": "sip:bob@b.example", "to_uri": "sip:alice@a.example",
                  "ruri": "sip:alice@a.example", "code": None, "reason": None}
        assert server.events.raise_event(EVENT_SETUP_FAILED, params) == 2
        assert server.events.raise_event(EVENT_SETUP_FAILED, dict(params, code=480,
                                                                  reason="Unavailable")) == 2
        data = yield factory.waiter.addTimeout(WAIT, reactor)
        datagrams: list[bytes] = []
        yield wait_until(lambda: drain_udp(udp, datagrams) or len(datagrams) >= 2,
                         "both events reached the UDP subscriber")
        assert [json.loads(d) for d in datagrams] == [
            {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED, "params": params},
            {"jsonrpc": "2.0", "method": EVENT_SETUP_FAILED,
             "params": dict(params, code=480, reason="Unavailable")}]
        assert data == (b'{"jsonrpc":"2.0","method":"on_fail","params":' +
                        json.dumps(params, separators=(",", ":")).encode() + b'}'
                        b'{"jsonrpc":"2.0","method":"on_fail","params":' +
                        json.dumps(dict(params, code=480, reason="Unavailable"),
                                   separators=(",", ":")).encode() + b'}')
        assert factory.connections == 1  # back to back on one kept-open connection
    finally:
        udp.close()
        yield server.events.stop()
        yield tcp_port.stopListening()


@pytest_twisted.inlineCallbacks
def test_dead_tcp_subscriber_does_not_block_udp_delivery(server):
    dead_port = free_port()  # below the ephemeral range, checked free: connection refused
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0)
    try:
        server.events.subscribe(EVENT_SETUP_FAILED, f"tcp:127.0.0.1:{dead_port}")
        server.events.subscribe(EVENT_SETUP_FAILED, f"udp:127.0.0.1:{udp.getsockname()[1]}")
        for i in range(50):
            server.events.raise_event(EVENT_SETUP_FAILED, {"n": i})
        got: list[int] = []
        yield wait_until(
            lambda: drain_udp(udp, got, lambda d: json.loads(d)["params"]["n"]) or len(got) >= 50,
            "all 50 events reached the UDP subscriber")
        assert got == list(range(50))
        yield still_serving(server)
    finally:
        udp.close()
