"""Gateway sessions and the table that holds them (OpenSIPS msrp_gateway's hash table).

Sans-IO: no reactor, no UA. The gateway owns the timing; this module only stores sessions
in 2^hash_size buckets, refuses duplicates and enforces the max_sessions bound.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MIN_HASH_SIZE = 1
MAX_HASH_SIZE = 20  # as OpenSIPS: 2^1 .. 2^20 buckets
MAX_KEY_LENGTH = 10_000  # two URIs of the SIP parser's 4096-character bound, and a separator


class RegistryError(Exception):
    """A session could not be added; `.code`/`.reason` are what the SIP peer is told."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class DuplicateKey(RegistryError):
    def __init__(self, key: str) -> None:
        super().__init__(f"a gateway session with key {key!r} already exists", 486)
        self.key = key


class RegistryFull(RegistryError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"max_sessions ({limit}) reached", 503)
        self.limit = limit


class Origin(enum.Enum):
    """Which script function opened the session (only msg_to_msrp ones raise SETUP_FAILED)."""

    MESSAGE = "msg_to_msrp"
    INVITE = "msrp_gw_answer"


class State(enum.Enum):
    SETUP = "setup"  # UA session not up yet: bodies are queued
    ESTABLISHED = "established"
    ENDED = "ended"  # out of the table; UA notifications are only awaited, not acted on


@dataclass(slots=True)
class QueuedBody:
    """A MESSAGE body waiting for the MSRP side; `result` hears the SEND's outcome later."""

    content_type: str
    body: bytes
    result: Any = None  # Deferred[int] fired when the SEND completes (or fails)


@dataclass(slots=True)
class GatewaySession:
    """One page-mode peer <-> one MSRP session.

    `from_uri`/`to_uri`/`ruri` are the coordinates of the MESSAGEs the gateway generates
    from SENDs (OpenSIPS' sipua_from/sipua_to/sipua_ruri). Times are reactor seconds and
    start at creation.
    """

    key: str
    from_uri: str
    to_uri: str
    ruri: str
    origin: Origin
    content_types: tuple[str, ...]
    created: float
    last_send: float
    last_message: float
    ua_session_id: str = ""
    state: State = State.SETUP
    queue: deque[QueuedBody] = field(default_factory=deque)
    queued_bytes: int = 0
    closed: Any = None  # Deferred fired when the UA reports the end after we ended it

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED


class Registry:
    """Sessions by key in 2^hash_size buckets; at most `max_sessions` of them.

    Lookups are O(1); iteration (the sweep, MI listings) walks the buckets in order.
    """

    __slots__ = ("_buckets", "_mask", "_count", "max_sessions")

    def __init__(self, hash_size: int = 10, max_sessions: int = 100_000) -> None:
        if not isinstance(hash_size, int) or not MIN_HASH_SIZE <= hash_size <= MAX_HASH_SIZE:
            raise ValueError(
                f"hash_size must be an integer between {MIN_HASH_SIZE} and {MAX_HASH_SIZE} "
                f"(2^n buckets), not {hash_size!r}"
            )
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive integer, not {max_sessions!r}")
        self._buckets: list[dict[str, GatewaySession]] = [{} for _ in range(1 << hash_size)]
        self._mask = (1 << hash_size) - 1
        self._count = 0
        self.max_sessions = max_sessions

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def bucket_loads(self) -> list[int]:
        """Sessions per bucket, for MI statistics and the hash-spread test."""
        return [len(b) for b in self._buckets]

    def _bucket(self, key: str) -> dict[str, GatewaySession]:
        return self._buckets[hash(key) & self._mask]

    def get(self, key: str) -> GatewaySession | None:
        return self._bucket(key).get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._bucket(key)

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.max_sessions

    def add(self, session: GatewaySession) -> None:
        """Insert; raises DuplicateKey or RegistryFull and leaves the table unchanged."""
        bucket = self._bucket(session.key)
        if session.key in bucket:
            raise DuplicateKey(session.key)
        if self._count >= self.max_sessions:
            raise RegistryFull(self.max_sessions)
        bucket[session.key] = session
        self._count += 1

    def remove(self, session: GatewaySession) -> bool:
        """Remove this very session (not a newer one that reuses its key)."""
        bucket = self._bucket(session.key)
        if bucket.get(session.key) is session:
            del bucket[session.key]
            self._count -= 1
            return True
        return False

    def __iter__(self) -> Iterator[GatewaySession]:
        """A snapshot, so callers may remove sessions while iterating."""
        snapshot = [s for bucket in self._buckets for s in bucket.values()]
        return iter(snapshot)


def check_key(key: object) -> str:
    """A usable session key: a non-empty str of bounded length (ValueError otherwise)."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"session key must be a non-empty string, not {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"session key longer than {MAX_KEY_LENGTH} characters")
    return key
