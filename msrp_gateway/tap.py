"""``twistd msrpgw``: command-line options and makeService.

The only module that reads the command line or touches the global reactor (and then only
when no reactor is passed in, so tests build the whole service on a MemoryReactor).
"""

from __future__ import annotations

import signal
import sys
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger, LogLevel, textFileLogObserver
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

from msrp_gateway import __version__
from msrp_gateway.config import LOG_LEVELS, ConfigError, load, load_default
from msrp_gateway.mi_commands import LogLevelControl
from msrp_gateway.service import StartupError, build_service

__all__ = ["Options", "makeService"]

_log = Logger()


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("SIP MESSAGE <-> MSRP gateway. Without --config it runs on the bundled "
                "loopback configuration (msrp_gateway/etc/msrpgw.toml).")
    optParameters = [
        ["config", "c", None, "TOML configuration file (default: the bundled one)."],
        ["log-level", "l", None,
         "Lowest level logged: " + ", ".join(LOG_LEVELS) + " (default: [log] level)."],
    ]

    def opt_version(self) -> None:
        """Print the msrpgw version and exit."""
        print(f"msrpgw {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        level = self["log-level"]
        if level is not None and level not in LOG_LEVELS:
            raise usage.UsageError(f"--log-level: expected one of {', '.join(LOG_LEVELS)}, "
                                   f"found {level!r}")


class _Root(MultiService):
    """Top service handed to twistd; installs the level-filtered log observer on the
    Application so twistd's logger (one line per event) obeys ``--log-level``."""

    # Twisted's application.service and components have no annotations: calls into them
    # carry an ignore for exactly that error code.
    def __init__(self, observer: Any, control: LogLevelControl | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated Twisted base
        self._observer = observer
        self._late_filter = control  # for --logger/--syslog: filter once logging has begun

    def setServiceParent(self, parent: Any) -> Any:
        if self._observer is not None and isinstance(parent, Componentized):
            app: Any = parent  # Componentized is unannotated: untyped calls, through Any
            if app.getComponent(ILogObserver, None) is None:
                app.setComponent(ILogObserver, self._observer)
        return super().setServiceParent(parent)  # type: ignore[no-untyped-call]  # (as above)

    def startService(self) -> None:
        if self._late_filter is not None:
            self._late_filter.install()
        try:
            super().startService()  # type: ignore[no-untyped-call]  # unannotated Twisted
        except StartupError as e:
            # One line for the operator, no traceback; twistd exits with status 1.  Logging
            # has begun by now, so the line goes where twistd's log goes.
            _log.critical("msrpgw: {error}", error=str(e))
            raise SystemExit(1) from None


def _twistd_observer(options: usage.Options, control: LogLevelControl, reactor: Any) -> Any:
    """The observer twistd would make from its own options, behind our level filter
    (a log file is rotated on SIGUSR1, as twistd does)."""
    parent = getattr(options, "parent", None)
    if parent is None or parent.get("syslog") or parent.get("logger"):
        return None
    name = parent.get("logfile") or ""
    if name == "-" or (not name and parent.get("nodaemon")):
        out: Any = sys.stdout
    else:
        out = LogFile.fromFullPath(  # type: ignore[no-untyped-call]  # unannotated Twisted
            name or "twistd.log")
        signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(out.rotate))
    # FileLogObserver provides ILogObserver through zope's @implementer, which mypy does
    # not see without the mypy-zope plugin.
    return control.observer(cast(ILogObserver, textFileLogObserver(out)))


def makeService(options: usage.Options, reactor: Any = None) -> MultiService:
    """Load the configuration and build the gateway service.

    A bad configuration prints one line (key, expected, found) and exits with status 1.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
    try:
        settings = load(options["config"]) if options["config"] else load_default()
    except ConfigError as e:
        sys.stderr.write(f"msrpgw: configuration error: {e}\n")
        raise SystemExit(1) from None
    level = options["log-level"] or settings.log.level
    control = LogLevelControl(LogLevel.levelWithName(level))
    observer = _twistd_observer(options, control, reactor)
    parent = getattr(options, "parent", None)
    root = _Root(observer, control if observer is None and parent is not None else None)
    try:
        gateway = build_service(settings, reactor, log_control=control)
        gateway.setServiceParent(root)  # type: ignore[no-untyped-call]  # unannotated Twisted
    except StartupError as e:
        sys.stderr.write(f"msrpgw: {e}\n")
        raise SystemExit(1) from None
    return root
