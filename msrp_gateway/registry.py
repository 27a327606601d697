"""The gateway's sans-IO half: its settings, its sessions and the table that holds them
(OpenSIPS msrp_gateway's hash table), and the checks of the script functions' parameters.

No reactor, no UA: gateway.py owns the timing and the calls out; this module stores
sessions in 2^hash_size buckets, refuses duplicates, enforces max_sessions and validates
keys, content-type lists and URIs.
"""

from __future__ import annotations

import enum
import functools
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MIN_HASH_SIZE = 1
MAX_HASH_SIZE = 20  # as OpenSIPS: 2^1 .. 2^20 buckets
MAX_KEY_LENGTH = 10_000  # two URIs of the SIP parser's 4096-character bound, and a separator

# [msrp_gateway] delivery: "hop" answers a MESSAGE 202 once its body is on its way,
# "end_to_end" answers it from the MSRP outcome (gateway/delivery.py).
HOP = "hop"
END_TO_END = "end_to_end"
DEFAULT_DELIVERY_TIMEOUT = 25.0
# The SIP stack answers 500 itself for a non-INVITE request left unanswered this long
# (sip.uas.TU_GUARD_NON_INVITE, = Timer F with the default T1): we must answer before.
MAX_DELIVERY_TIMEOUT = 30.0


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


MAX_CONTENT_TYPES = 32
_MEDIA_TYPE = re.compile(r"^(\*|[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+))$")
_TYPE_SPLIT = re.compile(r"[\s,]+")


class GatewayError(Exception):
    """An MI-visible failure; `.code`/`.message` are what OpenSIPS' MI answers."""

    code = 500
    message = "Gateway error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.message)


class SessionNotFound(GatewayError):
    code = 404
    message = "Session doesn't exist"


class EndSessionFailed(GatewayError):
    code = 500
    message = "Unable to end session"


