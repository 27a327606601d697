"""The gateway end to end: `twistd -n msrpgw` in a subprocess, sipp on the page-mode side,
tests/interop/msrp_peer.py (the project's own UA, another process) on the MSRP side, all on
loopback, with dumpcap recording the run for tshark.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
import uuid

import pytest

from bench.gateway_harness import (
    HOST,
    SIPP_MESSAGE_UAC,
    SIPP_MESSAGE_UAS,
    Capture,
    GatewayProcess,
    PeerProcess,
    SippProcess,
    body_of,
    header,
    wait_for,
    write_scenario,
)

IN_CI = os.environ.get("CI", "").lower() == "true"
MISSING = [tool for tool in ("sipp",) if shutil.which(tool) is None]
if MISSING and not IN_CI:
    pytest.skip(f"needs {', '.join(MISSING)} on PATH", allow_module_level=True)
HAVE_CAPTURE = bool(shutil.which("dumpcap") and shutil.which("tshark"))


class World:
    def __init__(self, workdir: str, gw: GatewayProcess, peer: PeerProcess,
                 capture: Capture | None) -> None:
        self.dir = workdir
        self.gw = gw
        self.peer = peer
        self.capture = capture
        self.uac = write_scenario(workdir, "message_uac.xml", SIPP_MESSAGE_UAC)
        self.uac_503 = write_scenario(workdir, "message_uac_503.xml",
                                      SIPP_MESSAGE_UAC.replace('response="202"', 'response="503"'))
        self.uas = write_scenario(workdir, "message_uas.xml",
                                  SIPP_MESSAGE_UAS.replace("[status] OK", "200 OK"))
        self.sipp_ports: list[int] = []

    def send_messages(self, from_user: str, from_port: int, to_user: str, n: int = 1, *,
                      text: str = "hello", rate: int = 100, scenario: str | None = None,
                      to_port: int | None = None) -> SippProcess:
        """sipp UAC: n MESSAGEs from from_user (reachable at from_port) to to_user at the
        peer, via the gateway; every one must be answered 202 (exit status 0)."""
        s = SippProcess(self.dir, scenario or self.uac, f"{HOST}:{self.gw.sip_port}",
                        "-m", str(n), "-r", str(rate), "-rp", "1000", "-timeout", "60",
                        "-l", "1" if rate <= 100 else "100",
                        keys={"to_user": to_user, "to_port": to_port or self.peer.sip_port,
                              "from_user": from_user, "from_port": from_port, "text": text},
                        name=f"uac-{from_user}")
        self.sipp_ports.append(s.port)
        return s

    def receiver(self, n: int, transport: str = "u1", name: str = "uas") -> SippProcess:
        """sipp UAS answering n MESSAGEs with 200, listening before this returns."""
        s = SippProcess(self.dir, self.uas, "-m", str(n), "-timeout", "120",
                        transport=transport, name=name)
        self.sipp_ports.append(s.port)
        return s.wait_bound()

    def sessions(self) -> list[dict]:
        return self.gw.mi("msrp_gw_list_sessions")["result"]

    def session(self, key: str) -> dict | None:
        return next((s for s in self.sessions() if s["key"] == key), None)


def user(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def start_world(workdir: str, **sections: dict) -> World:
    gw = GatewayProcess(workdir, **sections)
    try:
        gw.start()
        peer = PeerProcess(workdir, proxy=f"sip:{HOST}:{gw.sip_port};lr")
    except BaseException:
        gw.stop()
        raise
    # every packet of a run has the gateway or the peer at one end
    capture = Capture(workdir, [gw.sip_port, gw.msrp_port, peer.sip_port, peer.msrp_port]
                      ) if HAVE_CAPTURE else None
    return World(workdir, gw, peer, capture)


def stop_world(w: World) -> None:
    w.peer.close()
    w.gw.stop()
    if w.capture:
        w.capture.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = start_world(str(tmp_path_factory.mktemp("gw-e2e")))
    yield w
    stop_world(w)


@pytest.fixture
def answering(world: World):
    """The peer back to answering every INVITE after a test changed its mode."""
    yield world
    world.peer.send(cmd="answer", mode="answer")
    world.peer.expect("ok", cmd="answer")


def set_mode(w: World, mode: str) -> None:
    w.peer.send(cmd="answer", mode=mode)
    w.peer.expect("ok", cmd="answer")


# -- page -> session ------------------------------------------------------------------------


def test_first_messages_open_the_session_and_arrive_in_order_then_go_straight(
        answering: World) -> None:
    w = answering
    alice, bob = user("alice"), user("bob")
    set_mode(w, "hold")  # the INVITE is answered only on `release`: all three must queue
    first = w.send_messages(alice, 5999, bob, 3, text="early")
    assert first.wait(60) == 0, first.errors()  # three 202s
    w.peer.expect("invite_held", has=f"sip:{bob}@")
    w.peer.send(cmd="release")
    assert w.peer.expect("released")["count"] == 1
    invite = w.peer.expect("invite", has=f"sip:{alice}@")
    assert f"sip:{alice}@127.0.0.1:5999" in invite["from"]
    assert f"sip:{bob}@127.0.0.1:{w.peer.sip_port}" in invite["to"]
    sid = invite["sid"]
    bodies = [w.peer.expect("message", sid=sid)["body"].strip() for _ in range(3)]
    assert bodies == ["early 1", "early 2", "early 3"]
    set_mode(w, "answer")
    later = w.send_messages(alice, 5999, bob, 2, text="later")
    assert later.wait(60) == 0, later.errors()
    bodies = [w.peer.expect("message", sid=sid)["body"].strip() for _ in range(2)]
    assert bodies == ["later 1", "later 2"]
    assert w.peer.drain("invite") == []  # no second INVITE
    s = w.session(f"sip:{bob}@127.0.0.1-sip:{alice}@127.0.0.1")
    assert s is not None and s["msrp_ua_session_id"] != "" and s["state"] == "established"


# -- session -> page ------------------------------------------------------------------------


def test_sends_become_messages_with_the_invite_coordinates(world: World) -> None:
    w = world
    carol, dave = user("carol"), user("dave")
    uas = w.receiver(2)
    target = f"sip:{dave}@127.0.0.1:{uas.port}"
    w.peer.send(cmd="invite", **{"from": f"sip:{carol}@127.0.0.1", "to": target, "ruri": target})
    sid = w.peer.expect("started")["sid"]
    w.peer.expect("established", sid=sid)
    w.peer.send(cmd="send", sid=sid, ctype="text/plain;charset=UTF-8", body="hi dave")
    assert w.peer.expect("send_result", sid=sid)["status"] == 200
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", body="second")
    assert w.peer.expect("send_result", sid=sid)["status"] == 200
    assert uas.wait(60) == 0, uas.errors()
    got = uas.transactions("MESSAGE")
    assert len(got) == 2
    start_line = got[0].splitlines()[0]
    assert start_line == f"MESSAGE {target} SIP/2.0"
    assert f"<sip:{carol}@127.0.0.1>" in header(got[0], "From")
    assert f"<{target}>" in header(got[0], "To")
    assert header(got[0], "Content-Type") == "text/plain;charset=UTF-8"
    assert body_of(got[0]) == "hi dave"
    assert body_of(got[1]) == "second"
    w.peer.send(cmd="bye", sid=sid)
    w.peer.expect("ended", sid=sid)
    wait_for(lambda: w.session(f"sip:{carol}@127.0.0.1-sip:{dave}@127.0.0.1") is None, 30,
             "the gateway to drop the session after BYE")


def test_chunked_10k_send_becomes_one_message_over_tcp(world: World) -> None:
    w = world
    erin, fred = user("erin"), user("fred")
    uas = w.receiver(1, transport="t1", name="uas-tcp")
    target = f"sip:{fred}@127.0.0.1:{uas.port}"
    w.peer.send(cmd="invite", **{"from": f"sip:{erin}@127.0.0.1", "to": target, "ruri": target})
    sid = w.peer.expect("started")["sid"]
    w.peer.expect("established", sid=sid)
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", size=10000)  # 3 chunks of <= 4096
    assert w.peer.expect("send_result", sid=sid)["status"] == 200
    assert uas.wait(60) == 0, uas.errors()
    [got] = uas.transactions("MESSAGE")
    assert "SIP/2.0/TCP" in header(got, "Via")
    assert int(header(got, "Content-Length")) == 10000
    assert body_of(got).startswith("0123456789abcdefghijklmnopqrstuvwxyz\n0123")
    w.peer.send(cmd="bye", sid=sid)
    w.peer.expect("ended", sid=sid)


def test_refused_message_comes_back_as_a_failure_report(world: World) -> None:
    w = world
    tess, umar = user("tess"), user("umar")
    busy = write_scenario(w.dir, "message_uas_486.xml",
                          SIPP_MESSAGE_UAS.replace("[status] OK", "486 Busy Here"))
    uas = SippProcess(w.dir, busy, "-m", "1", "-timeout", "120", name="uas-busy")
    w.sipp_ports.append(uas.port)
    uas.wait_bound()
    target = f"sip:{umar}@127.0.0.1:{uas.port}"
    w.peer.send(cmd="invite", **{"from": f"sip:{tess}@127.0.0.1", "to": target, "ruri": target})
    sid = w.peer.expect("started")["sid"]
    w.peer.expect("established", sid=sid)
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", body="anyone?", failure_report="yes")
    assert w.peer.expect("send_result", sid=sid)["status"] == 200  # hop by hop: at once
    assert uas.wait(60) == 0, uas.errors()
    report = w.peer.expect("report", sid=sid)
    assert report["status"].startswith("000 ") and report["status"].split()[1] != "200"
    assert "486" in report["status"]
    w.peer.send(cmd="bye", sid=sid)
    w.peer.expect("ended", sid=sid)


# -- both ways on one session ---------------------------------------------------------------


def test_replies_both_ways_in_a_session_opened_by_message(world: World) -> None:
    w = world
    gina, hank = user("gina"), user("hank")
    uas = w.receiver(1)  # gina's phone
    s = w.send_messages(gina, uas.port, hank, 1, text="hi hank")
    assert s.wait(60) == 0, s.errors()
    sid = w.peer.expect("invite", has=f"sip:{gina}@")["sid"]
    w.peer.expect("established", sid=sid)
    assert w.peer.expect("message", sid=sid)["body"].strip() == "hi hank 1"
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", body="hi gina")
    assert uas.wait(60) == 0, uas.errors()
    [got] = uas.transactions("MESSAGE")
    assert got.splitlines()[0] == f"MESSAGE sip:{gina}@127.0.0.1:{uas.port} SIP/2.0"
    assert f"sip:{hank}@127.0.0.1:{w.peer.sip_port}" in header(got, "From")
    assert body_of(got) == "hi gina"
    again = w.send_messages(gina, uas.port, hank, 1, text="and again")
    assert again.wait(60) == 0, again.errors()
    assert w.peer.expect("message", sid=sid)["body"].strip() == "and again 1"
    assert w.peer.drain("invite") == []


def test_replies_both_ways_in_a_session_opened_by_invite(world: World) -> None:
    w = world
    ivan, jane = user("ivan"), user("jane")
    uas = w.receiver(1)  # jane's phone
    target = f"sip:{jane}@127.0.0.1:{uas.port}"
    w.peer.send(cmd="invite", **{"from": f"sip:{ivan}@127.0.0.1", "to": target, "ruri": target})
    sid = w.peer.expect("started")["sid"]
    w.peer.expect("established", sid=sid)
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", body="hi jane")
    assert uas.wait(60) == 0, uas.errors()
    # jane answers from her phone: To is ivan, so the key (ivan-jane) is the INVITE's
    reply = w.send_messages(jane, uas.port, ivan, 1, text="hi ivan")
    assert reply.wait(60) == 0, reply.errors()
    assert w.peer.expect("message", sid=sid)["body"].strip() == "hi ivan 1"
    assert w.peer.drain("invite") == []
    keys = [s["key"] for s in w.sessions()]
    assert keys.count(f"sip:{ivan}@127.0.0.1-sip:{jane}@127.0.0.1") == 1


def test_duplicate_key_invite_is_refused(world: World) -> None:
    w = world
    kim, lee = user("kim"), user("lee")
    target = f"sip:{lee}@127.0.0.1:5998"
    invite = {"from": f"sip:{kim}@127.0.0.1", "to": target, "ruri": target}
    w.peer.send(cmd="invite", **invite)
    first = w.peer.expect("started")["sid"]
    w.peer.expect("established", sid=first)
    w.peer.send(cmd="invite", **invite)
    second = w.peer.expect("started")["sid"]
    failed = w.peer.expect("failed", sid=second)
    assert failed["code"] == 486
    assert w.session(f"sip:{kim}@127.0.0.1-sip:{lee}@127.0.0.1") is not None


def test_mi_end_session_byes_the_msrp_side(world: World) -> None:
    w = world
    opal, paul = user("opal"), user("paul")
    s = w.send_messages(opal, 5997, paul, 1, text="end me")
    assert s.wait(60) == 0, s.errors()
    sid = w.peer.expect("invite", has=f"sip:{opal}@")["sid"]
    w.peer.expect("established", sid=sid)
    key = f"sip:{paul}@127.0.0.1-sip:{opal}@127.0.0.1"
    assert w.gw.mi("msrp_gw_end_session", {"key": key})["result"] == "OK"
    # the gateway's BYE, not a dropped connection, is what ends it at the peer
    assert "BYE" in w.peer.expect("terminated", sid=sid)["why"]
    assert w.session(key) is None
    gone = w.gw.mi("msrp_gw_end_session", {"key": key})
    assert gone["error"] == {"code": 404, "message": "Session doesn't exist"}


def test_lost_msrp_connection_ends_the_session(world: World) -> None:
    w = world
    other = PeerProcess(w.dir, proxy=f"sip:{HOST}:{w.gw.sip_port};lr")
    try:
        rosa, saul = user("rosa"), user("saul")
        s = w.send_messages(rosa, 5996, saul, 1, text="then vanish", to_port=other.sip_port)
        assert s.wait(60) == 0, s.errors()
        sid = other.expect("invite")["sid"]
        other.expect("established", sid=sid)
        key = f"sip:{saul}@127.0.0.1-sip:{rosa}@127.0.0.1"
        assert w.session(key) is not None
    finally:
        other.proc.kill()  # no BYE, no FIN handshake of its own: the kernel resets
        other.close()
    wait_for(lambda: w.session(key) is None, 30, "the gateway to drop the session")


# -- set-up failures ------------------------------------------------------------------------


def subscribe(w: World) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(1.0)
    port = sock.getsockname()[1]
    answer = w.gw.mi("event_subscribe", ["E_MSRP_GW_SETUP_FAILED", f"udp:{HOST}:{port}", 300])
    assert answer.get("result") == "OK", answer
    return sock


def next_event(sock: socket.socket, key: str, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        event = json.loads(data)
        if event["params"]["key"] == key:
            return event
    raise TimeoutError(f"no E_MSRP_GW_SETUP_FAILED for {key} within {timeout} s")


def check_setup_failure(w: World, mode: str, code: int | None, reason: str | None,
                        words: str, wait: float) -> None:
    """A MESSAGE whose session cannot be set up: 202 (queued), then the event with fresh
    params, the failure MESSAGE to the sender's phone, and no session left."""
    mona, ned = user("mona"), user("ned")
    sock = subscribe(w)
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind((HOST, 0))
    try:
        to_port = w.peer.sip_port
        if mode == "black-hole":
            to_port = hole.getsockname()[1]
        else:
            set_mode(w, mode)
        phone = w.receiver(1)  # mona's phone gets the failure MESSAGE
        s = w.send_messages(mona, phone.port, ned, 1, text="are you there", to_port=to_port)
        assert s.wait(60) == 0, s.errors()  # 202: the body was queued
        key = f"sip:{ned}@127.0.0.1-sip:{mona}@127.0.0.1"
        event = next_event(sock, key, wait)
        assert event["jsonrpc"] == "2.0" and "id" not in event
        assert event["method"] == "E_MSRP_GW_SETUP_FAILED"
        mona_uri = f"sip:{mona}@127.0.0.1:{phone.port}"
        assert event["params"] == {
            "key": key, "from_uri": f"sip:{ned}@127.0.0.1:{to_port}",
            "to_uri": mona_uri, "ruri": mona_uri, "code": code, "reason": reason}
        assert list(event["params"]) == ["key", "from_uri", "to_uri", "ruri", "code", "reason"]
        assert phone.wait(60) == 0, phone.errors()
        [got] = phone.transactions("MESSAGE")
        assert got.splitlines()[0] == f"MESSAGE {mona_uri} SIP/2.0"
        assert words in body_of(got)
        assert w.session(key) is None
    finally:
        sock.close()
        hole.close()


