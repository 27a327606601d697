"""Imports point down only (DESIGN.md "Layout"); sans-IO cores import no Twisted.

Walks every module of the package with ``ast`` (no import is executed), so a module that
does not import yet is still checked.  Layers, lowest first:

  sockets < config < stats < sip/*, msrp/* < sdp < ua < registry < gateway < routing, events < mi
  < mi_commands < testing < service < tap

A module may import a lower layer or its own package/layer.  ``sip`` and ``msrp`` never
import each other; their message/uri modules import nothing of ours but each other.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = "msrp_gateway"
ROOT = pathlib.Path(__file__).resolve().parents[2] / PKG

# Pure protocol cores: no Twisted, no reactor, no sockets (STYLE.md "sans-IO").
SANS_IO = {
    "sockets", "config", "sip.message", "sip.uri", "sip.transaction", "msrp.message", "msrp.uri",
    "msrp.chunks", "msrp.fingerprint", "sdp", "sdp_parse", "registry", "stats",
}
# "message/uri modules import nothing of ours" (DESIGN.md): outside their own package, and
# inside it only its sans-IO helpers (the Twisted side of the package is off limits).
LEAF_CORES = {"sip.message", "sip.uri", "msrp.message", "msrp.uri"}
TWISTED_SIDE = {"sip.transport", "sip.stack", "sip.dialog", "msrp.transport", "msrp.session"}

LEVELS = {
    "sockets": -1, "config": 0, "stats": 0.5, "sip": 1, "msrp": 1, "sdp": 2, "ua": 3, "registry": 3.5, "gateway": 4,
    "routing": 5, "events": 5, "mi": 6, "mi_commands": 7, "testing": 8, "service": 9,
    "tap": 10,
}
# Layers on one level that must not know each other.
SEPARATE = {frozenset({"sip", "msrp"}), frozenset({"routing", "events"})}


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts[0] == "etc":
            continue  # configuration examples (routing scripts), not layers
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "__init__"] = path
    return found


# Layers kept as flat modules split by job (ua.py + ua_*.py, sdp.py + sdp_*.py): one layer.
FLAT_FAMILIES = {"ua", "sdp"}


def layer(name: str) -> str:
    top = name.split(".")[0]
    family = top.split("_")[0]
    return family if family in FLAT_FAMILIES else top


def imports_of(name: str, path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, at module level) for every import statement in ``path``."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join([PKG, *base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            targets = [mod]
            if node.module is None or mod in (PKG, f"{PKG}.sip", f"{PKG}.msrp"):
                targets = [f"{mod}.{a.name}" for a in node.names]
            out += [(t, node.lineno, id(node) in top_level) for t in targets]
    return out


def ours(imported: str) -> str | None:
    if imported == PKG or not imported.startswith(PKG + "."):
        return None
    return imported[len(PKG) + 1:]


MODULES = modules()
# Names the package's __init__ defines (``from msrp_gateway import __version__``).
ROOT_NAMES = {t.id for node in ast.parse((ROOT / "__init__.py").read_text("utf-8")).body
              if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def test_the_walk_sees_the_package():
    assert {"config", "service", "tap"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    src_layer = layer(name)
    problems = []
    for imported, line, _top in imports_of(name, MODULES[name]):
        target = ours(imported)
        if target is None or src_layer == "__init__" or target in ROOT_NAMES:
            continue
        dst_layer = layer(target)
        if dst_layer == src_layer:
            if name in LEAF_CORES and target in TWISTED_SIDE:
                problems.append(f"line {line}: {name} (message/uri core) imports {target}")
            continue
        if dst_layer not in LEVELS or src_layer not in LEVELS:
            problems.append(f"line {line}: {name} -> {target}: layer unknown to this test "
                            "(add it to LEVELS with its place in DESIGN.md)")
            continue
        if name in LEAF_CORES:
            problems.append(f"line {line}: {name} (message/uri core) imports {target}")
        elif frozenset({src_layer, dst_layer}) in SEPARATE:
            problems.append(f"line {line}: {name} imports {target} (separate layers)")
        elif LEVELS[dst_layer] >= LEVELS[src_layer]:
            problems.append(f"line {line}: {name} imports higher layer {target}")
    assert not problems, "\n".join(problems)


def _ours_reachable(name: str) -> set[str]:
    """``name`` and every module of ours it imports, transitively."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in MODULES:
            continue
        seen.add(current)
        todo += [t for imported, _l, _t in imports_of(current, MODULES[current])
                 if (t := ours(imported)) is not None]
    return seen


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n in SANS_IO))
def test_sans_io_cores_import_no_twisted(name):
    """Checked through everything of ours the core imports, so a helper module it splits
    out stays sans-IO too."""
    bad = [f"{mod} line {line}: {imported}"
           for mod in sorted(_ours_reachable(name))
           for imported, line, _ in imports_of(mod, MODULES[mod])
           if imported.split(".")[0] in ("twisted", "socket", "asyncio", "select")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "tap"))
def test_only_tap_touches_the_global_reactor_at_import(name):
    bad = [f"line {line}" for imported, line, top in imports_of(name, MODULES[name])
           if top and imported == "twisted.internet.reactor"]
    assert not bad, f"{name} imports the global reactor at module level: {bad}"


def test_the_socket_string_parser_imports_nothing_of_ours():
    """sockets.py is the floor every layer may stand on (config, sip, msrp, events)."""
    found = [m for m, _l, _t in imports_of("sockets", MODULES["sockets"]) if ours(m)]
    assert found == []


def test_the_checker_catches_an_upward_import(tmp_path):
    """The walk is not vacuous: a sip module importing the gateway is reported."""
    path = tmp_path / "stack.py"
    path.write_text("from ..gateway import Gateway\nimport msrp_gateway.ua\n")
    found = [ours(m) for m, _l, _t in imports_of("sip.stack", path)]
    assert found == ["gateway", "ua"]
