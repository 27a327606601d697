"""Late offer and end-to-end REPORTs against the real `twistd -n msrpgw`, across processes.

- sipp calls the gateway with an INVITE without SDP (RFC 3264 s.4): the 200 must carry an
  MSRP offer (sipp checks it with regexp actions) and sipp answers in the ACK, pointing at an
  MSRP endpoint this test runs on a plain socket. The gateway (active: sipp answered
  setup:passive) connects and binds; the endpoint's SEND becomes a SIP MESSAGE to the
  INVITE's R-URI, a UDP socket standing in for the phone, whose reply MESSAGE comes back
  as a SEND on the same session. An ACK without an answer makes
  the gateway hang up with BYE. dumpcap records it all and tshark must find the 200's SDP
  well formed, with the MSRP media line and path the endpoint was bound from.
- With ``[msrp_gateway] delivery = "end_to_end"``, tests/interop/msrp_peer.py (another
  process) sends with Success-Report: yes; its success REPORT comes only after the phone
  answers the MESSAGE 200, and a 486 brings a failure REPORT instead.
Every wait is bounded (30 s); tools missing: skip locally, fail under CI (CI=true).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.gateway_harness import Capture, PeerProcess, SippProcess
from bench.ports import free_port
from msrp_gateway.msrp.message import (
    FrameParser,
    Limits,
    MSRPParseError,
    MSRPRequest,
    MSRPResponse,
)
from tests.interop.conftest import GatewayProcess, require_tool

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).parent / "sipp_ua"
WAIT = 30.0  # a bound, never waited out when things work
MAX_DATAGRAM = 65535


# -- the page-mode phone: a UDP socket answering what the gateway sends ----------------------


class Phone:
    """A SIP UDP endpoint on a port from the OS: hands each new request to the test, which
    answers it when it chooses (retransmissions of one already seen are skipped)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.port: int = self.sock.getsockname()[1]
        self.seen: set[tuple[str, str]] = set()

    def next_request(self, timeout: float = WAIT) -> tuple[str, tuple[str, int]]:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the phone got no new SIP request within {timeout} s")
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            raw = data.decode("utf-8", "replace")
            if raw.startswith("SIP/2.0"):
                continue  # not a request
            ident = (header(raw, "Call-ID") or "", header(raw, "CSeq") or "")
            if ident in self.seen:
                continue  # a retransmission of a request the test has
            self.seen.add(ident)
            return raw, addr

    def message(self, to_uri: str, from_uri: str, dest: tuple[str, int], body: str,
                timeout: float = WAIT) -> int:
        """A MESSAGE out of dialog to `dest`; returns the final status (retransmitted every
        0.5 s over UDP, RFC 3261 Timer E, until a response comes or `timeout`)."""
        call_id = secrets.token_hex(8) + "@phone"
        raw = (f"MESSAGE {to_uri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {HOST}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
               f"From: <{from_uri}>;tag={secrets.token_hex(4)}\r\nTo: <{to_uri}>\r\n"
               f"Call-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n"
               f"Content-Type: text/plain\r\nContent-Length: {len(body.encode())}\r\n\r\n"
               f"{body}").encode()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.sendto(raw, dest)
            self.sock.settimeout(0.5)
            try:
                data, _ = self.sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            text = data.decode("utf-8", "replace")
            if text.startswith("SIP/2.0 ") and header(text, "Call-ID") == call_id:
                status = int(text.split(" ", 2)[1])
                if status >= 200:
                    return status
        raise TimeoutError(f"no final response to the phone's MESSAGE within {timeout} s")

    def answer(self, raw: str, addr: tuple[str, int], code: int, reason: str) -> None:
        """The final response to `raw`, to where it came from (rport-style)."""
        lines = [f"SIP/2.0 {code} {reason}"]
        head = raw.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        for line in head:
            name = line.split(":", 1)[0].strip().lower()
            if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                lines.append(line)
            elif name in ("to", "t"):
                lines.append(line if ";tag=" in line else line + f";tag={secrets.token_hex(4)}")
        lines.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)

    def close(self) -> None:
        self.sock.close()


