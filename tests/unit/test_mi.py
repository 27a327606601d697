"""mi.py + mi_commands.py: command table, JSON-RPC wire rules, every error, no sockets."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, LogPublisher
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from msrp_gateway.events import EVENT_SETUP_FAILED, EventBus
from msrp_gateway.mi import CommandTable, MIAuth, MIError, MIResource, ParamsError
from msrp_gateway.mi_commands import LogLevelControl, _gateway_errors, build_table

SessionNotFound, EndSessionFailed = _gateway_errors()


class FakeGateway:
    """The registry API of docs/internals.md: list_sessions / end_session."""

    def __init__(self) -> None:
        self.sessions = {
            "sip:alice@a.example-sip:bob@b.example": {
                "key": "sip:alice@a.example-sip:bob@b.example",
                "msg_side_to": "sip:bob@b.example", "msg_side_ruri": "sip:bob@b.example",
                "msrp_ua_session_id": None, "state": "setup", "queued": 2},
        }
        self.broken: set[str] = set()
        self.ended: list[str] = []

    def list_sessions(self) -> list[dict]:
        return [dict(s) for s in self.sessions.values()]

    def end_session(self, key: str) -> None:
        if key in self.broken:
            raise EndSessionFailed(key)
        if key not in self.sessions:
            raise SessionNotFound(key)
        del self.sessions[key]
        self.ended.append(key)


@dataclass
class Info:
    session_id: str
    b2b_key: str
    type: str
    dlg_state: int
    peer_path: list
    lifetime: int


class FakeUA:
    def __init__(self) -> None:
        self.live = {"abc123": Info("abc123", "B2B.1", "UAC", 2,
                                    ["msrp://127.0.0.1:3000/xyz;tcp"], 3600)}

    def sessions(self) -> list[Info]:
        return list(self.live.values())

    def end(self, session_id: str) -> bool:
        if session_id == "explode":
            raise RuntimeError("dialog gone")
        return self.live.pop(session_id, None) is not None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def parts(clock):
    reactor = MemoryReactorClock()
    bus = EventBus(reactor, clock=clock)
    gw, ua = FakeGateway(), FakeUA()
    logc = LogLevelControl()
    table = build_table(clock=clock, gateway=gw, ua=ua, events=bus, log_control=logc,
                        wall_time=lambda: 1_700_000_000.0 + clock.seconds())
    return MIResource(table, clock=clock), gw, ua, bus, logc


def call(resource: MIResource, body) -> object:
    """Answer ``body`` (bytes or a JSON value) synchronously; None means 202."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    out = []
    resource.handle_body(body).addBoth(out.append)
    assert out, "command did not answer synchronously"
    return out[0] if out[0] is None else json.loads(out[0])


def rpc(method, params=None, rid=1):
    req = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        req["params"] = params
    return req


# --- wire rules ----------------------------------------------------------------

def test_answer_members_are_jsonrpc_result_id_in_that_order(parts):
    resource = parts[0]
    raw = []
    resource.handle_body(json.dumps(rpc("version")).encode()).addCallback(raw.append)
    assert list(json.loads(raw[0])) == ["jsonrpc", "result", "id"]
    raw.clear()
    resource.handle_body(json.dumps(rpc("nope")).encode()).addCallback(raw.append)
    assert list(json.loads(raw[0])) == ["jsonrpc", "error", "id"]
    assert list(json.loads(raw[0])["error"]) == ["code", "message"]


@pytest.mark.parametrize("rid", [1, "1", "abc", 0, -5, 2.5, None, 10**15])
def test_id_is_echoed_with_its_json_type(parts, rid):
    answer = call(parts[0], rpc("uptime", rid=rid))
    assert answer["id"] == rid and type(answer["id"]) is type(rid)


def test_notification_that_succeeds_gets_no_body(parts):
    assert call(parts[0], {"jsonrpc": "2.0", "method": "uptime"}) is None


