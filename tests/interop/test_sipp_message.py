"""sipp against ``twistd -n msrpgw``: 1,000 MESSAGEs over UDP, TCP, and UDP with packet loss
(which must show retransmissions: sipp's count, and MESSAGEs the gateway saw twice);
INVITE/200/ACK/BYE dialogs over UDP and TCP.

The routing script answers MESSAGE 200 and writes each request's Call-ID to a file, so the
test can tell that it ran exactly once per transaction (retransmissions absorbed by the
server transaction). tshark captures the gateway's SIP port on lo and must find the SIP
traffic and nothing malformed. Missing sipp/tshark: skip locally, fail under CI=true.
"""

from __future__ import annotations

import csv
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .conftest import require_tool

SCENARIO = Path(__file__).parent / "sipp" / "uac_message.xml"
CALLS = 1000
RATE = 500  # calls per second: the run takes ~2 s; the benchmark goes higher
SIPP_TIMEOUT = 120


ROUTE = """
def route(req, gw):
    if req.method == "MESSAGE":
        with open({path!r}, "a") as f:
            f.write(f"{{req.call_id}} {{req.header('CSeq')}}\\n")
        req.reply(200, "OK")
    else:
        req.reply(405)
"""


class Capture:
    """The harness's dumpcap capture of one port on lo (proved live before the traffic and
    complete before it stops, by probe datagrams); ``frames()`` reads it back with tshark."""

    def __init__(self, tshark: str, workdir: Path, port: int) -> None:
        from bench.gateway_harness import Capture as Dumpcap

        require_tool("dumpcap")
        self.tshark, self.port = tshark, port
        self.dumpcap = Dumpcap(str(workdir), [port])
        if self.dumpcap.error:
            pytest.fail(f"dumpcap could not capture: {self.dumpcap.error}")
        self.pcap = Path(self.dumpcap.path)

    def stop(self) -> None:
        self.dumpcap.stop()

    def frames(self, display_filter: str) -> list[str]:
        return self.fields(display_filter, "frame.number", "_ws.col.Info")

    def fields(self, display_filter: str, *names: str) -> list[str]:
        """One line per matching frame: the named fields, tab-separated."""
        out = subprocess.run(
            [self.tshark, "-n", "-r", str(self.pcap), "-d", f"udp.port=={self.port},sip",
             "-d", f"tcp.port=={self.port},sip", "-Y", display_filter,
             "-T", "fields", *[arg for name in names for arg in ("-e", name)]],
            capture_output=True, timeout=120, check=True)
        return [line for line in out.stdout.decode(errors="replace").splitlines() if line.strip()]


def sipp_stats(path: Path) -> dict[str, str]:
    rows = list(csv.reader(path.open(), delimiter=";"))
    return dict(zip(rows[0], rows[-1]))


def run_sipp(sipp: str, workdir: Path, gw_port: int, transport: str, *extra: str) -> dict[str, str]:
    stats = workdir / f"stats-{transport}{'-'.join(extra)}.csv"
    args = [sipp, "-sf", str(SCENARIO), "-m", str(CALLS), "-r", str(RATE), "-rp", "1000",
            "-t", transport, "-i", "127.0.0.1", "-p", "0", f"127.0.0.1:{gw_port}",
            "-nostdin", "-timeout", str(SIPP_TIMEOUT), "-timeout_error",
            "-trace_stat", "-stf", str(stats), "-trace_err", *extra]
    done = subprocess.run(args, cwd=workdir, capture_output=True, timeout=SIPP_TIMEOUT + 30)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    return sipp_stats(stats)


def check_calls(calls_file: Path) -> None:
    lines = calls_file.read_text().splitlines()
    assert len(lines) == CALLS, f"route ran {len(lines)} times for {CALLS} transactions"
    assert len(set(lines)) == CALLS


