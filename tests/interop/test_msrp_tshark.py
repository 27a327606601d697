"""tshark (Wireshark's MSRP dissector) reads our TCP traffic with no malformed MSRP.

Two stacks talk over real loopback TCP; every byte each side receives is recorded and
written as a pcap (Ethernet/IPv4/TCP with a handshake; each MSRP frame starts a segment,
long ones continue in 1448-byte segments), which tshark reads with `-d tcp.port==N,msrp`.
Frames start segments because Wireshark's MSRP dissector (4.0) reassembles a frame only
when it begins a segment; the bytes themselves are exactly what crossed the socket. Skipped when tshark is
missing locally; under CI (`CI=true`) a missing tshark is a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Protocol

from msrp_gateway.msrp.message import FrameParser, MSRPRequest
from msrp_gateway.msrp.transport import MSRPProtocol, MSRPStack

TIMEOUT = 30.0  # a bound, never waited out when things work: room for a slow CI
MSS = 1448


def need_tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is required under CI (install the tshark package)")
        pytest.skip("tshark not installed: install it to check our MSRP with Wireshark")
    return path


class Recorder:
    """Bytes as received, per direction ((src, sport), (dst, dport)), in arrival order."""

    def __init__(self) -> None:
        self.events: list[tuple[tuple[int, int], bytes]] = []

    def install(self, monkeypatch) -> None:
        original = MSRPProtocol.dataReceived
        events = self.events

        def recording(proto: MSRPProtocol, data: bytes) -> None:
            peer, host = proto.transport.getPeer(), proto.transport.getHost()
            events.append(((peer.port, host.port), data))
            original(proto, data)

        monkeypatch.setattr(MSRPProtocol, "dataReceived", recording)


class RawSender(Protocol):
    def __init__(self) -> None:
        self.got = FrameParser()
        self.frames: list = []
        self.first: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.frames.extend(self.got.feed(data))
        if self.frames and not self.first.called:
            self.first.callback(self.frames)

    def connectionLost(self, reason=None) -> None:
        self.lost.callback(None)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def split_frames(data: bytes) -> list[bytes]:
    """Cut a recorded stream at MSRP frame ends (`-------<tid><flag>CRLF`), bytes unchanged."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        line_end = data.index(b"\r\n", pos)
        tid = data[pos:line_end].split(b" ")[1]
        end = -1
        for flag in (b"$", b"+", b"#"):
            i = data.find(b"\r\n-------" + tid + flag + b"\r\n", line_end)
            if i >= 0 and (end < 0 or i < end):
                end = i
        stop = end + len(b"\r\n-------") + len(tid) + 3
        out.append(data[pos:stop])
        pos = stop
    return out


def write_pcap(path, events) -> None:
    """Ethernet/IPv4/TCP packets for the recorded streams (127.0.0.1 both ends)."""
    ip = bytes([127, 0, 0, 1])
    seq: dict[tuple[int, int], int] = {}
    packets: list[bytes] = []

    def packet(sport: int, dport: int, flags: int, payload: bytes = b"") -> None:
        key, back = (sport, dport), (dport, sport)
        s = seq.setdefault(key, 1000 + sport)
        a = seq.setdefault(back, 1000 + dport)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, s, a, 5 << 4, flags, 65535, 0, 0)
        pseudo = ip + ip + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        csum = _checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        total = 20 + len(tcp) + len(payload)
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, len(packets) & 0xFFFF, 0x4000,
                          64, 6, 0, ip, ip)
        iph = iph[:10] + struct.pack("!H", _checksum(iph)) + iph[12:]
        eth = b"\0" * 12 + b"\x08\x00"
        packets.append(eth + iph + tcp + payload)
        seq[key] = s + len(payload) + (1 if flags & 0x03 else 0)

    started: set[frozenset] = set()
    for (sport, dport), data in events:
        conn = frozenset((sport, dport))
        if conn not in started:
            started.add(conn)
            packet(sport, dport, 0x02)          # SYN
            packet(dport, sport, 0x12)          # SYN-ACK
            packet(sport, dport, 0x10)          # ACK
        for frame in split_frames(data):
            for off in range(0, len(frame), MSS):
                packet(sport, dport, 0x18, frame[off:off + MSS])  # PSH-ACK
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, pkt in enumerate(packets):
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000,
                                len(pkt), len(pkt)))
            f.write(pkt)


