"""Routing: the request view, script loading, the default route and event route."""

from __future__ import annotations

import ipaddress
import os
from importlib import resources

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher

from msrp_gateway.gateway import SETUP_FAILED_EVENT, Gateway, GatewaySettings
from msrp_gateway.routing import RequestView, Router, RoutingScriptError, load_script
from msrp_gateway.sip.message import Headers, SIPRequest
from msrp_gateway.testing import FakePeer, FakeServerTransaction, FakeSIPSender, FakeUA

ALICE = "sip:alice@example.net"
BOB = "sip:bob@example.com"
ETC_SCRIPT = str(resources.files("msrp_gateway").joinpath("etc/routing.py"))


def txn(method: str = "MESSAGE", *, ruri: str = BOB,
        frm: str = '"Alice" <sip:Alice@Example.NET:5070;transport=udp>;tag=a1',
        to: str = "<sip:bob@EXAMPLE.com>", body: bytes = b"hello",
        ctype: str | None = "text/plain", source: str = "127.0.0.1",
        cseq: int = 1) -> FakeServerTransaction:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP {source}:5070;branch=z9hG4bK{cseq}{method}")
    h.add("From", frm)
    h.add("To", to)
    h.add("Call-ID", f"c{cseq}")
    h.add("CSeq", f"{cseq} {method}")
    h.add("Max-Forwards", "70")
    if ctype:
        h.add("Content-Type", ctype)
    return FakeServerTransaction(SIPRequest(method, ruri, h, body), FakePeer("udp", source, 5070))


def final(t: FakeServerTransaction) -> int | None:
    codes = [c for c, _, _ in t.responses if c >= 200]
    assert len(codes) <= 1
    return codes[0] if codes else None


class World:
    def __init__(self, *, script: str = "", failure_message: bool = True) -> None:
        self.clock = task.Clock()
        self.ua = FakeUA()
        self.sip = FakeSIPSender()
        self.gw = Gateway(self.clock, self.ua, self.sip,
                          GatewaySettings(failure_message=failure_message))
        self.router = Router(self.gw, script=script)
        self.gw.emit_event = self.router.on_event


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def write(tmp_path, text: str) -> str:
    p = tmp_path / "route.py"
    p.write_text(text)
    return str(p)


# -- the request view -------------------------------------------------------------------------


def test_request_view_exposes_what_the_script_contract_names() -> None:
    t = txn(body=b"hi there", ctype="text/plain; charset=utf-8")
    req = RequestView(t, [ipaddress.ip_network("127.0.0.0/8")])
    assert (req.method, req.ruri) == ("MESSAGE", BOB)
    assert req.from_uri == "sip:Alice@Example.NET:5070;transport=udp"
    assert req.to_uri == "sip:bob@EXAMPLE.com"
    assert (req.from_tag, req.to_tag, req.is_initial) == ("a1", None, True)
    assert req.from_aor == "sip:Alice@example.net"  # user kept, host lower-cased, no port
    assert req.to_aor == "sip:bob@example.com"
    assert (req.source_ip, req.source_port, req.transport) == ("127.0.0.1", 5070, "udp")
    assert req.trusted
    assert req.header("call-id") == "c1" and req.call_id == "c1"
    assert (req.body, req.content_type) == (b"hi there", "text/plain; charset=utf-8")
    assert not req.responded
    req.reply(202, "Accepted")
    assert req.responded and final(t) == 202


def test_ack_is_never_answered() -> None:
    t = txn("ACK", ctype=None, body=b"")
    RequestView(t, []).reply(500)
    assert t.responses == []


# -- the default route (built in, and etc/routing.py written out) -----------------------------


@pytest.fixture(params=["", ETC_SCRIPT], ids=["built-in", "etc/routing.py"])
def world(request) -> World:
    return World(script=request.param)


def test_default_route_message_uses_to_from_key(world: World) -> None:
    t = txn()
    world.router(t)
    assert final(t) == 202
    [s] = world.gw.list_sessions()
    assert s["key"] == "sip:bob@example.com-sip:Alice@example.net"
    assert world.ua.last().role == "uac"


