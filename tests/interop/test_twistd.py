"""``twistd -n msrpgw`` as users run it: starts on free ports, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import REPO, TWISTD


def twistd(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TWISTD, *args], cwd=REPO, timeout=timeout,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_help_lists_the_options():
    out = twistd("msrpgw", "--help")
    assert out.returncode == 0
    for option in ("--config=", "--log-level=", "--version"):
        assert option in out.stdout


def test_twistd_lists_the_plugin():
    assert "msrpgw" in twistd("--help").stdout


def test_bad_config_stops_start_up_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[msrp_gateway]\nsession_timeout = 10\nmessage_timeout = 20\n")
    out = twistd("-n", "--pidfile=", "msrpgw", "--config", str(bad))
    assert out.returncode == 1
    assert out.stderr == (f"msrpgw: configuration error: {bad}: [msrp_gateway] session_timeout:"
                          " expected a value >= message_timeout (20), as in OpenSIPS, found 10\n")


def test_taken_port_stops_start_up_with_one_line(msrpgw):
    gw = msrpgw.prepare()
    holder = socket.socket()
    holder.bind(("127.0.0.1", gw.mi_port))
    holder.listen(1)
    try:
        out = twistd("-n", "--pidfile=", "msrpgw", "--config", str(gw.config_path))
    finally:
        holder.close()
    assert out.returncode == 1
    said = out.stdout + out.stderr
    assert f"msrpgw: cannot listen on mi:http:127.0.0.1:{gw.mi_port}: " in said
    assert "Traceback" not in said


def mi_call(url: str, method: str, params=None):
    body = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_starts_serves_mi_and_stops_on_sigterm(msrpgw):
    gw = msrpgw.start()
    answer = mi_call(gw.mi_url, "which")
    assert answer["jsonrpc"] == "2.0" and "uptime" in answer["result"]
    log = gw.log_text()
    assert f"listening on msrp:127.0.0.1:{gw.msrp_port}" in log
    assert f"listening on mi:http:127.0.0.1:{gw.mi_port}" in log
    began = time.monotonic()
    status = gw.stop()
    elapsed = time.monotonic() - began
    assert status in (0, -15), gw.log_text()[-2000:]
    assert elapsed < 15.0  # stop_timeout (5 s) has nothing to wait for; room for a slow CI
    assert "msrpgw stopped" in gw.log_text()
    # the port is free again (SO_REUSEADDR as a restarted server would: the MI connection
    # above leaves a TIME_WAIT behind)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", gw.mi_port))
        s.listen(1)


def test_log_level_option_filters_lines(msrpgw):
    gw = msrpgw.start(log_level="warn")
    mi_call(gw.mi_url, "uptime")
    gw.stop()
    log = gw.log_text()
    assert "msrpgw started" not in log  # info, filtered out
    assert "#info]" not in log.split("\n", 2)[-1]


def udp_exchange(port: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Send a request to the gateway over UDP and return the first answer; resent every
    second as a UDP client does (Timer E; the server transaction absorbs the copies), so a
    datagram dropped by a busy machine does not fail the test."""
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(1.0)
        while True:
            s.sendto(request, ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(65535)
                return data
            except TimeoutError:  # socket.timeout
                if time.monotonic() > end:
                    raise TimeoutError(f"no answer from 127.0.0.1:{port} in {timeout} s")


def options_request(port: int, branch: str) -> bytes:
    return (
        f"OPTIONS sip:gw@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:tester@127.0.0.1>;tag=t1\r\n"
        f"To: <sip:gw@127.0.0.1:{port}>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_answers_options_over_udp(msrpgw):
    gw = msrpgw.start()
    branch = secrets.token_hex(8)
    data = udp_exchange(gw.sip_port, options_request(gw.sip_port, branch))
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line == b"SIP/2.0 200 OK"
    assert f"branch=z9hG4bK{branch}".encode() in rest
    assert b"CSeq: 1 OPTIONS" in rest
    assert gw.stop() in (0, -15)


ANSWER_200 = '''
def route(req, gw):
    if req.method == "MESSAGE":
        req.reply(200, "Routed By Script")
    else:
        req.reply(405)
'''


def message_to(port: int, branch: str) -> bytes:
    return (
        f"MESSAGE sip:bob@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        f"To: <sip:bob@127.0.0.1:{port}>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\n"
        "CSeq: 7 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\nhello"
    ).encode()


def test_configured_routing_script_answers_message(msrpgw):
    gw = msrpgw.start(routing_script=ANSWER_200)
    data = udp_exchange(gw.sip_port, message_to(gw.sip_port, secrets.token_hex(8)))
    assert data.startswith(b"SIP/2.0 200 Routed By Script\r\n")
    assert b"CSeq: 7 MESSAGE" in data
    assert "routing script" in gw.log_text()
    assert gw.stop() in (0, -15)


GC_REPORT = '''
import gc

def route(req, gw):
    t = gc.get_threshold()
    req.reply(200, f"gc {t[0]} {t[1]} {t[2]} frozen {gc.get_freeze_count() > 0}")
'''


@pytest.mark.parametrize("process, expected", [
    ({}, b"SIP/2.0 200 gc 50000 20 1000 frozen True"),
    ({"gc_freeze": False, "gc_thresholds": []}, b"SIP/2.0 200 gc 700 10 10 frozen False"),
])
def test_the_running_gateway_has_the_process_gc_settings(msrpgw, process, expected):
    """[process] reaches the real twistd process (default on; an operator can turn it off);
    the routing script reports the collector's state from inside it."""
    gw = msrpgw.start(config={"process": process} if process else None,
                      routing_script=GC_REPORT)
    answer = udp_exchange(gw.sip_port, message_to(gw.sip_port, secrets.token_hex(8)))
    assert answer.partition(b"\r\n")[0] == expected
    assert gw.stop() in (0, -15)