async def exchange(recorder: Recorder) -> int:
    """A typical session over TCP; returns the passive side's port."""
    a = MSRPStack(reactor)
    b = MSRPStack(reactor)
    try:
        a.listen("msrp:127.0.0.1:0")
        port = b.listen("msrp:127.0.0.1:0").getHost().port
        sa = a.create_session(["text/plain"])
        sb = b.create_session(["text/plain", "message/cpim"])
        sa.set_remote_path([sb.local_uri])
        sb.set_remote_path([sa.local_uri])
        got: list = []
        sb.on_message = got.append
        reports: defer.Deferred = defer.Deferred()
        sa.on_report = reports.callback
        bound = sb.wait_bound(TIMEOUT)
        await sa.connect()
        await bound
        await sa.send("text/plain", "hello, wörld".encode())
        text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\r\n"
                       for i in range(2000)).encode()
        await sa.send("text/plain", text, success_report="yes")
        await reports.addTimeout(TIMEOUT, reactor)
        sa.send("text/plain", b"quiet", failure_report="no")
        await sb.send("text/plain", b"answer")
        with pytest.raises(Exception):
            await sa.send("image/png", b"\x89PNG not accepted")
        # A request for a session that does not exist, from a bare peer: 481.
        ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=TIMEOUT)
        raw = await endpoints.connectProtocol(ep, RawSender())
        raw.transport.write(MSRPRequest(
            "rawtx001", "SEND",
            [("To-Path", f"msrp://127.0.0.1:{port}/nosuchsession;tcp"),
             ("From-Path", "msrp://127.0.0.1:9/raw1;tcp"), ("Message-ID", "rawmsg1"),
             ("Byte-Range", "1-2/2"), ("Content-Type", "text/plain")], b"hi").to_bytes())
        frames = await raw.first.addTimeout(TIMEOUT, reactor)
        assert frames[0].status == 481
        raw.transport.loseConnection()
        await raw.lost
        assert len(got) >= 2
        return port
    finally:
        await defer.gatherResults([a.stop(), b.stop()])


@pytest_twisted.ensureDeferred
async def test_tshark_finds_no_malformed_msrp_in_tcp_capture(tmp_path, monkeypatch):
    tshark = need_tshark()
    recorder = Recorder()
    recorder.install(monkeypatch)
    port = await exchange(recorder)
    pcap = tmp_path / "msrp.pcap"
    streams_in_order: dict[tuple[int, int], bytearray] = {}
    for key, data in recorder.events:
        streams_in_order.setdefault(key, bytearray()).extend(data)
    write_pcap(pcap, [(k, bytes(v)) for k, v in streams_in_order.items()])

    # What we sent: every transaction id on the wire, parsed back per direction.
    expected: set[str] = set()
    streams: dict[tuple[int, int], FrameParser] = {}
    for key, data in recorder.events:
        parser = streams.setdefault(key, FrameParser())
        expected.update(f.transaction_id for f in parser.feed(data))
    assert len(expected) > 50  # the 110 kB message went as many chunks

    decode = ["-d", f"tcp.port=={port},msrp", "-o", "tcp.check_checksum:TRUE"]
    malformed = subprocess.run(
        [tshark, "-n", "-r", str(pcap), *decode, "-Y", "_ws.malformed || tcp.checksum_bad.expert || msrp.status.code.invalid",
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, timeout=60)
    assert malformed.returncode == 0, malformed.stderr
    assert malformed.stdout.strip() == "", "malformed frames: " + malformed.stdout[:500]

    seen = subprocess.run(
        [tshark, "-n", "-r", str(pcap), *decode, "-Y", "msrp",
         "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
         "-e", "msrp.transaction.id"],
        capture_output=True, text=True, timeout=60)
    assert seen.returncode == 0, seen.stderr
    decoded = {t for line in seen.stdout.split() for t in line.split(",") if t}
    assert decoded == expected