def test_setup_failure_486_raises_event_and_pages_the_sender(answering: World) -> None:
    check_setup_failure(answering, "reject:486", 486, "Busy Here", "486 Busy Here", 30)


FAST_T1 = 0.05  # [sip] timer_t1: Timer B = 64*T1 = 3.2 s instead of 32 s


@pytest.fixture(scope="module")
def fast_timers(tmp_path_factory):
    w = start_world(str(tmp_path_factory.mktemp("gw-e2e-fast-t1")), sip={"timer_t1": FAST_T1})
    yield w
    stop_world(w)


def test_invite_timeout_raises_event_and_pages_the_sender(fast_timers: World) -> None:
    """A UDP port that swallows the INVITE without a word: Timer B (64*T1) ends the set-up;
    the configured T1 is what the running gateway uses (3.2 s, not the default 32 s)."""
    began = time.monotonic()
    # 3.2 s and some start-up on a loaded machine; the default T1 would take over 32 s
    check_setup_failure(fast_timers, "black-hole", None, None, "no answer", 25)
    assert time.monotonic() - began < 25


# -- bounds, timeouts and shutdown on a gateway with small limits -----------------------------


def raw_message(gw: GatewayProcess, sock: socket.socket, from_user: str, to_user: str,
                to_port: int, body: str, n: int) -> str:
    """One MESSAGE over UDP from `sock`; the status code of its final answer."""
    return raw_answer(gw, sock, from_user, to_user, to_port, body, n).split(" ", 2)[1]


