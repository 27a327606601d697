"""The real ``opensips-cli`` reads and resets the statistics of a real ``twistd -n msrpgw``
after a MESSAGE from a plain UDP socket: the numbers move as that traffic says.

The routing script hands the MESSAGE to ``msg_to_msrp``; its R-URI is the test's own UDP
socket, so the gateway's INVITE comes back to the test, which refuses it 486: one server
transaction (MESSAGE, answered 202), one client transaction (INVITE, 486), one gateway
session created whose set-up failed, its queued body undelivered.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from typing import Any

import pytest

from .conftest import require_tool

ROUTE = '''
def route(req, gw):
    if req.method == "MESSAGE":
        gw.msg_to_msrp(req, f"{req.to_aor}-{req.from_aor}", "text/plain")
    else:
        req.reply(405)
'''
CLI_TIMEOUT = 60.0
SIP_TIMEOUT = 30.0  # a bound only waited out when something is broken (loaded CI box)


def cli(gw: Any, home: str, *command: str) -> Any:
    """``opensips-cli -x mi <command>`` against the gateway's mi_http; its JSON output."""
    exe = require_tool("opensips-cli")
    proc = subprocess.run(
        [exe, "-o", "communication_type=http", "-o", f"url={gw.mi_url}",
         "-o", "output_type=pretty-print", "-x", "mi", *command],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=home,
        env=dict(os.environ, HOME=home, NO_COLOR="1"), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def recv_until(sock: socket.socket, want: str) -> str:
    """The first datagram whose start line begins with ``want`` (others are skipped)."""
    deadline = time.monotonic() + SIP_TIMEOUT
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535).decode("utf-8", "replace")
        except socket.timeout:
            break
        if data.startswith(want):
            return data
    raise AssertionError(f"no {want!r} within {SIP_TIMEOUT} s")


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:[ \t]*(.*?)\r$", msg, re.MULTILINE | re.IGNORECASE)
    assert m, f"no {name} in {msg!r}"
    return m.group(1)