def test_default_route_invite_uses_from_to_key_so_replies_share_it(world: World) -> None:
    invite = txn("INVITE", frm="<sip:bob@example.com>;tag=b1", to="<sip:Alice@example.net>",
                 ruri="sip:Alice@example.net", ctype="application/sdp", body=b"v=0\r\n")
    world.router(invite)
    assert final(invite) == 200
    [s] = world.gw.list_sessions()
    assert s["key"] == "sip:bob@example.com-sip:Alice@example.net"
    world.ua.establish(world.ua.last().session_id)
    reply = txn(frm="<sip:Alice@example.net:5090>;tag=z", to="<sip:bob@example.com>", cseq=2)
    world.router(reply)
    assert final(reply) == 202
    assert len(world.ua.by_id) == 1 and world.ua.sent[0][2] == b"hello"


@pytest.mark.parametrize("method", ["OPTIONS", "SUBSCRIBE", "REGISTER"])
def test_default_route_refuses_other_methods_with_405(world: World, method: str) -> None:
    t = txn(method, ctype=None, body=b"")
    world.router(t)
    assert final(t) == 405
    assert "MESSAGE" in dict(t.responses[0][2]["headers"])["Allow"]


def test_default_route_refuses_in_dialog_invite(world: World) -> None:
    t = txn("INVITE", to="<sip:bob@example.com>;tag=x", ctype="application/sdp", body=b"v=0")
    world.router(t)
    assert final(t) == 405 and world.ua.by_id == {}


def test_default_route_refuses_untrusted_sources(world: World) -> None:
    t = txn(source="192.0.2.7")
    world.router(t)
    assert final(t) == 403 and world.gw.list_sessions() == []


def test_malformed_to_header_gets_400_not_a_crash(world: World) -> None:
    t = txn(to="<sip:bob@example.com")  # unterminated <uri>
    world.router(t)
    assert final(t) == 400 and world.gw.list_sessions() == []


def test_default_route_ignores_stray_ack(world: World) -> None:
    t = txn("ACK", ctype=None, body=b"")
    world.router(t)
    assert t.responses == []


def test_default_on_event_pages_the_sender_on_setup_failure(world: World) -> None:
    world.router(txn())
    world.ua.fail(world.ua.last().session_id, 486, "Busy Here")
    [(out, _)] = world.sip.sent
    assert out.method == "MESSAGE"
    assert (out.from_uri, out.to_uri, out.ruri) == (
        "sip:bob@EXAMPLE.com", "sip:Alice@Example.NET:5070;transport=udp",
        "sip:Alice@Example.NET:5070;transport=udp")
    assert out.content_type == "text/plain"
    assert b"could not be delivered" in out.body and b"486 Busy Here" in out.body


def test_failure_message_can_be_switched_off() -> None:
    for script in ("", ETC_SCRIPT):
        w = World(script=script, failure_message=False)
        w.router(txn())
        w.ua.fail(w.ua.last().session_id, None, None)
        assert w.sip.sent == []


# -- scripts ----------------------------------------------------------------------------------


def test_script_route_and_on_event_are_called(tmp_path) -> None:
    path = write(tmp_path, (
        "seen = []\n"
        "def route(req, gw):\n"
        "    gw.msg_to_msrp(req, 'k-' + req.from_aor, 'text/*')\n"
        "def on_event(name, params, gw):\n"
        "    seen.append((name, params['key']))\n"
        "    gw.send_message(params['from_uri'], params['ruri'], params['ruri'], b'custom')\n"
    ))
    w = World(script=path)
    t = txn(ctype="text/html")
    w.router(t)
    assert final(t) == 202
    w.ua.fail(w.ua.last().session_id, 603, "Decline")
    assert [o.body for o, _ in w.sip.sent] == [b"custom"]


def test_script_without_on_event_sends_no_failure_message(tmp_path) -> None:
    path = write(tmp_path, "def route(req, gw):\n    gw.msg_to_msrp(req, 'k', 'text/plain')\n")
    w = World(script=path)
    w.router(txn())
    w.ua.fail(w.ua.last().session_id, 486, "Busy Here")
    assert w.sip.sent == []


def test_route_that_answers_nothing_gets_500_sent_for_it(tmp_path, logged) -> None:
    w = World(script=write(tmp_path, "def route(req, gw):\n    pass\n"))
    t = txn()
    w.router(t)
    assert final(t) == 500
    assert any("unanswered" in str(e.get("log_format", "")) for e in logged)


def test_route_that_raises_gets_500_and_the_line_is_logged(tmp_path, logged) -> None:
    path = write(tmp_path, "def route(req, gw):\n    x = 1\n    raise KeyError('boom')\n")
    w = World(script=path)
    t = txn()
    w.router(t)
    assert final(t) == 500
    assert any(e.get("path") == path and e.get("line") == 3 for e in logged)


