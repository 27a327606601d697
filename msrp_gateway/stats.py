"""Named statistics, as OpenSIPS' MI shows them: ``group:name`` -> integer.

Sans-IO and below every layer (imports nothing of ours).  Two kinds, as in OpenSIPS:
- counters, bumped by their owner as plain ``int`` attributes of a small slotted record
  (``SIPCounters``, ``MSRPStats``, ``GatewayCounters``): one attribute add per event on hot
  paths, no dict lookup, no lock; ``reset_statistics`` sets them back to 0
  ("incremental" in ``list_statistics``);
- gauges, read on demand from state that exists anyway (``len(table)``), never reset
  ("non-incremental").

``Statistics`` is the registry the MI commands read: it only holds *how* to read and
reset each statistic, so registering costs nothing per message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

__all__ = [
    "Stat",
    "Statistics",
    "StatsNotFound",
    "SIPCounters",
    "MSRPStats",
    "GatewayCounters",
    "INCREMENTAL",
    "NON_INCREMENTAL",
    "MAX_STATISTICS",
    "MAX_NAME_LENGTH",
]

INCREMENTAL = "incremental"
NON_INCREMENTAL = "non-incremental"
MAX_STATISTICS = 4096  # registered statistics: a registry is built once, at start-up
MAX_NAME_LENGTH = 128  # of a group or a name (and of what a query may ask for)


class StatsNotFound(Exception):
    """None of the names asked for is a statistic or a group (OpenSIPS: 404)."""

    code = 404
    message = "Statistics Not Found"

    def __init__(self) -> None:
        super().__init__(self.code, self.message)


# ---- the counter records their owners bump ------------------------------------------


@dataclass(slots=True)
class SIPCounters:
    """The SIP stack's counters: OpenSIPS' ``core:`` and ``tm:`` groups.

    ``finals[k]`` counts transactions (ours and the peers') that completed with a kx final
    response: ``finals[2]`` is ``tm:2xx_transactions`` (index 0 and 1 unused).
    """

    rcv_requests: int = 0       # requests handed to the stack (retransmissions too)
    rcv_replies: int = 0        # responses handed to the stack
    drop_requests: int = 0      # requests dropped unanswered (ACK for nothing, unreadable)
    drop_replies: int = 0       # responses matching no transaction (stray)
    err_requests: int = 0       # requests too malformed to process
    err_replies: int = 0        # responses too malformed to process
    received_replies: int = 0   # responses matched to a client transaction
    local_replies: int = 0      # final responses our server transactions sent
    uas_transactions: int = 0   # server transactions created
    uac_transactions: int = 0   # client transactions created
    finals: list[int] = field(default_factory=lambda: [0] * 7)


@dataclass(slots=True)
class MSRPStats:
    """The MSRP stack's counters (``msrp:`` group)."""

    sends_received: int = 0        # SEND requests (chunks) received for our sessions
    sends_sent: int = 0            # messages handed to a connection (chunked: once)
    reports_sent: int = 0          # REPORTs written, success and failure
    failure_reports_sent: int = 0  # ... of them with a status other than 200


@dataclass(slots=True)
class GatewayCounters:
    """The gateway's counters (``msrp_gateway:`` group)."""

    sessions_created: int = 0       # gateway sessions opened (either direction)
    sessions_setup_failed: int = 0  # sessions whose MSRP side never came up
    messages_to_msrp: int = 0       # MESSAGE bodies accepted for a session (sent or queued)
    messages_to_sip: int = 0        # MSRP messages sent on as a MESSAGE
    messages_failed: int = 0        # bodies in either direction that were not delivered


# ---- the registry ----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Stat:
    """One registered statistic: how to read it and, for a counter, how to reset it."""

    group: str
    name: str
    read: Callable[[], int]
    reset: Callable[[], None] | None = None  # None: a gauge (non-resettable)

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def kind(self) -> str:
        return NON_INCREMENTAL if self.reset is None else INCREMENTAL


def _check_part(what: str, text: str) -> str:
    if not isinstance(text, str) or not text or len(text) > MAX_NAME_LENGTH \
            or ":" in text or any(c.isspace() for c in text):
        raise ValueError(f"statistic {what} {text!r}: 1..{MAX_NAME_LENGTH} characters, "
                         "no ':' or blanks")
    return text


def _attr_reader(obj: Any, attr: str) -> Callable[[], int]:
    return lambda: int(getattr(obj, attr))


def _attr_zero(obj: Any, attr: str) -> Callable[[], None]:
    def reset() -> None:
        setattr(obj, attr, 0)
    return reset


class Statistics:
    """Every statistic by group, in registration order (the order MI answers in).

    Names and groups are matched case-insensitively, as OpenSIPS does.
    """

    def __init__(self, *, max_statistics: int = MAX_STATISTICS) -> None:
        self.max_statistics = max_statistics
        self._groups: dict[str, list[Stat]] = {}    # lower-cased group -> its stats
        self._by_full: dict[str, Stat] = {}         # lower-cased "group:name"
        self._by_name: dict[str, Stat] = {}         # lower-cased name -> first registered

    def __len__(self) -> int:
        return len(self._by_full)

    # -- registering ---------------------------------------------------------------

    def add(self, stat: Stat) -> Stat:
        """Register ``stat``; ValueError for a bad or duplicate name, or past the bound."""
        _check_part("group", stat.group)
        _check_part("name", stat.name)
        full = stat.full_name.lower()
        if full in self._by_full:
            raise ValueError(f"statistic {stat.full_name} registered twice")
        if len(self._by_full) >= self.max_statistics:
            raise ValueError(f"more than {self.max_statistics} statistics (max_statistics)")
        self._by_full[full] = stat
        self._groups.setdefault(stat.group.lower(), []).append(stat)
        self._by_name.setdefault(stat.name.lower(), stat)
        return stat

    def add_counter(self, group: str, name: str, obj: Any, attr: str | None = None) -> Stat:
        """A counter kept as the int attribute ``attr`` (default ``name``) of ``obj``."""
        attr = attr or name
        getattr(obj, attr)  # AttributeError now, not at the first MI read
        return self.add(Stat(group, name, _attr_reader(obj, attr), _attr_zero(obj, attr)))

    def add_counters(self, group: str, obj: Any, names: Iterable[str] | dict[str, str]) -> None:
        """Several counters of one record: names, or {stat name: attribute}."""
        pairs = names.items() if isinstance(names, dict) else ((n, n) for n in names)
        for name, attr in pairs:
            self.add_counter(group, name, obj, attr)

    def add_gauge(self, group: str, name: str, read: Callable[[], int]) -> Stat:
        """A value read on demand (``lambda: len(table)``); never reset."""
        return self.add(Stat(group, name, read, None))

    # -- querying --------------------------------------------------------------------

    def groups(self) -> list[str]:
        return [stats[0].group for stats in self._groups.values()]

    def select(self, names: Sequence[str] | None) -> list[Stat]:
        """The statistics ``names`` asks for, without repeats, in the order asked.

        Each item is ``"all"``, ``"group:"`` (every statistic of the group), ``"group:name"``
        or a bare ``name`` (the first one registered under it, as OpenSIPS' lookup).
        ``None`` means all. Unknown items are skipped; none known: ``StatsNotFound``.
        """
        if names is None:
            return list(self._by_full.values())
        out: dict[int, Stat] = {}
        for item in names:
            if not isinstance(item, str) or len(item) > 2 * MAX_NAME_LENGTH + 1:
                continue
            if item == "all":
                found: Iterable[Stat] = self._by_full.values()
            elif len(item) > 1 and item.endswith(":"):
                found = self._groups.get(item[:-1].lower(), ())
            elif ":" in item:
                one = self._by_full.get(item.lower())
                found = (one,) if one is not None else ()
            else:
                one = self._by_name.get(item.lower())
                found = (one,) if one is not None else ()
            for stat in found:
                out.setdefault(id(stat), stat)
        if not out:
            raise StatsNotFound()
        return list(out.values())

    def get(self, names: Sequence[str] | None = None) -> dict[str, int]:
        """``{"group:name": value}`` for what ``names`` selects (see ``select``)."""
        return {s.full_name: s.read() for s in self.select(names)}

    def describe(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """``{"group:name": "incremental" | "non-incremental"}``."""
        return {s.full_name: s.kind for s in self.select(names)}

    def reset(self, names: Sequence[str] | None = None) -> int:
        """Set the selected counters to 0 (gauges are left alone); how many were reset."""
        n = 0
        for stat in self.select(names):
            if stat.reset is not None:
                stat.reset()
                n += 1
        return n

    def value(self, full_name: str) -> int:
        """One statistic's value by ``group:name`` (KeyError when unknown): for tests, tools."""
        return self._by_full[full_name.lower()].read()


# ---- the standard set -------------------------------------------------------------------

CORE_COUNTERS = ("rcv_requests", "rcv_replies", "drop_requests", "drop_replies",
                 "err_requests", "err_replies")


def _final_reader(c: SIPCounters, k: int) -> Callable[[], int]:
    return lambda: c.finals[k]


def _final_zero(c: SIPCounters, k: int) -> Callable[[], None]:
    def reset() -> None:
        c.finals[k] = 0
    return reset


def register_sip(stats: Statistics, counters: SIPCounters,
                 inuse: Callable[[], int] | None = None) -> None:
    """OpenSIPS' ``core:`` and ``tm:`` names over one ``SIPCounters``.

    ``tm:relayed_replies`` is left out on purpose: we are a UA, never a proxy, so it
    could only ever read 0.
    """
    stats.add_counters("core", counters, CORE_COUNTERS)
    stats.add_counter("tm", "received_replies", counters)
    stats.add_counter("tm", "local_replies", counters)
    stats.add_counter("tm", "UAS_transactions", counters, "uas_transactions")
    stats.add_counter("tm", "UAC_transactions", counters, "uac_transactions")
    for k in range(2, 7):
        stats.add(Stat("tm", f"{k}xx_transactions", _final_reader(counters, k),
                       _final_zero(counters, k)))
    if inuse is not None:
        stats.add_gauge("tm", "inuse_transactions", inuse)


def register_msrp(stats: Statistics, counters: MSRPStats,
                  active: Callable[[], int] | None = None) -> None:
    """The ``msrp:`` group: active_sessions (gauge) and the MSRP stack's counters."""
    if active is not None:
        stats.add_gauge("msrp", "active_sessions", active)
    stats.add_counters("msrp", counters, ("sends_received", "sends_sent", "reports_sent",
                                          "failure_reports_sent"))


def register_gateway(stats: Statistics, counters: GatewayCounters,
                     active: Callable[[], int] | None = None) -> None:
    """The ``msrp_gateway:`` group: active_sessions (gauge) and the gateway's counters."""
    if active is not None:
        stats.add_gauge("msrp_gateway", "active_sessions", active)
    stats.add_counters("msrp_gateway", counters, (
        "sessions_created", "sessions_setup_failed", "messages_to_msrp", "messages_to_sip",
        "messages_failed"))