@pytest.mark.parametrize("transport,extra", [
    ("u1", ()),
    ("t1", ()),
    ("u1", ("-lost", "10")),  # 10 % of UDP packets dropped by sipp, both directions
], ids=["udp", "tcp", "udp-lost"])
def test_sipp_1000_messages_all_answered_200_route_called_once_each(
        msrpgw, tmp_path, transport, extra):
    sipp, tshark = require_tool("sipp"), require_tool("tshark")
    calls = tmp_path / "calls.txt"
    gw = msrpgw.start(routing_script=ROUTE.format(path=str(calls)), log_level="warn")
    capture = Capture(tshark, tmp_path, gw.sip_port)
    try:
        stats = run_sipp(sipp, tmp_path, gw.sip_port, transport, *extra)
    finally:
        capture.stop()
    assert stats["SuccessfulCall(C)"] == str(CALLS)
    assert stats["FailedCall(C)"] == "0"
    assert stats["FailedUnexpectedMessage(C)"] == "0"
    if not extra:
        # Nothing is lost on lo, so sipp resends a MESSAGE only when its 200 took over 500 ms
        # (retrans="500"): a process descheduled that long on a loaded CI machine. A few are
        # fine (each is still routed once: check_calls); a gateway that drops requests
        # makes sipp resend many.
        assert int(stats["Retransmissions(C)"]) <= CALLS // 10, stats
    else:
        # the lossy run must really exercise absorption: sipp resent requests, and the
        # gateway received some MESSAGE twice (its 200 was lost) yet routed it only once
        assert int(stats["Retransmissions(C)"]) > 0, stats
        seen = Counter(capture.fields('sip.Method == "MESSAGE"', "sip.Call-ID"))
        assert sum(1 for n in seen.values() if n > 1) > 0, "no MESSAGE reached the gateway twice"
    check_calls(calls)
    assert capture.frames("_ws.malformed") == []
    # the capture saw the run and tshark dissected it as SIP (TCP may carry several
    # messages per frame, and the capture may drop a few frames under load)
    assert len(capture.frames("sip")) >= CALLS // 2
    assert gw.running


INVITE_ROUTE = """
def route(req, gw):
    with open({path!r}, "a") as f:
        f.write(f"{{req.method}} {{req.call_id}}\\n")
    if req.method == "INVITE":
        req.reply(200, "OK")
    else:
        req.reply(405)
"""
DIALOGS = 50


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_invite_200_ack_bye_dialogs_against_a_script_that_answers_invite(
        msrpgw, tmp_path, transport):
    """sipp's built-in UAC: INVITE, 200 from the route, ACK, BYE answered 200 by the dialog."""
    sipp, tshark = require_tool("sipp"), require_tool("tshark")
    calls = tmp_path / "calls.txt"
    gw = msrpgw.start(routing_script=INVITE_ROUTE.format(path=str(calls)), log_level="warn")
    capture = Capture(tshark, tmp_path, gw.sip_port)
    stats = tmp_path / "stats.csv"
    try:
        done = subprocess.run(
            [sipp, "-sn", "uac", "-m", str(DIALOGS), "-r", "25", "-d", "200", "-t", transport,
             "-i", "127.0.0.1", "-p", "0", f"127.0.0.1:{gw.sip_port}", "-nostdin",
             "-timeout", "60", "-timeout_error", "-trace_stat", "-stf", str(stats)],
            cwd=tmp_path, capture_output=True, timeout=90)
    finally:
        capture.stop()
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    st = sipp_stats(stats)
    assert (st["SuccessfulCall(C)"], st["FailedCall(C)"], st["FailedUnexpectedMessage(C)"]) == (
        str(DIALOGS), "0", "0")
    lines = calls.read_text().splitlines()
    # the route sees each initial INVITE once; ACK and BYE stay inside the dialog
    assert len(lines) == DIALOGS and all(line.startswith("INVITE ") for line in lines)
    assert len(set(lines)) == DIALOGS
    assert capture.frames("_ws.malformed") == []
    methods = " ".join(capture.frames("sip.Method == \"BYE\" || sip.Method == \"ACK\""))
    assert "BYE" in methods and "ACK" in methods