def refuse(invite: str, status: str = "486 Busy Here") -> bytes:
    """A final response to ``invite``: its Via/From/To/Call-ID/CSeq, a To tag of ours."""
    vias = re.findall(r"^Via:.*?\r$", invite, re.MULTILINE | re.IGNORECASE)
    lines = [f"SIP/2.0 {status}", *[v.rstrip("\r") for v in vias],
             f"From: {header(invite, 'From')}", f"To: {header(invite, 'To')};tag=t14",
             f"Call-ID: {header(invite, 'Call-ID')}", f"CSeq: {header(invite, 'CSeq')}",
             "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def message(gw_port: int, my_port: int) -> bytes:
    body = b"hello stats"
    return (
        f"MESSAGE sip:bob@127.0.0.1:{my_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{my_port};branch=z9hG4bKstats1;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@127.0.0.1:{my_port}>;tag=a1\r\n"
        f"To: <sip:bob@127.0.0.1:{my_port}>\r\n"
        "Call-ID: stats-1@127.0.0.1\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.fixture
def udp() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_opensips_cli_reads_and_resets_statistics_moved_by_a_message(msrpgw, udp,
                                                                        tmp_path) -> None:
    require_tool("opensips-cli")
    home = str(tmp_path)
    gw = msrpgw.start(routing_script=ROUTE)
    before = cli(gw, home, "get_statistics", "all")
    assert before["core:rcv_requests"] == 0 and before["tm:UAS_transactions"] == 0
    assert before["msrp_gateway:sessions_created"] == 0

    my_port = udp.getsockname()[1]
    udp.sendto(message(gw.sip_port, my_port), ("127.0.0.1", gw.sip_port))
    assert recv_until(udp, "SIP/2.0 ").startswith("SIP/2.0 202")
    invite = recv_until(udp, "INVITE ")
    udp.sendto(refuse(invite), ("127.0.0.1", gw.sip_port))
    recv_until(udp, "ACK ")  # the gateway has handled our 486 once it ACKs it

    after = cli(gw, home, "get_statistics", "all")
    assert {k: after[k] for k in (
        "core:rcv_requests", "core:rcv_replies", "tm:UAS_transactions",
        "tm:UAC_transactions", "tm:local_replies", "tm:received_replies",
        "tm:2xx_transactions", "tm:4xx_transactions", "msrp_gateway:sessions_created",
        "msrp_gateway:sessions_setup_failed", "msrp_gateway:messages_to_msrp",
        "msrp_gateway:messages_failed", "msrp_gateway:active_sessions",
        "msrp:active_sessions")} == {
        "core:rcv_requests": 1, "core:rcv_replies": 1, "tm:UAS_transactions": 1,
        "tm:UAC_transactions": 1, "tm:local_replies": 1, "tm:received_replies": 1,
        "tm:2xx_transactions": 1, "tm:4xx_transactions": 1,
        "msrp_gateway:sessions_created": 1, "msrp_gateway:sessions_setup_failed": 1,
        "msrp_gateway:messages_to_msrp": 1, "msrp_gateway:messages_failed": 1,
        "msrp_gateway:active_sessions": 0, "msrp:active_sessions": 0}

    tm = cli(gw, home, "get_statistics", "tm:")
    assert tm and all(name.startswith("tm:") for name in tm)
    assert tm["tm:UAC_transactions"] == 1
    assert cli(gw, home, "get_statistics", "rcv_requests", "rcv_replies") == {
        "core:rcv_requests": 1, "core:rcv_replies": 1}

    kinds = cli(gw, home, "list_statistics")
    assert kinds["core:rcv_requests"] == "incremental"
    assert kinds["tm:inuse_transactions"] == "non-incremental"

    assert cli(gw, home, "reset_statistics", "rcv_requests", "UAS_transactions") == "OK"
    reset = cli(gw, home, "get_statistics", "core:", "tm:")
    assert (reset["core:rcv_requests"], reset["tm:UAS_transactions"]) == (0, 0)
    assert (reset["core:rcv_replies"], reset["tm:UAC_transactions"]) == (1, 1)
    assert cli(gw, home, "reset_statistics", "msrp_gateway:") == "OK"
    assert cli(gw, home, "get_statistics", "msrp_gateway:")[
        "msrp_gateway:sessions_created"] == 0


def test_opensips_cli_gets_statistics_not_found_for_unknown_names(msrpgw, tmp_path) -> None:
    exe = require_tool("opensips-cli")
    gw = msrpgw.start(routing_script=ROUTE)
    home = str(tmp_path)
    proc = subprocess.run(
        [exe, "-o", "communication_type=http", "-o", f"url={gw.mi_url}",
         "-o", "output_type=pretty-print", "-x", "mi", "get_statistics", "no_such_stat"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=home,
        env=dict(os.environ, HOME=home, NO_COLOR="1"), stdin=subprocess.DEVNULL)
    assert "Statistics Not Found" in proc.stdout + proc.stderr


@pytest.fixture
def peer(tmp_path) -> Any:
    from bench.gateway_harness import PeerProcess

    p = PeerProcess(str(tmp_path))
    yield p
    p.close()


def test_msrp_and_gateway_statistics_follow_a_session_both_ways(msrpgw, udp, peer,
                                                                 tmp_path) -> None:
    """Default route: our MESSAGE opens a session to the MSRP peer (its body goes out as a
    SEND), the peer SENDs back and the gateway pages that to us; we answer 200."""
    require_tool("opensips-cli")
    home = str(tmp_path)
    gw = msrpgw.start()
    my_port = udp.getsockname()[1]
    body = b"to the session"
    msg = (
        f"MESSAGE sip:bob@127.0.0.1:{peer.sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{my_port};branch=z9hG4bKstats2;rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@127.0.0.1:{my_port}>;tag=a2\r\n"
        f"To: <sip:bob@127.0.0.1:{peer.sip_port}>\r\n"
        "Call-ID: stats-2@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    udp.sendto(msg, ("127.0.0.1", gw.sip_port))
    assert recv_until(udp, "SIP/2.0 ").startswith("SIP/2.0 202")
    sid = peer.expect("invite", has="sip:alice@")["sid"]
    assert peer.expect("message", sid=sid)["size"] == len(body)
    peer.send(cmd="send", sid=sid, ctype="text/plain", body="to the page")
    paged = recv_until(udp, "MESSAGE ")
    udp.sendto(refuse(paged, "200 OK"), ("127.0.0.1", gw.sip_port))
    assert peer.expect("send_result", sid=sid)["status"] == 200

    def settled() -> dict[str, int]:
        got: dict[str, int] = cli(gw, home, "get_statistics", "msrp:", "msrp_gateway:")
        return got

    stats = settled()
    deadline = time.monotonic() + SIP_TIMEOUT  # the 200 to the paged MESSAGE may be in flight
    while stats["msrp_gateway:messages_to_sip"] != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = settled()
    assert {k: stats[k] for k in (
        "msrp_gateway:active_sessions", "msrp_gateway:sessions_created",
        "msrp_gateway:messages_to_msrp", "msrp_gateway:messages_to_sip",
        "msrp_gateway:messages_failed", "msrp_gateway:sessions_setup_failed",
        "msrp:active_sessions", "msrp:failure_reports_sent")} == {
        "msrp_gateway:active_sessions": 1, "msrp_gateway:sessions_created": 1,
        "msrp_gateway:messages_to_msrp": 1, "msrp_gateway:messages_to_sip": 1,
        "msrp_gateway:messages_failed": 0, "msrp_gateway:sessions_setup_failed": 0,
        "msrp:active_sessions": 1, "msrp:failure_reports_sent": 0}
    # our body out (plus the binding SEND when the gateway is the active side); the
    # peer's body in (plus its binding SEND when it connected)
    assert 1 <= stats["msrp:sends_sent"] <= 2
    assert 1 <= stats["msrp:sends_received"] <= 2
    sip = cli(gw, home, "get_statistics", "tm:UAC_transactions", "tm:2xx_transactions")
    assert sip == {"tm:UAC_transactions": 2, "tm:2xx_transactions": 3}  # INVITE, MESSAGE