def test_notification_that_fails_is_answered_with_null_id(parts):
    answer = call(parts[0], {"jsonrpc": "2.0", "method": "nope"})
    assert answer == {"jsonrpc": "2.0", "error": {"code": -32601,
                      "message": "Method not found"}, "id": None}


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"a":1,}', b"\xff\xfe",
                                  b"[" * 100000, b'{"x": NaN}', b"1" * 5000])
def test_malformed_json_is_parse_error_with_null_id(parts, body):
    assert call(parts[0], body) == {"jsonrpc": "2.0", "error": {
        "code": -32700, "message": "Parse error"}, "id": None}


@pytest.mark.parametrize("req, rid", [
    (1, None), ("x", None), (None, None),
    ({"method": "uptime", "id": 1}, 1),                      # no jsonrpc
    ({"jsonrpc": "1.0", "method": "uptime", "id": 1}, 1),
    ({"jsonrpc": "2.0", "id": 1}, 1),                        # no method
    ({"jsonrpc": "2.0", "method": 5, "id": 1}, 1),
    ({"jsonrpc": "2.0", "method": "uptime", "params": "x", "id": 2}, 2),
    ({"jsonrpc": "2.0", "method": "uptime", "params": 3, "id": 2}, 2),
    ({"jsonrpc": "2.0", "method": "uptime", "id": {"a": 1}}, None),
    ({"jsonrpc": "2.0", "method": "uptime", "id": [1]}, None),
    ({"jsonrpc": "2.0", "method": "uptime", "id": True}, None),
    ({"jsonrpc": "2.0", "method": "m" * 200, "id": 3}, 3),
])
def test_invalid_request_objects(parts, req, rid):
    assert call(parts[0], req) == {"jsonrpc": "2.0", "error": {
        "code": -32600, "message": "Invalid Request"}, "id": rid}


def test_unknown_method(parts):
    assert call(parts[0], rpc("msrp_gw_nothing", rid="q")) == {
        "jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "q"}


@pytest.mark.parametrize("params, data", [
    ([], "Too few or too many parameters"),
    (["a", "b"], "Too few or too many parameters"),
    ({}, "Named parameters do not match"),
    ({"keys": "a"}, "Named parameters do not match"),
    ({"key": "a", "x": 1}, "Named parameters do not match"),
    ([["a"]], "Bad type for parameter 'key'"),
    ({"key": {"a": 1}}, "Bad type for parameter 'key'"),
    ({"key": None}, "Bad type for parameter 'key'"),
    ({"key": True}, "Bad type for parameter 'key'"),
    (list(range(40)), "Too few or too many parameters"),
])
def test_invalid_params_name_the_problem(parts, params, data):
    assert call(parts[0], rpc("msrp_gw_end_session", params)) == {
        "jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params",
                                    "data": data}, "id": 1}


def test_absent_and_empty_params_mean_none(parts):
    for params in (None, [], {}):
        assert call(parts[0], rpc("version", params))["result"]["Server"].startswith("msrpgw")


def test_batch_is_answered_in_order_without_notifications(parts):
    answer = call(parts[0], [rpc("version", rid=1), {"jsonrpc": "2.0", "method": "uptime"},
                             rpc("nope", rid=2), 5])
    assert [a.get("id") for a in answer] == [1, 2, None]
    assert "result" in answer[0]
    assert answer[1]["error"]["code"] == -32601
    assert answer[2]["error"]["code"] == -32600


def test_batch_of_only_notifications_gets_no_body(parts):
    assert call(parts[0], [{"jsonrpc": "2.0", "method": "uptime"}] * 3) is None


def test_empty_batch_and_oversized_batch_are_invalid_requests(parts):
    assert call(parts[0], [])["error"] == {"code": -32600, "message": "Invalid Request"}
    err = call(parts[0], [rpc("version")] * 33)["error"]
    assert err["code"] == -32600 and "33" not in err["data"] and "32" in err["data"]


def test_command_crash_is_internal_error_without_python_details(clock):
    table = CommandTable()
    table.add("boom", lambda: {}["x"])
    answer = call(MIResource(table), rpc("boom"))
    assert answer["error"] == {"code": -32603, "message": "Internal error"}