def page_a_udp_only_phone(tmp_path: Path, size: int, *, freeze: bool) -> str:
    """A session opened by an INVITE from the MSRP side, then a SEND of `size` bytes toward
    a phone (sipp) that listens on UDP only; with `freeze`, sipp is SIGSTOPped until the
    MESSAGE and a Timer E retransmission of it wait in its socket. Checks what the phone
    got and that the gateway took its 200 (no MESSAGE failed, even when stopped); returns
    the gateway's log."""
    require_tool("sipp")
    from bench.gateway_harness import (
        HOST,
        SIPP_MESSAGE_UAS,
        GatewayProcess,
        PeerProcess,
        SippProcess,
        body_of,
        header,
        wait_for,
        write_scenario,
    )
    from bench.ports import is_bound, udp_queued

    workdir = str(tmp_path)
    gw = GatewayProcess(workdir)  # listens on UDP and TCP: large requests try TCP
    gw.start()
    try:
        peer = PeerProcess(workdir, proxy=f"sip:{HOST}:{gw.sip_port};lr")
        try:
            scenario = write_scenario(workdir, "uas.xml",
                                      SIPP_MESSAGE_UAS.replace("[status] OK", "200 OK"))
            phone = SippProcess(workdir, scenario, "-m", "1", "-timeout", "60",
                                transport="u1", name="udp-only-phone")
            phone.wait_bound()  # traffic is aimed at it only once it listens (never on TCP)
            assert not is_bound(phone.port, "tcp")
            target = f"sip:bob@{HOST}:{phone.port}"
            peer.send(cmd="invite", **{"from": f"sip:alice@{HOST}", "to": target,
                                       "ruri": target})
            sid = peer.expect("started")["sid"]
            peer.expect("established", sid=sid)
            if freeze:
                phone.proc.send_signal(signal.SIGSTOP)
            try:
                peer.send(cmd="send", sid=sid, ctype="text/plain", size=size,
                          failure_report="yes")
                if freeze:  # the MESSAGE, then a retransmission, wait in sipp's socket
                    first = wait_for(lambda: udp_queued(phone.port), 30, "the MESSAGE")
                    wait_for(lambda: udp_queued(phone.port) > first, 30,
                             "a retransmission of the MESSAGE (Timer E)")
            finally:
                if freeze:
                    phone.proc.send_signal(signal.SIGCONT)
            assert phone.wait(60) == 0, phone.errors()
            # Over UDP the MESSAGE may reach sipp more than once (always with freeze; on a
            # loaded machine whenever sipp or the gateway is descheduled past T1, as CI saw
            # once): every copy must be the one UDP transaction, answered by sipp.
            got = phone.received("MESSAGE")
            assert len(phone.transactions("MESSAGE")) == 1, [m[:600] for m in got]
            assert len(got) >= (2 if freeze else 1)
            assert "SIP/2.0/UDP" in header(got[0], "Via")
            assert int(header(got[0], "Content-Length")) == size
            assert len(body_of(got[0]).encode()) == size
            # sipp's 200 (sent before it exited) is read by the gateway: its socket is empty
            wait_for(lambda: udp_queued(gw.sip_port) == 0, 30, "the gateway to read the 200")
            peer.send(cmd="bye", sid=sid)
            peer.expect("ended", sid=sid)
            assert peer.drain("report") == []  # no failure REPORT came back
        finally:
            peer.close()
    finally:
        # a MESSAGE still waiting for its answer would fail now, and be logged
        assert gw.stop() is not None
    log = gw.log()
    assert "MESSAGE failed" not in log, gw.log_tail()
    return log


def test_a_2000_byte_send_reaches_a_udp_only_phone_through_the_udp_fallback(tmp_path):
    """The audit's reproduction: the MESSAGE for a 2,000-byte SEND is over 1,300 bytes, so
    s.18.1.1 tries TCP first; the connection is refused and the request must be retried
    over UDP (it used to end as "MESSAGE failed: 503")."""
    log = page_a_udp_only_phone(tmp_path, 2000, freeze=False)
    assert "retrying over UDP" in log


def test_a_phone_frozen_past_t1_gets_the_message_retransmitted_and_its_late_200_counts(
        tmp_path):
    """A slow UDP phone: the gateway resends the MESSAGE (Timer E), the phone sees one
    transaction, and its 200 after the resend completes the MESSAGE (no failure REPORT,
    nothing failed). The same path, through the UDP fallback, as the 2,000-byte test."""
    log = page_a_udp_only_phone(tmp_path, 2000, freeze=True)
    assert "retrying over UDP" in log
