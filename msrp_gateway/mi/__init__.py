"""MI: the command table and its JSON-RPC 2.0 HTTP resource (as OpenSIPS mi_http).

One job per module; every name is importable from ``msrp_gateway.mi`` as before:

- ``table.py``: ``CommandTable``/``Command``, parameter binding, ``MIError``/``ParamsError``
  and the JSON-RPC error codes;
- ``rpc.py``: ``JSONRPCDispatcher``, the JSON-RPC 2.0 envelope and dispatch (no HTTP);
- ``site.py``: ``MIAuth``, ``MIResource`` (HTTP framing over the dispatcher),
  ``MISite``/``make_site`` (bounded bodies and connections).
"""

from .rpc import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_MAX_BATCH,
    MAX_METHOD_LENGTH,
    MAX_PARAMS,
    JSONRPCDispatcher,
)
from .site import DEFAULT_MAX_BODY, MIAuth, MIResource, MISite, make_site
from .table import (
    ARITY_DATA,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NAMES_DATA,
    PARSE_ERROR,
    Command,
    CommandTable,
    MIError,
    ParamsError,
)

__all__ = [
    "MIError",
    "ParamsError",
    "Command",
    "CommandTable",
    "JSONRPCDispatcher",
    "MIAuth",
    "MIResource",
    "MISite",
    "make_site",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "ARITY_DATA",
    "NAMES_DATA",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_COMMAND_TIMEOUT",
    "MAX_PARAMS",
    "MAX_METHOD_LENGTH",
]