def test_result_that_is_not_json_is_internal_error(clock):
    table = CommandTable()
    table.add("bad", lambda: object())
    assert call(MIResource(table), rpc("bad"))["error"]["code"] == -32603


def test_none_result_is_rendered_as_null_not_an_empty_body(clock):
    table = CommandTable()
    table.add("nothing", lambda: None)
    assert call(MIResource(table), rpc("nothing")) == {"jsonrpc": "2.0", "result": None,
                                                       "id": 1}


def test_slow_command_times_out_on_the_clock(clock):
    table = CommandTable()
    table.add("slow", lambda: defer.Deferred())
    out = []
    MIResource(table, clock=clock, command_timeout=5).handle_body(
        json.dumps(rpc("slow")).encode()).addCallback(out.append)
    assert out == []
    clock.advance(5)
    assert json.loads(out[0])["error"] == {"code": 500, "message": "Command timed out"}


def test_table_refuses_duplicate_names():
    table = CommandTable()
    table.add("a", lambda: 1, aliases=["m:a"])
    with pytest.raises(ValueError):
        table.add("m:a", lambda: 2)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(
                        st.sampled_from(["jsonrpc", "method", "params", "id", "key"]), c,
                        max_size=5), max_leaves=20))
def test_any_json_gets_a_jsonrpc_answer_or_202(value):
    resource = MIResource(build_table(clock=Clock(), gateway=FakeGateway()))
    answer = call(resource, value)
    assert answer is None or isinstance(answer, (dict, list))
    for a in answer if isinstance(answer, list) else [answer] if answer else []:
        assert a["jsonrpc"] == "2.0" and ("result" in a) != ("error" in a)


# --- gateway commands -----------------------------------------------------------

def test_list_sessions_puts_opensips_members_first_as_strings(parts):
    [entry] = call(parts[0], rpc("msrp_gw_list_sessions"))["result"]
    assert list(entry)[:4] == ["key", "msg_side_to", "msg_side_ruri", "msrp_ua_session_id"]
    assert entry["msrp_ua_session_id"] == ""
    assert entry["state"] == "setup" and entry["queued"] == 2


def test_list_sessions_empty_is_an_empty_array(parts):
    parts[1].sessions.clear()
    assert call(parts[0], rpc("msrp_gateway:list_sessions"))["result"] == []


def test_end_session_ok_then_404_then_500(parts):
    resource, gw = parts[0], parts[1]
    key = "sip:alice@a.example-sip:bob@b.example"
    assert call(resource, rpc("msrp_gw_end_session", {"key": key}))["result"] == "OK"
    assert gw.ended == [key]
    assert call(resource, rpc("msrp_gateway:end_session", [key])) == {
        "jsonrpc": "2.0", "error": {"code": 404, "message": "Session doesn't exist"}, "id": 1}
    gw.sessions["k2"] = {"key": "k2"}
    gw.broken.add("k2")
    assert call(resource, rpc("msrp_gw_end_session", ["k2"]))["error"] == {
        "code": 500, "message": "Unable to end session"}


def test_numeric_key_is_accepted_as_a_string_like_opensips(parts):
    parts[1].sessions["42"] = {"key": "42"}
    assert call(parts[0], rpc("msrp_gw_end_session", [42]))["result"] == "OK"


# --- UA commands ------------------------------------------------------------------

def test_ua_list_sessions_has_msrp_ua_members(parts):
    [entry] = call(parts[0], rpc("msrp_ua_list_sessions"))["result"]
    assert entry == {"session_id": "abc123", "b2b_key": "B2B.1", "type": "UAC",
                     "handler": "msrp_gateway", "dlg_state": 2,
                     "peer_path": "msrp://127.0.0.1:3000/xyz;tcp", "lifetime": 3600}