def test_route_may_answer_later_through_a_deferred(tmp_path) -> None:
    path = write(tmp_path, (
        "from twisted.internet import task\n"
        "def route(req, gw):\n"
        "    return task.deferLater(gw.reactor, 2, req.reply, 480, 'Later')\n"
    ))
    w = World(script=path)
    t = txn()
    w.router(t)
    assert t.responses == []  # no premature 500 while the script is still working
    w.clock.advance(2)
    assert final(t) == 480


def test_untrusted_sources_reach_a_custom_script_which_may_check(tmp_path) -> None:
    path = write(tmp_path, (
        "def route(req, gw):\n"
        "    req.reply(200 if req.trusted else 403)\n"
    ))
    w = World(script=path)
    inside, outside = txn(), txn(source="203.0.113.5", cseq=2)
    w.router(inside)
    w.router(outside)
    assert (final(inside), final(outside)) == (200, 403)


@pytest.mark.parametrize("text,line,words", [
    ("def route(req, gw):\n    return (\n", 2, "syntax error"),
    ("x = 1\ny = 1 / 0\ndef route(req, gw):\n    pass\n", 2, "ZeroDivisionError"),
    ("def routing(req, gw):\n    pass\n", None, "no route(req, gw)"),
    ("def route(req):\n    pass\n", 1, "route must take (req, gw)"),
    ("route = 3\n", None, "route is not a function"),
    ("def route(req, gw):\n    pass\n\ndef on_event(name):\n    pass\n", 4,
     "on_event must take (name, params, gw)"),
])
def test_script_errors_name_file_and_line(tmp_path, text, line, words) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoutingScriptError) as e:
        Router(World().gw, script=path)
    assert e.value.path == path and e.value.line == line
    assert words in str(e.value)
    assert str(e.value).startswith(f"routing script {path}:{line}" if line else
                                   f"routing script {path}:")


def test_missing_script_is_a_clear_error(tmp_path) -> None:
    path = os.path.join(str(tmp_path), "nope.py")
    with pytest.raises(RoutingScriptError) as e:
        load_script(path)
    assert path in str(e.value) and "cannot read" in str(e.value)


def test_broken_on_event_does_not_break_the_gateway(tmp_path, logged) -> None:
    path = write(tmp_path, (
        "def route(req, gw):\n    gw.msg_to_msrp(req, 'k', 'text/plain')\n"
        "def on_event(name, params, gw):\n    raise RuntimeError('bad handler')\n"
    ))
    w = World(script=path)
    w.router(txn())
    w.ua.fail(w.ua.last().session_id, 486, "Busy Here")
    assert w.gw.list_sessions() == []
    assert any(e.get("name") == SETUP_FAILED_EVENT and e.get("log_failure") for e in logged)


def test_router_from_settings_reads_script_and_trusted() -> None:
    class RoutingSettings:
        script = ""
        trusted = ("10.0.0.0/8",)

    w = World()
    router = Router.from_settings(w.gw, RoutingSettings())
    t = txn()  # from 127.0.0.1: not trusted now
    router(t)
    assert final(t) == 403
    ok = txn(source="10.1.2.3", cseq=2)
    router(ok)
    assert final(ok) == 202


def test_deferred_errback_from_route_answers_500(tmp_path) -> None:
    path = write(tmp_path, (
        "from twisted.internet import defer\n"
        "def route(req, gw):\n"
        "    return defer.fail(ValueError('nope'))\n"
    ))
    w = World(script=path)
    t = txn()
    w.router(t)
    assert final(t) == 500


# -- cached parsing gives what a full parse gives ---------------------------------------------

NAME_ADDRS = [
    "<sip:bob@EXAMPLE.com>",
    "<sip:u0@127.0.0.1:5999>;tag=12345-1",
    '"Alice" <sip:Alice@Example.NET:5070;transport=udp>;tag=a1',
    '"a>b" <sip:x@h>;tag=t',
    "Bob <sip:bob@h;lr>;tag=Z.!%*_+`'~-9",
    "<sip:bob@h>;tag=x;other=1",
    "<sip:bob@h>;TAG=x",
    "<sip:bob@h> ;tag=x",
    "<sip:bob@h>;tag=",
    "<sip:bob@h>;tag=a b",
    "<sip:bob@h>;tag=x>",
    "sip:bob@h;tag=x",
    "<tel:+15551234>;tag=q",
    "<sip:[::1]:5060>;tag=v6",
]