@dataclass(slots=True)
class GatewaySettings:
    """[msrp_gateway] settings; defaults are OpenSIPS' (times in seconds)."""

    hash_size: int = 10
    cleanup_interval: float = 60
    session_timeout: float = 43200
    message_timeout: float = 7200
    max_sessions: int = 100_000
    max_queued_messages: int = 64  # per session, while its MSRP side is being set up
    max_queued_bytes: int = 1 << 20  # per session
    max_pending_messages: int = 10_000  # MESSAGEs generated from SENDs, awaiting their answer
    stop_timeout: float = 5.0  # shutdown waits this long for BYEs to complete
    failure_message: bool = True  # default on_event pages the sender when set-up fails
    delivery: str = HOP  # or END_TO_END: the MESSAGE's answer waits for the MSRP outcome
    delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT  # end_to_end: answer by then

    def __post_init__(self) -> None:
        if not isinstance(self.hash_size, int) or not 1 <= self.hash_size <= 20:
            raise ValueError(f"msrp_gateway.hash_size must be 1..20, not {self.hash_size!r}")
        for name in ("cleanup_interval", "session_timeout", "message_timeout", "stop_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"msrp_gateway.{name} must be a positive number of seconds")
        if self.session_timeout < self.message_timeout:
            raise ValueError(
                "msrp_gateway.session_timeout can't be lower than message_timeout "
                f"({self.session_timeout} < {self.message_timeout})"
            )
        for name in ("max_sessions", "max_queued_messages", "max_queued_bytes",
                     "max_pending_messages"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"msrp_gateway.{name} must be a positive integer")
        if self.delivery not in (HOP, END_TO_END):
            raise ValueError(f"msrp_gateway.delivery must be 'hop' or 'end_to_end', "
                             f"not {self.delivery!r}")
        timeout = self.delivery_timeout
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or \
                not 0 < timeout <= MAX_DELIVERY_TIMEOUT:
            raise ValueError(f"msrp_gateway.delivery_timeout must be a number of seconds "
                             f"above 0 and at most {MAX_DELIVERY_TIMEOUT:g}, "
                             f"not {timeout!r}")
        self.delivery_timeout = float(timeout)

    @property
    def end_to_end(self) -> bool:
        """Does a MESSAGE's final answer wait for what became of its body (delivery.py)?"""
        return self.delivery == END_TO_END

    @classmethod
    def from_any(cls, settings: Any) -> GatewaySettings:
        """Accept a GatewaySettings, a mapping, a config object with a `msrp_gateway`
        section, or any object carrying the field names as attributes."""
        if isinstance(settings, cls):
            return settings
        if settings is None:
            return cls()
        section = getattr(settings, "msrp_gateway", None)
        if section is None and isinstance(settings, Mapping):
            section = settings.get("msrp_gateway", settings)
        if section is None:
            section = settings
        values: dict[str, Any] = {}
        for f in fields(cls):
            if isinstance(section, Mapping):
                if f.name in section:
                    values[f.name] = section[f.name]
            elif hasattr(section, f.name):
                values[f.name] = getattr(section, f.name)
        return cls(**values)


def parse_content_types(content_types: str | Iterable[str]) -> tuple[str, ...]:
    """'text/plain, text/html' (or a list) -> ('text/plain', 'text/html'); ValueError if bad."""
    if isinstance(content_types, str):
        return _parse_type_text(content_types)  # scripts pass the same literal every time
    return _check_types([str(t).strip().lower() for t in content_types])


@functools.lru_cache(maxsize=256)
def _parse_type_text(content_types: str) -> tuple[str, ...]:
    return _check_types([t for t in _TYPE_SPLIT.split(content_types.strip().lower()) if t])


def _check_types(items: list[str]) -> tuple[str, ...]:
    if not items:
        raise ValueError("content_types is empty")
    if len(items) > MAX_CONTENT_TYPES:
        raise ValueError(f"more than {MAX_CONTENT_TYPES} content types")
    for item in items:
        if not _MEDIA_TYPE.match(item):
            raise ValueError(f"bad content type {item!r}")
    return tuple(dict.fromkeys(items))


def type_accepted(content_type: str, accepted: tuple[str, ...]) -> bool:
    """Does a Content-Type value (parameters allowed) match an accept list with wildcards?"""
    media = content_type.split(";", 1)[0].strip().lower()
    if "/" not in media:
        return False
    major = media.split("/", 1)[0]
    for item in accepted:
        if item == "*" or item == media or item == major + "/*":
            return True
    return False


def strip_uri(text: str) -> str:
    """OpenSIPS trims the R-URI param and takes off one pair of <>."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


# RFC 3966 s.3 telephone-uri: a global number ("+" and digits with visual separators) or a
# local number (hex digits, * and #) that must carry ;phone-context= (s.5.1.5); params
# around it. A phone-context on a global number is tolerated (seen in the field).
# Each part is a run of one character class followed by ";" or the end, so matching is
# linear (a lookahead checks the run holds a digit instead of a backtracking DIGIT split).
_PARAMCHAR = r"(?:[\[\]/:&+$A-Za-z0-9\-_.!~*'()]|%[0-9A-Fa-f]{2})"
_PAR = rf"(?:;(?!(?i:phone-context)=)[A-Za-z0-9\-]+(?:={_PARAMCHAR}+)?)"
_GLOBAL_DIGITS = r"\+(?=[0-9\-.()]*[0-9])[0-9\-.()]+"
_LOCAL_DIGITS = r"(?=[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#])[0-9A-Fa-f*#\-.()]+"
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.?"
_CONTEXT = rf";(?i:phone-context)=(?:{_GLOBAL_DIGITS}|{_DOMAIN})"
_TEL_URI = re.compile(
    rf"[Tt][Ee][Ll]:(?:{_GLOBAL_DIGITS}(?:{_PAR}|{_CONTEXT})*"
    rf"|{_LOCAL_DIGITS}{_PAR}*{_CONTEXT}{_PAR}*)"
)
MAX_URI_LENGTH = 4096  # as the SIP parser's bound on one URI


def valid_uri(text: str) -> bool:
    """A usable SIP/SIPS URI, or an RFC 3966 tel: URI (global, or local with context)."""
    if len(text) > MAX_URI_LENGTH:
        return False
    if text[:4].lower() == "tel:":
        return _TEL_URI.fullmatch(text) is not None
    from msrp_gateway.sip.uri import parse_uri  # lazy: keeps the registry usable alone

    try:
        parse_uri(text)
    except Exception:  # noqa: BLE001 - SIPParseError, whatever the parser raises
        return False
    return True