def test_ua_list_sessions_maps_the_real_ua_listing(clock):
    from msrp_gateway.ua import UASessionInfo

    info = UASessionInfo(
        session_id="s1", role="uas", state="established", from_uri="sip:a@x",
        to_uri="sip:b@y", ruri="sip:b@y", call_id="call-1",
        local_path=["msrp://127.0.0.1:2855/s1;tcp"],
        remote_path=["msrp://10.0.0.1:2855/p;tcp", "msrp://10.0.0.2:2855/q;tcp"],
        created=100.0, established=101.0, queued=0)

    class UA:
        def sessions(self):
            return [info]

    clock.advance(160)
    table = build_table(clock=clock, ua=UA(), ua_max_duration=3600)
    [entry] = call(MIResource(table), rpc("msrp_ua_list_sessions"))["result"]
    assert list(entry)[:7] == ["session_id", "b2b_key", "type", "handler", "dlg_state",
                               "peer_path", "lifetime"]
    assert entry["session_id"] == "s1" and entry["b2b_key"] == "call-1"
    assert entry["type"] == "UAS" and entry["dlg_state"] == 2
    assert entry["peer_path"] == "msrp://10.0.0.1:2855/p;tcp msrp://10.0.0.2:2855/q;tcp"
    assert entry["lifetime"] == 3540
    assert entry["from_uri"] == "sip:a@x" and entry["state"] == "established"


def test_ua_end_session_ok_unknown_and_failure(parts):
    resource = parts[0]
    assert call(resource, rpc("msrp_ua:end_session", {"session_id": "abc123"}))["result"] == "OK"
    assert call(resource, rpc("msrp_ua_end_session", ["abc123"]))["error"] == {
        "code": 404, "message": "Unknown session"}
    assert call(resource, rpc("msrp_ua_end_session", ["explode"]))["error"] == {
        "code": 500, "message": "Unable to end session"}


# --- core commands ----------------------------------------------------------------

def test_which_lists_every_command_and_alias(parts):
    names = call(parts[0], rpc("which"))["result"]
    for n in ["msrp_gw_list_sessions", "msrp_gw_end_session", "msrp_gateway:list_sessions",
              "msrp_gateway:end_session", "msrp_ua_list_sessions", "msrp_ua_end_session",
              "msrp_ua:list_sessions", "msrp_ua:end_session", "which", "uptime", "version",
              "log_level", "event_subscribe", "events_list", "subscribers_list"]:
        assert n in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("command, recipes", [
    ("msrp_gw_end_session", [["key"]]),
    ("msrp_gateway:end_session", [["key"]]),
    ("msrp_gw_list_sessions", [[]]),
    ("which", [[], ["command"]]),
    ("event_subscribe", [["event", "socket"], ["event", "socket", "expire"]]),
    ("log_level", [[], ["level"]]),
])
def test_which_command_gives_parameter_sets(parts, command, recipes):
    assert call(parts[0], rpc("which", {"command": command}))["result"] == recipes
    assert call(parts[0], rpc("which", [command]))["result"] == recipes


def test_which_unknown_command_is_404(parts):
    assert call(parts[0], rpc("which", {"command": "nope"}))["error"] == {
        "code": 404, "message": "unknown MI command"}


def test_uptime_counts_seconds_on_the_clock(parts, clock):
    clock.advance(125)
    result = call(parts[0], rpc("uptime"))["result"]
    assert list(result) == ["Now", "Up since", "Up time"]
    assert result["Up time"] == "125 [sec]"
    assert result["Now"] != result["Up since"]


def test_log_level_get_and_set_changes_the_filter(parts):
    resource, logc = parts[0], parts[4]
    [proc] = call(resource, rpc("log_level"))["result"]["Processes"]
    assert proc["Log level"] == 3 and isinstance(proc["PID"], int)
    assert call(resource, rpc("log_level", [4]))["result"] == {"New global log level": 4}
    assert logc.predicate.logLevelForNamespace("msrp_gateway.x") == LogLevel.debug
    assert call(resource, rpc("log_level", {"level": "-1"}))["result"] == {
        "New global log level": -1}
    assert call(resource, rpc("log_level"))["result"]["Processes"][0]["Log level"] == -1
    assert call(resource, rpc("log_level", [9]))["error"]["code"] == -32602
    assert call(resource, rpc("log_level", ["loud"]))["error"]["data"] == \
        "Bad type for parameter 'level'"


