"""Processes for end-to-end tests and benchmarks of the gateway, all on loopback:
`twistd -n msrpgw` (GatewayProcess), the MSRP peer (PeerProcess, tests/interop/msrp_peer.py),
sipp on the page-mode side (sipp scenarios generated here), tshark captures and the MI.

Ports for the child processes come from bench.ports (below the ephemeral range, checked
free); a child's port is known bound (bench.ports.wait_bound) before traffic is aimed at it;
a capture is known live before traffic starts and known complete before it stops (probe
datagrams it must see); every wait is bounded, with room for a slow, loaded CI machine.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench.ports import free_port, wait_bound

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
PEER = os.path.join(ROOT, "tests", "interop", "msrp_peer.py")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail_of(path: str, limit: int = 4000) -> str:
    """The end of a child's stderr file. Children write stderr to files, never to pipes
    nobody reads while they run: a full pipe would block the child mid-test."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# -- the gateway ----------------------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


_CPROFILE_WRAPPER = """\
import cProfile, signal
_prof = [None]
def _toggle(signum, frame):
    if _prof[0] is None:
        _prof[0] = cProfile.Profile()
        _prof[0].enable()
    else:
        _prof[0].disable()
        _prof[0].dump_stats({path})
        _prof[0] = None
signal.signal(signal.SIGUSR2, _toggle)
"""


class GatewayProcess:
    """`twistd -n msrpgw --config FILE` in a subprocess with its own ports and log."""

    def __init__(self, workdir: str, **sections: dict[str, Any]) -> None:
        self.workdir = workdir
        self.sip_port = free_port(HOST)
        self.msrp_port = free_port(HOST, both=False)
        self.mi_port = free_port(HOST, both=False)
        config: dict[str, dict[str, Any]] = {
            "sip": {"socket": [f"udp:{HOST}:{self.sip_port}", f"tcp:{HOST}:{self.sip_port}"]},
            "msrp": {"socket": [f"msrp:{HOST}:{self.msrp_port}"],
                     "my_uri": f"msrp://{HOST}:{self.msrp_port};tcp"},
            "mi": {"http": f"{HOST}:{self.mi_port}"},
            "log": {"level": "info"},
        }
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        self.config_path = os.path.join(workdir, "msrpgw.toml")
        with open(self.config_path, "w") as f:
            for name, values in config.items():
                f.write(f"[{name}]\n")
                for k, v in values.items():
                    f.write(f"{k} = {toml_value(v)}\n")
        self.log_path = os.path.join(workdir, "msrpgw.log")
        self.stderr_path = os.path.join(workdir, "msrpgw.stderr")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, *, cprofile: str = "") -> GatewayProcess:
        """With `cprofile` a path, SIGUSR2 starts cProfile in the gateway and the next
        SIGUSR2 stops it and writes its stats there (`profile_toggle()`)."""
        # twistd from this interpreter, whichever venv it is in and whatever PATH says
        code = "from twisted.scripts.twistd import run; run()"
        if cprofile:
            code = _CPROFILE_WRAPPER.format(path=repr(cprofile)) + code
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code,
                 "-n", "--pidfile=", f"--logfile={self.log_path}", "msrpgw",
                 "--config", self.config_path],
                cwd=self.workdir, env=env(), stdout=subprocess.DEVNULL, stderr=err,
                stdin=subprocess.DEVNULL)

        def started() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"msrpgw exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}\nstderr: {tail_of(self.stderr_path)}")
            if "msrpgw started" in self.log():
                return True
            try:  # at log level warn the line is not written: the MI (started last) answers
                return "result" in self.mi("uptime", timeout=1.0)
            except OSError:
                return False

        wait_for(started, timeout, "msrpgw to start")
        return self

    def profile_toggle(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.pid)

    def rss_kib(self, peak: bool = False) -> int:
        key = "VmHWM:" if peak else "VmRSS:"
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
        return 0

    def mi(self, method: str, params: Any = None, timeout: float = 10.0) -> Any:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            body["params"] = params
        req = urllib.request.Request(f"http://{HOST}:{self.mi_port}/mi",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, as an operator stops it; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


# -- the MSRP peer --------------------------------------------------------------------------


class PeerProcess:
    """tests/interop/msrp_peer.py in a subprocess; events arrive on a queue."""

    def __init__(self, workdir: str, answer: str = "answer", types: str = "text/plain",
                 proxy: str | None = None) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log_path = os.path.join(workdir, f"peer-{id(self)}.log")
        self.stderr_path = os.path.join(workdir, f"peer-{id(self)}.stderr")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, PEER, "--host", HOST, "--answer", answer, "--types", types,
                 "--log", self.log_path] + (["--proxy", proxy] if proxy else []),
                cwd=workdir, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.expect("ready", timeout=60)
        self.sip_port: int = ready["sip_port"]
        self.msrp_port: int = ready["msrp_port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "garbage", "line": line.decode("utf-8", "replace")})
        self.events.put({"event": "exited"})

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float = 30.0, *, has: str | None = None,
               **match: Any) -> dict[str, Any]:
        """The next event of that name whose fields equal `match` and, with `has`, whose
        JSON contains that text (others are kept in `seen`)."""

        def fits(e: dict[str, Any]) -> bool:
            return (e.get("event") == event and all(e.get(k) == v for k, v in match.items())
                    and (has is None or has in json.dumps(e)))

        for e in self.seen:
            if fits(e):
                self.seen.remove(e)
                return e
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"peer: no {event} {match} within {timeout} s; "
                                   f"seen {self.seen[-10:]}; stderr {self.stderr_tail()}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e.get("event") == "exited":
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                raise RuntimeError(f"peer exited with {self.proc.returncode}; "
                                   f"stderr {self.stderr_tail()}")
            if fits(e):
                return e
            self.seen.append(e)

    def drain(self, event: str) -> list[dict[str, Any]]:
        """Every already-received event of that name, removed from `seen`."""
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                break
        got = [e for e in self.seen if e.get("event") == event]
        self.seen = [e for e in self.seen if e.get("event") != event]
        return got

    def stderr_tail(self, limit: int = 4000) -> str:
        """What the peer wrote to stderr so far."""
        return tail_of(self.stderr_path, limit)

    def close(self) -> str:
        """Quit (killed if it does not within 30 s); returns the peer's stderr."""
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        return tail_of(self.stderr_path, 1 << 20)


