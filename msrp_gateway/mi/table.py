"""The MI command table: named commands, their parameter sets and the errors they raise.

Independent of JSON-RPC framing and of HTTP: ``CommandTable.call(name, params)`` binds
parameters to a recipe, converts them as OpenSIPS' get_mi_*_param do and runs the handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.internet import defer

__all__ = [
    "MIError",
    "ParamsError",
    "RPCError",
    "Command",
    "CommandTable",
    "ParamType",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "ARITY_DATA",
    "NAMES_DATA",
]

# JSON-RPC 2.0 s.5.1 error codes, with the messages OpenSIPS sends.
PARSE_ERROR = (-32700, "Parse error")
INVALID_REQUEST = (-32600, "Invalid Request")
METHOD_NOT_FOUND = (-32601, "Method not found")
INVALID_PARAMS = (-32602, "Invalid params")
INTERNAL_ERROR = (-32603, "Internal error")

ARITY_DATA = "Too few or too many parameters"
NAMES_DATA = "Named parameters do not match"


class MIError(Exception):
    """A command's own error: positive ``code`` and ``message``, no ``data``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class ParamsError(Exception):
    """-32602 "Invalid params" with ``data`` saying what was wrong."""

    def __init__(self, data: str) -> None:
        super().__init__(data)
        self.data = data


class RPCError(Exception):
    """A protocol-level error answered with a standard code."""

    def __init__(self, code_message: tuple[int, str], data: str | None = None) -> None:
        super().__init__(code_message, data)
        self.code, self.message = code_message
        self.data = data


ParamType = type  # str or int


@dataclass(slots=True, frozen=True)
class Command:
    """One MI command: accepted parameter sets (OpenSIPS "recipes") and handler.

    The handler is called with keyword arguments named as in the matched recipe,
    already converted to the declared types; it returns a JSON value or a
    Deferred of one, or raises MIError / ParamsError.
    """

    name: str
    recipes: tuple[tuple[str, ...], ...]
    handler: Callable[..., Any]
    types: Mapping[str, ParamType]


def _convert(name: str, value: Any, kind: ParamType) -> Any:
    """Coerce as OpenSIPS' get_mi_*_param do; anything else is a bad type."""
    if kind is object:
        return value
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            text = value.strip()
            digits = text[1:] if text[:1] in "+-" else text
            if digits.isdigit() and len(digits) <= 18:
                return int(text)
        raise ParamsError(f"Bad type for parameter '{name}'")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ParamsError(f"Bad type for parameter '{name}'")


class CommandTable:
    """Explicit name -> Command table (names may contain ``:``)."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self,
        name: str,
        handler: Callable[..., Any],
        recipes: Sequence[Sequence[str]] = ((),),
        *,
        types: Mapping[str, ParamType] | None = None,
        aliases: Iterable[str] = (),
    ) -> None:
        cmd = Command(name, tuple(tuple(r) for r in recipes), handler, dict(types or {}))
        for n in (name, *aliases):
            if n in self._commands:
                raise ValueError(f"MI command {n!r} registered twice")
            self._commands[n] = cmd if n == name else Command(
                n, cmd.recipes, cmd.handler, cmd.types)

    def names(self) -> list[str]:
        return list(self._commands)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def bind(self, name: str, params: Any) -> tuple[Command, dict[str, Any]]:
        """Match ``params`` (None, list or dict) to a recipe; raise on mismatch."""
        cmd = self._commands.get(name)
        if cmd is None:
            raise RPCError(METHOD_NOT_FOUND)
        if params is None:
            params = []
        if isinstance(params, list):
            for recipe in cmd.recipes:
                if len(recipe) == len(params):
                    named = dict(zip(recipe, params))
                    break
            else:
                raise ParamsError(ARITY_DATA)
        else:  # dict
            keys = set(params)
            for recipe in cmd.recipes:
                if set(recipe) == keys and len(recipe) == len(keys):
                    named = dict(params)
                    break
            else:
                raise ParamsError(NAMES_DATA)
        kwargs = {k: _convert(k, v, cmd.types.get(k, str)) for k, v in named.items()}
        return cmd, kwargs

    def call(self, name: str, params: Any) -> defer.Deferred:
        """Run a command; the Deferred fires with its result or fails."""
        try:
            cmd, kwargs = self.bind(name, params)
        except Exception:
            return defer.fail()
        return defer.maybeDeferred(cmd.handler, **kwargs)