def header(raw: str, name: str) -> str | None:
    head = raw.split("\r\n\r\n", 1)[0]
    m = re.search(rf"^{re.escape(name)}\s*:\s*(.*)$", head, re.IGNORECASE | re.MULTILINE)
    return m.group(1).strip() if m else None


def body_of(raw: str) -> str:
    return raw.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in raw else ""


# -- the session-mode side for the late-offer test: MSRP on a plain socket -------------------


class MSRPEndpoint:
    """One MSRP session on a listening TCP socket (port from the OS): accepts the gateway's
    connection, answers its SENDs 200 and sends SENDs of its own. Frames are read with the
    project's parser; what is written is plain RFC 4975 text."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((HOST, 0))
        self.listener.listen(1)
        self.port: int = self.listener.getsockname()[1]
        self.uri = f"msrp://{HOST}:{self.port}/{secrets.token_hex(8)};tcp"
        self.conn: socket.socket | None = None
        self.parser = FrameParser(Limits())
        self.frames: list[MSRPRequest | MSRPResponse] = []

    def accept(self, timeout: float = WAIT) -> None:
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()

    def next_frame(self, timeout: float = WAIT) -> MSRPRequest | MSRPResponse:
        assert self.conn is not None, "not connected"
        end = time.monotonic() + timeout
        while not self.frames:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no MSRP frame within {timeout} s")
            self.conn.settimeout(left)
            try:
                data = self.conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise ConnectionError("the gateway closed the MSRP connection")
            for ev in self.parser.feed(data):
                if isinstance(ev, MSRPParseError):
                    pytest.fail(f"the gateway sent a malformed MSRP frame: {ev.reason}")
                self.frames.append(ev)
        return self.frames.pop(0)

    def answer_ok(self, req: MSRPRequest) -> None:
        assert self.conn is not None
        self.conn.sendall((f"MSRP {req.transaction_id} 200 OK\r\n"
                           f"To-Path: {req.from_path[0]}\r\nFrom-Path: {self.uri}\r\n"
                           f"-------{req.transaction_id}$\r\n").encode())

    def send(self, to_path: str, body: bytes) -> str:
        """A whole-message SEND; returns its Message-ID."""
        assert self.conn is not None
        tid, mid = secrets.token_hex(6), secrets.token_hex(8)
        n = len(body)
        self.conn.sendall((f"MSRP {tid} SEND\r\nTo-Path: {to_path}\r\nFrom-Path: {self.uri}\r\n"
                           f"Message-ID: {mid}\r\nByte-Range: 1-{n}/{n}\r\n"
                           f"Content-Type: text/plain\r\n\r\n").encode()
                          + body + f"\r\n-------{tid}$\r\n".encode())
        return tid

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


# -- helpers ---------------------------------------------------------------------------------


def mi(gw: GatewayProcess, method: str, params: Any = None) -> Any:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    req = urllib.request.Request(gw.mi_url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        return json.loads(r.read())


def wait_until(check: Any, what: str, timeout: float = WAIT) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def start_capture(tmp_path: Path, ports: list[int]) -> Capture:
    require_tool("dumpcap")
    require_tool("tshark")
    cap = Capture(str(tmp_path), ports)
    if cap.error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"dumpcap could not capture: {cap.error}")
        pytest.skip(f"dumpcap could not capture: {cap.error}")
    return cap


def sipp_call(tmp_path: Path, scenario: str, gw: GatewayProcess, port: int,
              **keys: Any) -> SippProcess:
    require_tool("sipp")
    return SippProcess(str(tmp_path), str(SCENARIOS / scenario), f"{HOST}:{gw.sip_port}",
                       "-m", "1", "-timeout", str(int(WAIT)), "-timeout_error", keys=keys,
                       port=port, name=scenario.split(".")[0])


def no_malformed(cap: Capture, sip_ports: list[int], msrp_ports: list[int]) -> None:
    bad = cap.tshark(sip_ports, msrp_ports, "frame.number", "_ws.col.Info",
                     display="_ws.malformed || _ws.expert.severity == error")
    assert bad.strip() == "", "tshark found malformed frames:\n" + bad


SDP_FIELDS = ("sdp.version", "sdp.owner.username", "sdp.connection_info.address",
              "sdp.media.media", "sdp.media.port", "sdp.media.proto", "sdp.media.format",
              "sdp.media_attr")


def sdp_of_200(cap: Capture, sip_ports: list[int]) -> dict[str, str]:
    """The SDP of the INVITE's 200 as tshark's SDP dissector reads it (the same in each
    retransmission of that 200, if the ACK was slow)."""
    out = cap.tshark(sip_ports, [], *SDP_FIELDS,
                     display='sip.Status-Code == 200 && sip.CSeq.method == "INVITE"')
    seen = [dict(zip(SDP_FIELDS, line.split("\t"))) for line in out.splitlines()
            if line.strip()]
    assert seen, "no 200 to the INVITE in the capture"
    assert all(one == seen[0] for one in seen), seen
    return seen[0]


def check_offer(sdp: dict[str, str], gw: GatewayProcess) -> list[str]:
    """Our late offer as tshark decoded it: v=0, c= and one MSRP m= line on the gateway's
    MSRP port; returns its a= attributes."""
    assert sdp["sdp.version"] == "0", sdp
    assert sdp["sdp.connection_info.address"] == HOST, sdp
    assert (sdp["sdp.media.media"], sdp["sdp.media.port"], sdp["sdp.media.proto"],
            sdp["sdp.media.format"]) == ("message", str(gw.msrp_port), "TCP/MSRP", "*"), sdp
    attrs = sdp["sdp.media_attr"].split(",")
    assert "accept-types:text/plain" in attrs and "setup:actpass" in attrs, attrs
    return attrs


@pytest.fixture
def phone() -> Iterator[Phone]:
    p = Phone()
    yield p
    p.close()


@pytest.fixture
def endpoint() -> Iterator[MSRPEndpoint]:
    e = MSRPEndpoint()
    yield e
    e.close()


# -- 1. late offer ---------------------------------------------------------------------------


def test_late_offer_invite_gets_offer_in_200_answer_in_ack_and_a_send_becomes_a_message(
        msrpgw, tmp_path, phone, endpoint):
    require_tool("sipp")
    gw = msrpgw.start()
    sipp_port = free_port(HOST)
    cap = start_capture(tmp_path, [gw.sip_port, gw.msrp_port, sipp_port, phone.port,
                                   endpoint.port])
    sipp = sipp_call(tmp_path, "uac_late_offer.xml", gw, sipp_port, phone_port=phone.port,
                     msrp_port=endpoint.port, msrp_path=endpoint.uri)
    # the gateway took the answer from the ACK: it connects to the path given there and binds
    endpoint.accept()
    bind = endpoint.next_frame()
    assert isinstance(bind, MSRPRequest) and bind.method == "SEND", bind
    assert bind.to_path == [endpoint.uri]
    gw_path = bind.from_path[-1]
    endpoint.answer_ok(bind)
    [sess] = wait_until(lambda: [s for s in mi(gw, "msrp_gw_list_sessions")["result"]
                                 if s["msrp_ua_session_id"]], "session up in the MI")
    assert sess["key"] == "sip:sipp@127.0.0.1-sip:phone@127.0.0.1", sess
    assert sess["msg_side_ruri"] == f"sip:phone@127.0.0.1:{phone.port}", sess

    # MSRP -> SIP: the endpoint's SEND becomes a MESSAGE to the INVITE's R-URI
    tid = endpoint.send(gw_path, b"hello from the late-offer caller")
    ok = endpoint.next_frame()
    assert isinstance(ok, MSRPResponse) and ok.transaction_id == tid and ok.status == 200, ok
    raw, addr = phone.next_request()
    assert raw.startswith(f"MESSAGE sip:phone@127.0.0.1:{phone.port} SIP/2.0\r\n"), raw[:200]
    assert body_of(raw) == "hello from the late-offer caller"
    assert "sip:sipp@127.0.0.1" in (header(raw, "From") or "")
    assert "sip:phone@127.0.0.1" in (header(raw, "To") or "")
    phone.answer(raw, addr, 200, "OK")

    # SIP -> MSRP: the phone's reply (From/To swapped) finds the same session by its key
    assert phone.message(f"sip:sipp@{HOST}:{sipp_port}", f"sip:phone@{HOST}:{phone.port}",
                         (HOST, gw.sip_port), "hello back from the phone") == 202
    send = endpoint.next_frame()
    assert isinstance(send, MSRPRequest) and send.method == "SEND", send
    assert send.body == b"hello back from the phone" and send.to_path == [endpoint.uri]
    assert send.content_type == "text/plain"
    endpoint.answer_ok(send)
    assert len(mi(gw, "msrp_gw_list_sessions")["result"]) == 1  # no second session

    # the operator ends it: sipp gets the BYE and answers it (its exit status says all went
    # as the scenario demands, offer checks included)
    assert mi(gw, "msrp_gw_end_session", {"key": sess["key"]})["result"] == "OK"
    assert sipp.wait(WAIT + 30) == 0, sipp.errors()
    cap.stop()

    sip_ports = [gw.sip_port, sipp_port, phone.port]
    no_malformed(cap, sip_ports, [gw.msrp_port, endpoint.port])
    offer = sdp_of_200(cap, sip_ports)
    assert f"path:{gw_path}" in check_offer(offer, gw)  # the path the gateway bound from
    acks = cap.tshark(sip_ports, [], "sdp.media_attr", display='sip.Method == "ACK"')
    assert f"path:{endpoint.uri}" in acks, acks  # the answer went in the ACK


def test_late_offer_ack_without_answer_gets_bye(msrpgw, tmp_path, phone, endpoint):
    require_tool("sipp")
    gw = msrpgw.start()
    sipp_port = free_port(HOST)
    cap = start_capture(tmp_path, [gw.sip_port, gw.msrp_port, sipp_port, phone.port])
    sipp = sipp_call(tmp_path, "uac_late_offer_no_answer.xml", gw, sipp_port,
                     phone_port=phone.port)
    assert sipp.wait(WAIT + 30) == 0, sipp.errors()  # it got the offer, then the BYE
    wait_until(lambda: mi(gw, "msrp_gw_list_sessions")["result"] == [], "session gone")
    wait_until(lambda: "unusable SDP answer in the ACK" in gw.log_text(), "log of why")
    cap.stop()
    sip_ports = [gw.sip_port, sipp.port, phone.port]
    no_malformed(cap, sip_ports, [gw.msrp_port])
    offer = sdp_of_200(cap, sip_ports)
    assert any(a.startswith(f"path:msrp://{HOST}:{gw.msrp_port}/") for a in check_offer(offer, gw))
    byes = cap.tshark(sip_ports, [], "ip.src", "udp.srcport", display='sip.Method == "BYE"')
    assert byes.split()[:2] == [HOST, str(gw.sip_port)], byes  # the gateway hung up
    # nothing reached the MSRP endpoint or the phone
    endpoint.listener.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        endpoint.listener.accept()
    phone.sock.settimeout(0.0)
    with pytest.raises(BlockingIOError):
        phone.sock.recvfrom(MAX_DATAGRAM)


# -- 2. end-to-end REPORTs across processes ---------------------------------------------------


@pytest.fixture
def e2e(msrpgw, tmp_path, phone):
    gw = msrpgw.start(config={"msrp_gateway": {"delivery": "end_to_end"}})
    peer = PeerProcess(str(tmp_path), proxy=f"sip:{HOST}:{gw.sip_port};lr")
    try:
        yield gw, peer, phone
    finally:
        peer.close()


def peer_session(peer: PeerProcess, phone: Phone) -> str:
    """The peer's INVITE through the gateway to the phone's user; the session id once up."""
    to = f"sip:phone@{HOST}:{phone.port}"
    peer.send(cmd="invite", **{"from": f"sip:alice@{HOST}:{peer.sip_port}", "to": to,
                               "ruri": to})
    sid = peer.expect("started")["sid"]
    peer.expect("established", sid=sid)
    return sid


def no_report_yet(gw: GatewayProcess, peer: PeerProcess) -> list[dict[str, Any]]:
    """Reports the peer has printed so far, after a round trip through the gateway (what it
    wrote on the MSRP connection before its MI answer is in the peer's socket by then) and
    two through the peer (the first may be read in the same reactor turn as those bytes;
    the second is read in a later one, after any REPORT they held was printed)."""
    mi(gw, "msrp_gw_list_sessions")
    for _ in range(2):
        peer.send(cmd="stats")
        peer.expect("stats")
    return peer.drain("report")


def test_end_to_end_success_report_waits_for_the_phones_200(e2e, tmp_path):
    gw, peer, phone = e2e
    cap = start_capture(tmp_path, [gw.sip_port, gw.msrp_port, peer.sip_port, peer.msrp_port,
                                   phone.port])
    sid = peer_session(peer, phone)
    peer.send(cmd="send", sid=sid, body="delivered?", success_report="yes")
    assert peer.expect("send_result", sid=sid)["status"] == 200  # hop by hop, at once
    raw, addr = phone.next_request()
    assert raw.startswith("MESSAGE ") and body_of(raw) == "delivered?", raw[:300]
    assert no_report_yet(gw, peer) == []  # the phone has not answered: no REPORT yet
    phone.answer(raw, addr, 200, "OK")
    report = peer.expect("report", sid=sid)
    assert report["status"].startswith("000 200"), report
    assert report["byte_range"] == "1-10/10", report
    assert report["message_id"], report

    # a second message the phone refuses: a failure REPORT, never a success one
    peer.send(cmd="send", sid=sid, body="refused", success_report="yes")
    assert peer.expect("send_result", sid=sid)["status"] == 200
    raw, addr = phone.next_request()
    assert body_of(raw) == "refused"
    assert no_report_yet(gw, peer) == []
    phone.answer(raw, addr, 486, "Busy Here")
    failure = peer.expect("report", sid=sid)
    assert failure["status"].startswith("000 400"), failure  # 486 has no MSRP twin: 400
    assert "486" in failure["status"], failure
    assert failure["byte_range"] == "1-7/7", failure
    assert failure["message_id"] and failure["message_id"] != report["message_id"], failure
    assert no_report_yet(gw, peer) == []  # and nothing after it

    peer.send(cmd="bye", sid=sid)
    peer.expect("ended", sid=sid)
    cap.stop()
    sip_ports = [gw.sip_port, peer.sip_port, phone.port]
    msrp_ports = [gw.msrp_port, peer.msrp_port]
    no_malformed(cap, sip_ports, msrp_ports)
    # each REPORT names the Message-ID of the SEND it reports on, as the wire shows
    sends = cap.tshark(sip_ports, msrp_ports, "msrp.messageid", "msrp.success.report",
                       display='msrp.method == "SEND" && msrp.byte.range')
    reports = cap.tshark(sip_ports, msrp_ports, "msrp.messageid", "msrp.status",
                         display='msrp.method == "REPORT"')
    send_ids = {line.split("\t")[0] for line in sends.splitlines()
                if line.endswith("\tyes")}
    assert {report["message_id"], failure["message_id"]} <= send_ids, (sends, reports)
    assert len(reports.splitlines()) == 2, reports
