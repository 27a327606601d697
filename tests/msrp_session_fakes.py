"""The smallest MSRP stack for sans-IO session tests: a `SessionHost` on `task.Clock` and a
`LinkCore` whose writes are parsed back into frames. No sockets.

Shared by tests/unit/test_msrp_session.py, test_msrp_owner_reports.py and test_stats.py,
so a change to the `SessionHost` seam is made in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msrp_gateway.msrp.message import FrameParser, MSRPRequest, MSRPResponse
from msrp_gateway.msrp.session import (
    LinkCore,
    MSRPSession,
    new_id,
)
from msrp_gateway.testing import ClockedSessionHost

PEER = "msrp://10.0.0.2:7777/peer1;tcp"


class Host(ClockedSessionHost):
    """`ClockedSessionHost` with a shortcut for making sessions."""

    def session(self, accept: Sequence[str] = ("text/plain",),
                remote: Sequence[str] = (PEER,)) -> MSRPSession:
        """A new session in the table, its remote path `remote` (none if empty)."""
        sid = new_id()
        s = MSRPSession(self, sid, f"msrp://10.0.0.1:2855/{sid};tcp", list(accept),
                        self.settings)
        if remote:
            s.set_remote_path(list(remote))
        self.table.add(s)
        return s


class Wire:
    """A LinkCore with its written bytes parsed back into frames; counts the closes and
    idle notices it asked for."""

    def __init__(self, host: Host, own_uri: str | None = None) -> None:
        self.out = FrameParser()
        self.frames: list[Any] = []
        self.closed = 0
        self.idle = 0
        self.core = LinkCore(host.clock, host.table, host.settings, FrameParser(),
                             self._write, self._lose, self._on_idle, "test",
                             own_uri=lambda: own_uri)

    def _write(self, data: bytes) -> None:
        self.frames.extend(self.out.feed(data))

    def _lose(self) -> None:
        self.closed += 1

    def _on_idle(self, core: LinkCore) -> None:
        self.idle += 1

    def take(self) -> list[Any]:
        """The frames written since the last take."""
        frames, self.frames = self.frames, []
        return frames

    def responses(self) -> list[MSRPResponse]:
        return [f for f in self.take() if isinstance(f, MSRPResponse)]

    def reports(self) -> list[MSRPRequest]:
        return [f for f in self.take() if isinstance(f, MSRPRequest) and f.method == "REPORT"]


def send_frame(to: str, frm: str = PEER, body: bytes = b"hello", *, tid: str | None = None,
               method: str = "SEND", mid: str = "m1", ctype: str | None = "text/plain",
               byte_range: str | None = None, flag: str = "$",
               extra: tuple[str, ...] = ()) -> bytes:
    """One request frame as a peer writes it (Byte-Range whole by default)."""
    tid = tid or new_id(4)
    lines = [f"MSRP {tid} {method}", f"To-Path: {to}", f"From-Path: {frm}",
             f"Message-ID: {mid}"]
    if byte_range is None:
        byte_range = f"1-{len(body)}/{len(body)}"
    lines.append(f"Byte-Range: {byte_range}")
    lines.extend(extra)
    if ctype is not None and body:
        lines.append(f"Content-Type: {ctype}")
    head = "\r\n".join(lines).encode() + b"\r\n"
    if body:
        head += b"\r\n" + body + b"\r\n"
    return head + f"-------{tid}{flag}\r\n".encode()