def test_log_level_control_filters_installed_observers():
    seen = []
    publisher = LogPublisher(lambda e: seen.append(e["log_level"]))
    control = LogLevelControl()
    control.install(publisher)
    publisher({"log_level": LogLevel.debug, "log_namespace": "x", "log_format": ""})
    publisher({"log_level": LogLevel.info, "log_namespace": "x", "log_format": ""})
    control.set_level(4)
    publisher({"log_level": LogLevel.debug, "log_namespace": "x", "log_format": ""})
    control.uninstall()
    control.set_level(-1)
    publisher({"log_level": LogLevel.debug, "log_namespace": "x", "log_format": ""})
    assert seen == [LogLevel.info, LogLevel.debug, LogLevel.debug]


# --- event commands ---------------------------------------------------------------

def test_event_subscribe_list_and_unsubscribe(parts, clock):
    resource = parts[0]
    sock = "udp:127.0.0.1:9000"
    assert call(resource, rpc("event_subscribe", [EVENT_SETUP_FAILED, sock]))["result"] == "OK"
    assert call(resource, rpc("event_subscribe", {"event": EVENT_SETUP_FAILED,
                                                  "socket": "tcp:127.0.0.1:9001",
                                                  "expire": "60"}))["result"] == "OK"
    clock.advance(10)
    assert call(resource, rpc("subscribers_list"))["result"] == {"Events": [
        {"name": EVENT_SETUP_FAILED, "id": 0, "Subscribers": [
            {"socket": sock, "expire": 3600, "ttl": 3590},
            {"socket": "tcp:127.0.0.1:9001", "expire": 60, "ttl": 50}]}]}
    assert call(resource, rpc("subscribers_list", [EVENT_SETUP_FAILED, sock]))["result"] == {
        "Event": {"name": EVENT_SETUP_FAILED, "id": 0,
                  "Subscriber": {"socket": sock, "expire": 3600, "ttl": 3590}}}
    assert call(resource, rpc("event_subscribe", [EVENT_SETUP_FAILED, sock, 0]))["result"] == "OK"
    clock.advance(50)
    assert call(resource, rpc("subscribers_list"))["result"] == {"Events": []}
    assert call(resource, rpc("subscribers_list", [EVENT_SETUP_FAILED]))["result"] == {
        "Event": {"name": EVENT_SETUP_FAILED, "id": 0, "Subscribers": []}}


@pytest.mark.parametrize("params", [
    ["E_NOPE", "udp:127.0.0.1:9000"],
    [EVENT_SETUP_FAILED, "udp:nowhere"],
    [EVENT_SETUP_FAILED, "http://x"],
])
def test_event_subscribe_bad_event_or_socket_is_400(parts, params):
    assert call(parts[0], rpc("event_subscribe", params))["error"] == {
        "code": 400, "message": "Bad parameter value"}


def test_event_subscribe_negative_expire_is_invalid_params(parts):
    assert call(parts[0], rpc("event_subscribe", [EVENT_SETUP_FAILED, "udp:127.0.0.1:1",
                                                  -1]))["error"] == {
        "code": -32602, "message": "Invalid params", "data": "Negative expire value"}


def test_events_list_and_unknown_event_lookups(parts):
    assert call(parts[0], rpc("events_list"))["result"] == {
        "Events": [{"name": EVENT_SETUP_FAILED, "id": 0}]}
    assert call(parts[0], rpc("subscribers_list", ["E_NOPE"]))["error"] == {
        "code": 404, "message": "Event not published"}
    assert call(parts[0], rpc("subscribers_list", [EVENT_SETUP_FAILED,
                                                   "udp:127.0.0.1:1"]))["error"] == {
        "code": 404, "message": "Subscriber does not exist"}


def test_raise_event_needs_a_subscriber(parts):
    assert call(parts[0], rpc("raise_event", [EVENT_SETUP_FAILED]))["error"] == {
        "code": 480, "message": "Temporarily Unavailable"}
    assert call(parts[0], rpc("raise_event", ["E_NOPE"]))["error"] == {
        "code": 404, "message": "Event not registered"}