@pytest.mark.parametrize("value", NAME_ADDRS)
def test_request_view_from_to_match_a_full_parse_whatever_the_form(value: str) -> None:
    from msrp_gateway.sip.uri import SIPParseError, aor, parse_name_addr

    try:
        expected = parse_name_addr(value)
    except SIPParseError:
        for cseq in (1, 2):
            with pytest.raises(SIPParseError):
                RequestView(txn(frm=value, cseq=cseq)).from_uri
        return
    for _ in range(2):  # the second view is answered from the caches
        view = RequestView(txn(frm=value, to=value))
        assert (view.from_uri, view.from_tag, view.from_aor) == \
            (expected.uri, expected.tag, aor(expected.uri))
        assert (view.to_uri, view.to_tag, view.to_aor) == (expected.uri, expected.tag,
                                                           aor(expected.uri))


def test_a_cached_from_keeps_each_requests_own_tag() -> None:
    first = RequestView(txn(frm="<sip:u@h>;tag=one"))
    second = RequestView(txn(frm="<sip:u@h>;tag=two", cseq=2))
    assert (first.from_tag, second.from_tag) == ("one", "two")
    assert first.from_aor == second.from_aor == "sip:u@h"


def test_a_broken_from_is_refused_every_time_not_only_the_first() -> None:
    from msrp_gateway.sip.uri import SIPParseError

    for cseq in (1, 2):
        view = RequestView(txn(frm='"unterminated <sip:u@h>;tag=x', cseq=cseq))
        with pytest.raises(SIPParseError):
            view.from_uri


def test_trusted_answer_per_source_is_remembered_but_right_for_each() -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8")]
    from msrp_gateway.routing import TrustedNetworks

    trust = TrustedNetworks(nets)
    for _ in range(2):
        assert RequestView(txn(source="10.9.9.9"), trust).trusted
        assert not RequestView(txn(source="192.0.2.1"), trust).trusted
        assert not RequestView(txn(source="not-an-ip"), trust).trusted
    assert RequestView(txn(source="10.1.1.1"), nets).trusted  # a plain list still works


# -- audit fixes --------------------------------------------------------------------------------


@pytest.mark.parametrize("text,name,line", [
    ("async def route(req, gw):\n    pass\n", "route", 1),
    ("def route(req, gw):\n    pass\n\n\nasync def on_event(name, params, gw):\n    pass\n",
     "on_event", 5),
    ("class R:\n    async def __call__(self, req, gw):\n        pass\n\nroute = R()\n",
     "route", None),
    ("async def route(req, gw):\n    yield 1\n", "route", 1),
])
def test_async_def_route_or_on_event_is_refused_at_load_naming_the_file(
        tmp_path, text: str, name: str, line: int | None) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoutingScriptError) as e:
        Router(World().gw, script=path)
    assert e.value.path == path and e.value.line == line
    assert f"{name} is an async def" in str(e.value) and path in str(e.value)


def test_the_default_on_event_failure_message_that_fails_is_logged_with_the_key(
        world: World, logged) -> None:
    world.router(txn())
    key = world.gw.list_sessions()[0]["key"]
    world.ua.fail(world.ua.last().session_id, 486, "Busy Here")
    world.sip.answer(0, 404, "Not Found")  # the failure notice itself is refused
    warned = [e for e in logged if e.get("key") == key and e.get("status") == 404]
    assert warned and warned[0]["log_level"].name == "warn"


@pytest.mark.parametrize("value", [v for v in NAME_ADDRS if v not in (
    '"unterminated <sip:u@h>;tag=x',)])
def test_cached_from_to_values_are_frozen_not_shared_mutable_objects(value: str) -> None:
    from dataclasses import FrozenInstanceError, fields

    from msrp_gateway.routing import _parse_addr
    from msrp_gateway.sip.uri import SIPParseError

    try:
        first = _parse_addr(value)
    except SIPParseError:
        return  # refused every time (test above): nothing cached
    second = _parse_addr(value)
    for f in fields(first):  # nothing inside can be changed in place either
        assert isinstance(getattr(first, f.name), (str, type(None))), f.name
    with pytest.raises(FrozenInstanceError):
        first.uri = "sip:mallory@evil.example"
    assert second.uri == _parse_addr(value).uri != "sip:mallory@evil.example"
    # and a view of a later request sees its own values, whatever an earlier one did
    view = RequestView(txn(frm=value, cseq=9))
    assert view.from_uri == second.uri and view.from_tag == second.tag