# -- sipp -----------------------------------------------------------------------------------

SIPP_MESSAGE_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="msrpgw MESSAGE sender">
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:[to_user]@127.0.0.1:[to_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[from_user]@127.0.0.1:[from_port]>;tag=[pid]-[call_number]
      To: <sip:[to_user]@127.0.0.1:[to_port]>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      [text] [call_number]
    ]]>
  </send>
  <recv response="202" rtd="true" />
</scenario>
"""

SIPP_MESSAGE_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="msrpgw MESSAGE receiver">
  <recv request="MESSAGE" />
  <send>
    <![CDATA[
      SIP/2.0 [status] OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]-[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def sipp_path() -> str | None:
    return shutil.which("sipp")


def write_scenario(workdir: str, name: str, text: str) -> str:
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class SippProcess:
    """One sipp run; `wait()` returns its exit status (0 = every call succeeded)."""

    def __init__(self, workdir: str, scenario: str, *args: str, port: int | None = None,
                 transport: str = "u1", keys: dict[str, Any] | None = None,
                 name: str = "sipp", trace_msg: bool = True) -> None:
        self.port = port or free_port(HOST)
        self.message_file = os.path.join(workdir, f"{name}-{self.port}-messages.log")
        self.error_file = os.path.join(workdir, f"{name}-{self.port}-errors.log")
        self.stat_file = os.path.join(workdir, f"{name}-{self.port}-stat.csv")
        cmd = [sipp_path() or "sipp", "-sf", scenario, "-i", HOST, "-p", str(self.port),
               "-t", transport, "-trace_err", "-error_file", self.error_file, "-nostdin",
               "-trace_stat", "-stf", self.stat_file, "-fd", "1"]
        if trace_msg:
            cmd += ["-trace_msg", "-message_file", self.message_file]
        for k, v in (keys or {}).items():
            cmd += ["-key", k, str(v)]
        cmd += list(args)
        self.cmd = cmd
        self.transport = transport
        self.stderr_file = os.path.join(workdir, f"{name}-{self.port}-stderr.log")
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL,
                                         stderr=err, stdin=subprocess.DEVNULL)
        self.cpu_seconds: float | None = None

    def wait_bound(self, timeout: float = 30.0) -> SippProcess:
        """Return once sipp has bound its port (UDP, or TCP for t1/tn): then traffic aimed
        at it is not lost to a process still starting. RuntimeError if sipp exited."""
        kind = "tcp" if self.transport.startswith("t") else "udp"
        try:
            wait_bound(self.port, kind, timeout, alive=lambda: self.proc.poll() is None)
        except RuntimeError:
            raise RuntimeError(f"sipp exited with {self.proc.wait()} before binding "
                               f"{kind} port {self.port}: {self.errors()[-2000:]}"
                               f"{tail_of(self.stderr_file, 2000)}") from None
        return self

    def wait(self, timeout: float = 60.0) -> int:
        """Exit status; `cpu_seconds` is then sipp's own CPU time (read from /proc while
        the exited process is not yet reaped), so a step can tell when sipp was the limit."""
        end = time.monotonic() + timeout
        try:
            while self.proc.returncode is None and self.cpu_seconds is None:
                try:  # exited but not reaped: its CPU times are still readable
                    info = os.waitid(os.P_PID, self.proc.pid,
                                     os.WEXITED | os.WNOWAIT | os.WNOHANG)
                except ChildProcessError:
                    break
                if info is not None:
                    self.cpu_seconds = cpu_seconds_of(self.proc.pid)
                    break
                if time.monotonic() > end:
                    raise subprocess.TimeoutExpired(self.cmd, timeout)
                time.sleep(0.02)
            return self.proc.wait(max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            if self.cpu_seconds is None and self.proc.poll() is None:
                self.cpu_seconds = cpu_seconds_of(self.proc.pid)  # up to now: it is killed
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # sipp: dump stats and quit
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def messages(self) -> str:
        try:
            with open(self.message_file, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def received(self, method: str = "MESSAGE") -> list[str]:
        """The requests sipp received: each as its raw text (start line, headers, body)."""
        out = []
        for block in self.messages().split("----------------------------------------------- "):
            if "message received" not in block:
                continue
            head, _, text = block.partition("message received")
            text = text.split("\n", 1)[1] if "\n" in text else ""
            text = text.lstrip("\r\n")
            if text.startswith(method + " "):
                out.append(text)
        return out

    def transactions(self, method: str = "MESSAGE") -> list[str]:
        """The requests sipp received, one per transaction (Call-ID, CSeq, top Via) in
        arrival order: over UDP a request may arrive more than once, as a retransmission
        that crossed sipp's answer (Timer E/A fires when either side is slow, as on a
        loaded machine)."""
        seen: set[tuple[str | None, str | None, str | None]] = set()
        out = []
        for raw in self.received(method):
            key = (header(raw, "Call-ID"), header(raw, "CSeq"), header(raw, "Via"))
            if key not in seen:
                seen.add(key)
                out.append(raw)
        return out

    def stats(self) -> dict[str, str]:
        """The last row of sipp's statistics file (cumulative counters end in '(C)')."""
        try:
            with open(self.stat_file, encoding="utf-8", errors="replace") as f:
                rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
        except FileNotFoundError:
            return {}
        if len(rows) < 2:
            return {}
        return dict(zip(rows[0], rows[-1]))

    def counter(self, name: str) -> int:
        value = self.stats().get(f"{name}(C)", "0")
        return int(value) if value.strip().isdigit() else 0

    def log_entries(self) -> list[tuple[float, str, str]]:
        """(epoch seconds, "sent" | "received", raw message) for every traced message."""
        out = []
        for block in self.messages().split("----------------------------------------------- ")[1:]:
            stamp, _, rest = block.partition("\n")
            try:
                t = time.mktime(time.strptime(stamp.strip()[:19], "%Y-%m-%d %H:%M:%S"))
                t += float("0" + stamp.strip()[19:26])
            except ValueError:
                continue
            first, _, raw = rest.partition("\n")
            direction = "sent" if " sent" in first else "received"
            out.append((t, direction, raw.lstrip("\r\n")))
        return out

    def errors(self) -> str:
        try:
            with open(self.error_file, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def header(raw: str, name: str) -> str | None:
    for line in raw.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            return v.strip()
    return None


def body_of(raw: str) -> str:
    """The body as Content-Length counts it (sipp's log adds a line end after it)."""
    head, sep, body = raw.partition("\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition("\n\n")
    length = header(head, "Content-Length") or header(head, "l")
    data = body.encode("utf-8", "surrogateescape")
    return data[:int(length)].decode("utf-8", "replace") if length else body


# -- tshark ----------------------------------------------------------------------------------


class Capture:
    """dumpcap on the loopback interface for the ports of one run.

    Live before the constructor returns and complete before `stop()` ends it: both are
    proved with probe datagrams (sent to a UDP port of the capture's own, inside its filter)
    that must show up in the file. libpcap hands packets over in blocks, in order, retired
    by a timeout, so once a probe is in the file so is everything sent before it; fixed
    sleeps lost a short run's last 0.9 s, or its first packets on a loaded machine.
    `error` says why there is no capture (dumpcap refused, or never went live).
    """

    def __init__(self, workdir: str, ports: list[int], timeout: float = 30.0) -> None:
        self.path = os.path.join(workdir, "run.pcapng")
        self.ports = sorted(set(ports))
        self.error = ""
        self._scanned = 0
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._probe.bind((HOST, 0))  # held for the capture's life: no one else has it
        self._probe.setblocking(False)
        self.probe_port: int = self._probe.getsockname()[1]
        flt = " or ".join([f"port {p}" for p in self.ports] + [f"udp port {self.probe_port}"])
        self._errlog = os.path.join(workdir, f"dumpcap-{self.probe_port}.err")
        with open(self._errlog, "wb") as err:
            self.proc = subprocess.Popen(
                ["dumpcap", "-q", "-i", "lo", "-f", flt, "-w", self.path],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        try:
            self.sync(timeout)
        except TimeoutError as e:
            self.error = f"{e}; dumpcap said: {self._stderr()[-500:]}"
            self._end()
        except RuntimeError as e:  # dumpcap exited: e.g. no permission to capture on lo
            self.error = str(e)
            self._end()

    def _stderr(self) -> str:
        try:
            with open(self._errlog, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _seen(self, token: bytes) -> bool:
        """Whether `token` is in the capture file (only the part not yet searched is read)."""
        start = max(0, self._scanned - len(token))  # a token cut by the last read's end
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return False
        self._scanned = start + len(data)
        return token in data

    def sync(self, timeout: float = 30.0) -> None:
        """Return once a probe sent now is in the capture file: the capture is live and
        holds every packet sent before this call. RuntimeError if dumpcap exited,
        TimeoutError if the probe is not there within `timeout` s."""
        token = b"msrpgw-capture-probe-" + secrets.token_hex(8).encode()
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dumpcap exited with {self.proc.returncode}: "
                                   f"{self._stderr()[-1000:] or '(nothing on stderr)'}")
            self._probe.sendto(token, (HOST, self.probe_port))
            try:
                while True:  # drain our own probes
                    self._probe.recv(2048)
            except OSError:
                pass
            if self._seen(token):
                return
            if time.monotonic() > end:
                raise TimeoutError(f"dumpcap: a probe datagram was not captured within "
                                   f"{timeout} s")
            time.sleep(0.05)

    def stop(self, settle: float = 1.5, timeout: float = 30.0) -> None:
        """Stop once the capture holds everything sent so far (a last probe is in the
        file); if that cannot be shown within `timeout` s, after `settle` s at least."""
        if self.proc.poll() is None:
            try:
                self.sync(timeout)
            except (TimeoutError, RuntimeError):
                time.sleep(settle)
        self._end()

    def _end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._probe.close()

    def tshark(self, sip_ports: list[int], msrp_ports: list[int], *fields: str,
               display: str = "") -> str:
        cmd = ["tshark", "-r", self.path, "-n"]
        for p in sip_ports:
            cmd += ["-d", f"udp.port=={p},sip", "-d", f"tcp.port=={p},sip"]
        for p in msrp_ports:
            cmd += ["-d", f"tcp.port=={p},msrp"]
        if display:
            cmd += ["-Y", display]
        if fields:
            cmd += ["-T", "fields"] + [x for f in fields for x in ("-e", f)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:  # a bad filter must not read as "nothing found"
            raise RuntimeError(f"tshark failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout


def tempdir(prefix: str = "msrpgw-") -> str:
    return tempfile.mkdtemp(prefix=prefix)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]