def test_commands_of_absent_parts_are_not_listed(clock):
    names = build_table(clock=clock).names()
    assert "msrp_gw_list_sessions" not in names and "event_subscribe" not in names
    assert {"which", "uptime", "version", "log_level"} <= set(names)


# --- HTTP (DummyRequest, no sockets) -----------------------------------------------

def render(resource: MIResource, body: bytes = b"", method: bytes = b"POST",
           headers: dict | None = None) -> DummyRequest:
    request = DummyRequest([b""])
    request.method = method
    request.content = io.BytesIO(body)
    for k, v in (headers or {}).items():
        request.requestHeaders.addRawHeader(k, v)
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"DELETE", b"HEAD"])
def test_http_other_methods_get_405_and_no_body(parts, method):
    request = render(parts[0], b'{"jsonrpc":"2.0","method":"which","id":1}', method)
    assert request.responseCode == 405 and b"".join(request.written) == b""


def test_http_empty_body_is_400(parts):
    request = render(parts[0], b"  \r\n")
    assert request.responseCode == 400 and b"".join(request.written) == b""


def test_http_json_answer_is_200_application_json(parts):
    request = render(parts[0], json.dumps(rpc("nope")).encode())
    assert request.responseCode == 200
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    assert json.loads(b"".join(request.written))["error"]["code"] == -32601


def test_http_notification_is_202_without_body(parts):
    request = render(parts[0], b'{"jsonrpc":"2.0","method":"uptime"}')
    assert request.responseCode == 202 and b"".join(request.written) == b""


def test_http_body_over_limit_is_413_and_not_parsed(clock):
    ran = []
    table = CommandTable()
    table.add("x", lambda: ran.append(1))
    request = render(MIResource(table, max_body=100),
                     json.dumps(rpc("x", ["a" * 200])).encode())
    assert request.responseCode == 413 and ran == []


@pytest.mark.parametrize("header, code", [
    (None, 401), (b"Bearer wrong", 401), (b"Bearer s3cret", 200),
    (b"Basic " + base64.b64encode(b"admin:pw"), 200),
    (b"Basic " + base64.b64encode(b"admin:no"), 401), (b"Basic !!!", 401),
    (b"Digest x", 401),
])
def test_http_auth_when_configured(header, code):
    ran = []
    table = CommandTable()
    table.add("x", lambda: ran.append(1) or "OK")
    resource = MIResource(table, auth=MIAuth(token="s3cret", username="admin", password="pw"))
    request = render(resource, json.dumps(rpc("x")).encode(),
                     headers={b"authorization": header} if header else None)
    assert request.responseCode == code
    assert ran == ([1] if code == 200 else [])
    if code == 401:
        assert b"".join(request.written) == b""
        assert request.responseHeaders.getRawHeaders(b"www-authenticate") == [
            b'Bearer realm="msrpgw"', b'Basic realm="msrpgw"']


def test_mierror_and_paramserror_carry_their_fields():
    assert (MIError(404, "x").code, MIError(404, "x").message) == (404, "x")
    assert ParamsError("d").data == "d"


def test_end_session_maps_the_real_gateway_exceptions():
    from msrp_gateway import gateway

    assert (SessionNotFound, EndSessionFailed) == (gateway.SessionNotFound,
                                                   gateway.EndSessionFailed)


def test_raise_event_over_mi_delivers_object_or_json_text(parts):
    resource, bus = parts[0], parts[3]
    raised = []
    bus.observers.append(lambda name, params: raised.append((name, params)))
    bus.subscribe(EVENT_SETUP_FAILED, "udp:127.0.0.1:9000")
    assert call(resource, rpc("raise_event", [EVENT_SETUP_FAILED, {"key": "k"}]))["result"] == "OK"
    assert call(resource, rpc("raise_event", {"event": EVENT_SETUP_FAILED,
                                              "params": '{"key": "j"}'}))["result"] == "OK"
    assert call(resource, rpc("raise_event", [EVENT_SETUP_FAILED, "{bad"]))["error"] == {
        "code": 400, "message": "Bad Params"}
    assert raised == [(EVENT_SETUP_FAILED, {"key": "k"}), (EVENT_SETUP_FAILED, {"key": "j"})]
