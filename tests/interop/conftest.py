"""Fixtures for running the real thing: ``twistd -n msrpgw`` in a subprocess on free ports.

    def test_x(msrpgw):
        gw = msrpgw.start(config={"sip": {...}}, routing_script="def route(req, gw): ...")
        ... gw.sip_port, gw.msrp_port, gw.mi_port, gw.mi_url, gw.log_text() ...
        assert gw.stop() == 0 ...   # SIGTERM; every started gateway is stopped at teardown

Each gateway gets its own free ports (bench.ports: below the ephemeral range, checked free),
its own config file, routing script
and log file under the test's tmp_path.  ``require_tool("sipp")`` skips a test when a tool
is missing, and fails it under CI (CI=true), where the tool must be installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.ports import free_port

REPO = Path(__file__).resolve().parents[2]
TWISTD = "from twisted.scripts.twistd import run; run()"
STARTED_MARK = "msrpgw started"
# Bounds only, never waited out when things work: sized for a loaded CI machine 3x slower
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def require_tool(name: str) -> str:
    """Path of ``name``; skip without it, or fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (CI needs it: see .ci/run)")
        pytest.skip(f"{name} is not installed")
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(config: dict[str, dict[str, Any]]) -> str:
    out = []
    for section, table in config.items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


class GatewayProcess:
    """One ``twistd -n msrpgw`` subprocess."""

    def __init__(self, workdir: Path, config: dict[str, dict[str, Any]] | None,
                 routing_script: str | None, log_level: str, host: str) -> None:
        self.workdir = workdir
        self.host = host
        self.sip_port = free_port(host)
        self.msrp_port = free_port(host, both=False)
        self.mi_port = free_port(host, both=False)
        bracketed = f"[{host}]" if ":" in host else host
        merged: dict[str, dict[str, Any]] = {
            "sip": {"socket": [f"udp:{bracketed}:{self.sip_port}",
                               f"tcp:{bracketed}:{self.sip_port}"]},
            "msrp": {"socket": [f"msrp:{bracketed}:{self.msrp_port}"],
                     "my_uri": f"msrp://{bracketed}:{self.msrp_port};tcp"},
            "mi": {"http": f"{bracketed}:{self.mi_port}"},
        }
        for section, table in (config or {}).items():
            merged.setdefault(section, {}).update(table)
        if routing_script is not None:
            script = workdir / "routing.py"
            script.write_text(routing_script)
            merged.setdefault("routing", {})["script"] = str(script)
        self.config = merged
        self.config_path = workdir / "msrpgw.toml"
        self.config_path.write_text(to_toml(merged))
        self.log_path = workdir / "msrpgw.log"
        self.mi_url = f"http://{bracketed}:{self.mi_port}/mi"
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-c", TWISTD, "-n", "--pidfile=", "msrpgw",
                "--config", str(self.config_path), "--log-level", self.log_level]

    def start(self) -> GatewayProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("PYTHONSTARTUP", None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.workdir, env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                pytest.fail(f"msrpgw exited with {self.returncode} at start:\n"
                            f"{self.log_text()[-4000:]}", pytrace=False)
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"msrpgw did not start within {START_TIMEOUT}s:\n{self.log_text()[-4000:]}",
                    pytrace=False)

    def ready(self) -> bool:
        """Started: its MI port accepts (when the MI is on; any log level), or it said so."""
        if self.config.get("mi", {}).get("http"):
            try:
                socket.create_connection((self.host, self.mi_port), timeout=0.5).close()
                return True
            except OSError:
                return False
        return STARTED_MARK in self.log_text()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; returns the exit status (twistd re-raises SIGTERM: -15)."""
        if self.process is None:
            raise RuntimeError("not started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"msrpgw did not stop within {timeout}s of SIGTERM:\n"
                            f"{self.log_text()[-4000:]}", pytrace=False)
        self.returncode = self.process.returncode
        return self.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class GatewayLauncher:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[GatewayProcess] = []

    def prepare(self, config: dict[str, dict[str, Any]] | None = None,
                routing_script: str | None = None, log_level: str = "info",
                host: str = "127.0.0.1") -> GatewayProcess:
        """A gateway with its files written and ports chosen, not started yet."""
        workdir = self.tmp_path / f"gw{len(self.started)}"
        workdir.mkdir()
        gw = GatewayProcess(workdir, config, routing_script, log_level, host)
        self.started.append(gw)
        return gw

    def start(self, config: dict[str, dict[str, Any]] | None = None,
              routing_script: str | None = None, log_level: str = "info",
              host: str = "127.0.0.1") -> GatewayProcess:
        return self.prepare(config, routing_script, log_level, host).start()

    def stop_all(self) -> None:
        for gw in self.started:
            if gw.running:
                try:
                    gw.stop()
                except BaseException:
                    gw.kill()


@pytest.fixture
def msrpgw(tmp_path: Path) -> Iterator[GatewayLauncher]:
    """Start ``twistd -n msrpgw`` subprocesses; all are stopped (SIGTERM) at teardown."""
    launcher = GatewayLauncher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()