def raw_answer(gw: GatewayProcess, sock: socket.socket, from_user: str, to_user: str,
               to_port: int, body: str, n: int) -> str:
    """One MESSAGE over UDP from `sock`; the text of its final answer."""
    port = sock.getsockname()[1]
    branch = uuid.uuid4().hex
    text = (f"MESSAGE sip:{to_user}@127.0.0.1:{to_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n"
            f"From: <sip:{from_user}@127.0.0.1:{port}>;tag={branch[:8]}\r\n"
            f"To: <sip:{to_user}@127.0.0.1:{to_port}>\r\n"
            f"Call-ID: {branch}@test\r\nCSeq: {n} MESSAGE\r\nMax-Forwards: 70\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body}")
    sock.sendto(text.encode(), (HOST, gw.sip_port))
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            data = sock.recv(65535).decode()
        except socket.timeout:
            continue
        if data.startswith("SIP/2.0 ") and branch in data and not data.startswith("SIP/2.0 1"):
            return data
    raise TimeoutError("no final answer to MESSAGE")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Short session timeouts, for the tests of those timeouts and of shutdown."""
    w = start_world(str(tmp_path_factory.mktemp("gw-e2e-small")), msrp_gateway={
        "cleanup_interval": 1, "session_timeout": 4, "message_timeout": 3,
        "max_sessions": 3, "max_queued_messages": 2})
    yield w
    stop_world(w)


@pytest.fixture(scope="module")
def limits(tmp_path_factory):
    """Small session and queue bounds with the default (hours-long) session timeouts: a
    session the test counts on lives however long a loaded machine stalls (on `small`, a
    3 s pause would let message_timeout end one and turn an expected 503 into a 202)."""
    w = start_world(str(tmp_path_factory.mktemp("gw-e2e-limits")), msrp_gateway={
        "max_sessions": 3, "max_queued_messages": 2})
    yield w
    stop_world(w)


def end_all_sessions(w: World) -> None:
    """End the sessions earlier tests left (MI end_session: BYE), so a test starts at 0."""
    for s in w.sessions():
        w.gw.mi("msrp_gw_end_session", {"key": s["key"]})
    wait_for(lambda: not w.sessions(), 30, "earlier sessions to end")


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.5)
    yield sock
    sock.close()


def test_queue_bound_answers_503(limits: World, udp: socket.socket) -> None:
    w = limits
    end_all_sessions(w)
    set_mode(w, "hold")  # the INVITE waits for `release`: all three MESSAGEs meet a queue
    try:
        codes = [raw_message(w.gw, udp, "olga", "pete", w.peer.sip_port, f"q{i}", i)
                 for i in range(3)]
        assert codes == ["202", "202", "503"]
        w.peer.expect("invite_held", has="sip:pete@")
        w.peer.send(cmd="release")
        assert w.peer.expect("released")["count"] == 1
        sid = w.peer.expect("invite", has="sip:olga@")["sid"]
        got = [w.peer.expect("message", sid=sid)["body"] for _ in range(2)]
        assert got == ["q0", "q1"]
    finally:
        set_mode(w, "answer")
        w.peer.drain("message")


def test_max_sessions_answers_503(limits: World, udp: socket.socket) -> None:
    w = limits
    end_all_sessions(w)
    codes = [raw_message(w.gw, udp, f"user{i}", "quinn", w.peer.sip_port, "x", i)
             for i in range(4)]
    assert codes == ["202", "202", "202", "503"]
    assert len(w.sessions()) == 3


def test_message_timeout_and_session_timeout_end_sessions_with_bye(small: World,
                                                                   udp: socket.socket) -> None:
    w = small
    wait_for(lambda: not w.sessions(), 30, "earlier sessions to time out")
    w.peer.drain("terminated")
    # no MESSAGE after the first one: message_timeout (3 s) ends it. Times are taken
    # before the MESSAGE that creates the session (seeing the INVITE may come late)
    opened = time.monotonic()
    assert raw_message(w.gw, udp, "rita", "sam", w.peer.sip_port, "once", 1) == "202"
    sid = w.peer.expect("invite", has="sip:rita@")["sid"]
    term = w.peer.expect("terminated", sid=sid)
    assert "BYE" in term["why"] and time.monotonic() - opened >= 2.9
    # MESSAGEs every second but no SEND: session_timeout (4 s) ends it
    opened = time.monotonic()
    assert raw_message(w.gw, udp, "tina", "uma", w.peer.sip_port, "m0", 1) == "202"
    sid = w.peer.expect("invite", has="sip:tina@")["sid"]
    n = 1
    while True:
        time.sleep(1)
        n += 1
        raw_message(w.gw, udp, "tina", "uma", w.peer.sip_port, f"m{n}", n)
        ended = [e for e in w.peer.drain("terminated") if e["sid"] == sid]
        if ended:
            break
        assert time.monotonic() - opened < 30, "session_timeout never ended the session"
    assert time.monotonic() - opened >= 3.5
    assert "BYE" in ended[0]["why"], ended


def test_sigterm_byes_every_session_and_exits(small: World, udp: socket.socket) -> None:
    w = small
    wait_for(lambda: not w.sessions(), 30, "earlier sessions to time out")
    w.peer.drain("terminated")
    sids = set()
    for i in range(2):
        assert raw_message(w.gw, udp, f"vic{i}", "walt", w.peer.sip_port, "x", 1) == "202"
        sid = w.peer.expect("invite", has=f"sip:vic{i}@")["sid"]
        w.peer.expect("established", sid=sid)
        sids.add(sid)
    began = time.monotonic()
    w.gw.stop(timeout=30)
    assert time.monotonic() - began < 15  # BYEs answered at once: well within the budget
    for sid in sids:  # each peer session hears the gateway's BYE (not only a closed socket)
        assert "BYE" in w.peer.expect("terminated", sid=sid)["why"]
    assert "msrpgw stopped" in w.gw.log()


STOP_TIMEOUT = 2.0


@pytest.fixture
def frozen_peer_world(tmp_path):
    """A gateway with a short stop_timeout and a peer we may SIGSTOP; the peer is always
    continued and closed, the gateway always stopped, whatever the test did."""
    gw = GatewayProcess(str(tmp_path), msrp_gateway={"stop_timeout": STOP_TIMEOUT})
    gw.start()
    try:
        peer = PeerProcess(str(tmp_path), proxy=f"sip:{HOST}:{gw.sip_port};lr")
    except BaseException:
        gw.stop()
        raise
    try:
        yield World(str(tmp_path), gw, peer, None)
    finally:
        gw.stop(timeout=30)
        # killed, not asked to quit: with the gateway gone, a quit would wait out the BYE
        # the continued peer sends for its lost MSRP connection (Timer F, 32 s)
        if peer.proc.poll() is None:
            peer.proc.send_signal(signal.SIGCONT)
            peer.proc.kill()
        peer.close()


def test_sigterm_with_a_frozen_peer_exits_within_stop_timeout(frozen_peer_world: World,
                                                              udp: socket.socket) -> None:
    """The peer is SIGSTOPped with a session up: our BYE is never answered (its Timer F is
    64*T1 = 32 s) and yet SIGTERM ends the process within stop_timeout + 3 s (it took
    32-63 s before the UA's stop got a deadline)."""
    w = frozen_peer_world
    assert raw_message(w.gw, udp, "xavi", "yves", w.peer.sip_port, "then freeze", 1) == "202"
    sid = w.peer.expect("invite", has="sip:xavi@")["sid"]
    w.peer.expect("established", sid=sid)
    assert w.peer.expect("message", sid=sid)["body"] == "then freeze"
    w.peer.proc.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    status = w.gw.stop(timeout=STOP_TIMEOUT + 20)
    took = time.monotonic() - began
    assert status in (0, -signal.SIGTERM), f"exit status {status} (-9: it had to be killed)"
    # the budget plus process exit on a loaded machine; 32-63 s when it was not kept
    assert took < STOP_TIMEOUT + 8, f"SIGTERM took {took:.1f} s"
    log = w.gw.log()
    assert "msrpgw stopped" in log
    assert "unanswered" in log or "did not end within" in log, w.gw.log_tail()


@pytest.mark.parametrize("run", ["limits", "small"])
def test_zz_tshark_sees_no_malformed_sip_or_msrp_in_the_bounded_runs(
        request: pytest.FixtureRequest, run: str) -> None:
    """After the bounds (503s, MI-ended sessions) on the limits gateway and the timeouts
    and shutdown (BYEs, the SIGTERM) on the small one: their own captures are analysed too."""
    w = request.getfixturevalue(run)
    usable_capture(w)
    w.capture.stop()
    sip_ports = [w.gw.sip_port, w.peer.sip_port] + w.sipp_ports
    msrp_ports = [w.gw.msrp_port, w.peer.msrp_port]
    sip = w.capture.tshark(sip_ports, msrp_ports, "sip.Method", "sip.Status-Code",
                           display="sip")
    for seen in ("MESSAGE", "INVITE", "BYE", "202") + (("503",) if run == "limits" else ()):
        assert seen in sip, f"{seen} missing from the {run} run's capture"
    msrp = w.capture.tshark(sip_ports, msrp_ports, "msrp.method", display="msrp")
    assert "SEND" in msrp
    assert_no_malformed(w, sip_ports, msrp_ports)


# -- page -> session overload: the MSRP connection's send queue bound -----------------------


@pytest.fixture(scope="module")
def overload(tmp_path_factory):
    # 256 SENDs may await their 200 (max_inflight), then max_send_queue more wait unsent
    w = start_world(str(tmp_path_factory.mktemp("gw-e2e-overload")),
                    msrp={"max_send_queue": 2})
    yield w
    stop_world(w)


def test_full_msrp_send_queue_answers_503_with_retry_after_and_loses_nothing(
        overload: World, udp: socket.socket) -> None:
    w = overload
    assert raw_message(w.gw, udp, "zed", "amy", w.peer.sip_port, "b0", 0) == "202"
    sid = w.peer.expect("invite", has="sip:zed@")["sid"]
    w.peer.expect("established", sid=sid)
    assert w.peer.expect("message", sid=sid)["body"] == "b0"
    w.peer.send(cmd="stall", on=True)  # the peer stops reading: no 200s, the queue fills
    assert w.peer.expect("ok", cmd="stall")["connections"] >= 1
    accepted = ["b0"]
    refused = ""
    try:
        for i in range(1, 400):
            answer = raw_answer(w.gw, udp, "zed", "amy", w.peer.sip_port, f"b{i}", i)
            code = answer.split(" ", 2)[1]
            if code != "202":
                refused = answer
                break
            accepted.append(f"b{i}")
    finally:
        w.peer.send(cmd="stall", on=False)
    assert refused.startswith("SIP/2.0 503 "), refused or "every MESSAGE got 202"
    assert int(header(refused, "Retry-After")) > 0
    assert len(accepted) >= 3  # the bound is the MSRP link's, not a first-MESSAGE failure
    key = "sip:amy@127.0.0.1-sip:zed@127.0.0.1"
    wait_for(lambda: "MESSAGE refused 503" in w.gw.log(), 30, "the refusal in the log")
    assert any(key in line for line in w.gw.log().splitlines() if "refused 503" in line)
    # every body that got 202 arrives once the peer reads again, in order: nothing lost
    got = [w.peer.expect("message", timeout=20, sid=sid)["body"] for _ in accepted[1:]]
    assert got == accepted[1:]
    assert raw_message(w.gw, udp, "zed", "amy", w.peer.sip_port, "after", 999) == "202"
    assert w.peer.expect("message", sid=sid)["body"] == "after"


def test_zz_tshark_sees_no_malformed_sip_or_msrp_in_the_overload_run(overload: World) -> None:
    w = overload
    usable_capture(w)
    w.capture.stop()
    sip_ports = [w.gw.sip_port, w.peer.sip_port] + w.sipp_ports
    msrp_ports = [w.gw.msrp_port, w.peer.msrp_port]
    sip = w.capture.tshark(sip_ports, msrp_ports, "sip.Status-Code", display="sip")
    assert "503" in sip and "202" in sip
    assert "SEND" in w.capture.tshark(sip_ports, msrp_ports, "msrp.method", display="msrp")
    assert_no_malformed(w, sip_ports, msrp_ports)


# -- the capture ----------------------------------------------------------------------------


def usable_capture(w: World) -> None:
    """Skip (fail under CI) when there is no capture to analyse."""
    if not HAVE_CAPTURE:
        if IN_CI:
            pytest.fail("dumpcap/tshark missing under CI")
        pytest.skip("needs dumpcap and tshark")
    if w.capture is None or w.capture.error:
        why = w.capture.error if w.capture else "no capture"
        if IN_CI:
            pytest.fail(f"dumpcap could not capture: {why}")
        pytest.skip(f"dumpcap could not capture: {why}")


def assert_no_malformed(w: World, sip_ports: list[int], msrp_ports: list[int]) -> None:
    bad = w.capture.tshark(sip_ports, msrp_ports,
                           display="(sip or msrp) and (_ws.malformed or _ws.expert.severity "
                                   ">= \"error\")")
    assert bad.strip() == "", bad


def test_zz_tshark_sees_no_malformed_sip_or_msrp(world: World) -> None:
    """Runs last in the module: a short exchange of its own, then the whole capture."""
    w = world
    usable_capture(w)
    xena, yuri = user("xena"), user("yuri")
    phone = w.receiver(1)
    s = w.send_messages(xena, phone.port, yuri, 1, text="capture me")
    assert s.wait(60) == 0, s.errors()
    sid = w.peer.expect("invite", has=f"sip:{xena}@")["sid"]
    w.peer.expect("message", sid=sid)
    w.peer.send(cmd="send", sid=sid, ctype="text/plain", body="captured")
    assert phone.wait(60) == 0
    w.capture.stop()
    sip_ports = [w.gw.sip_port, w.peer.sip_port] + w.sipp_ports
    msrp_ports = [w.gw.msrp_port, w.peer.msrp_port]
    sip = w.capture.tshark(sip_ports, msrp_ports, "sip.Method", "sip.Status-Code",
                           display="sip")
    msrp = w.capture.tshark(sip_ports, msrp_ports, "msrp.method", display="msrp")
    assert "MESSAGE" in sip and "INVITE" in sip and "200" in sip
    assert "SEND" in msrp
    assert_no_malformed(w, sip_ports, msrp_ports)
