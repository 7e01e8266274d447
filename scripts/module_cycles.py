#!/usr/bin/env python3
"""Finds import cycles between the modules of a crate.

Reads `cargo modules dependencies` output (Graphviz) on stdin. Every item is
placed in its module; every "uses" edge between items of two different
modules is lifted to the two sibling modules under their closest common
parent (an edge from `session::link` to `engine::inbox` counts as
`session -> engine`). Edges between a module and its own parent are left
out: a parent declaring its children and children using the parent's types
is how a module is built. The sibling graphs must then be acyclic. Prints
each parent's siblings in an order where every module uses only later ones,
and exits 1 on a cycle.

`cargo modules` sees `use` items and the types in signatures, not paths
written inside code (`crate::peer::ACK_HOLD` in a function body). Given the
crate's source directory, every such path outside comments and test
modules is read from the source too and counted as a use of the module it
names.

    cargo modules dependencies -p longconn-core --lib --no-externs --no-sysroot \\
        | scripts/module_cycles.py core/src
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

NODE = re.compile(r'^\s*"([^"]+)" \[label="([^|"]*)\|')
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"')


# A path from the crate root or the parent module, as written in code.
INLINE_PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
# Where a file's test module starts: the rest of the file is left out.
TEST_MODULE = re.compile(r"^#\[cfg\(test\)\]\s*\n(?:#\[[^\n]*\]\s*\n)*(?:pub )?mod \w+", re.M)


def module_of_file(root: Path, file: Path, crate: str) -> str:
    """`src/engine/mod.rs` -> `crate::engine`, `src/engine/inbox.rs` -> `crate::engine::inbox`."""
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return "::".join([crate, *parts])


def strip_comments(text: str) -> str:
    """Drops `//` comments (doc comments too) and string literals' contents."""
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def inline_edges(root: Path, crate: str, modules: set[str]) -> list[tuple[str, str]]:
    """Edges from each file's module to the modules its code names by path."""
    edges = []
    for file in sorted(root.rglob("*.rs")):
        source = module_of_file(root, file, crate)
        if source not in modules:
            continue  # a binary's file, or one no module declares
        text = file.read_text()
        if m := TEST_MODULE.search(text):
            text = text[: m.start()]
        for m in INLINE_PATH.finditer(strip_comments(text)):
            names = m[2].split("::")[1:]
            base = crate if m[1] == "crate" else source.rpartition("::")[0]
            target = "::".join([base, *names])
            edges.append((source, target))
    return edges


def main() -> int:
    kinds, edges = {}, []
    for line in sys.stdin:
        if m := EDGE.match(line):
            edges.append((m[1], m[2]))
        elif m := NODE.match(line):
            kinds[m[1]] = m[2].split()[-1]
    modules = {p for p, kind in kinds.items() if kind in ("mod", "crate")}
    if not modules:
        print("no modules in the input", file=sys.stderr)
        return 2
    if len(sys.argv) > 1:
        crate = next(p for p, kind in kinds.items() if kind == "crate")
        edges += inline_edges(Path(sys.argv[1]), crate, modules)

    def module_of(path: str) -> str | None:
        while path and path not in modules:
            path = path.rpartition("::")[0]
        return path or None

    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for source, target in edges:
        a, b = module_of(source), module_of(target)
        if a is None or b is None or a == b:
            continue
        pa, pb = a.split("::"), b.split("::")
        common = 0
        while common < min(len(pa), len(pb)) and pa[common] == pb[common]:
            common += 1
        if common in (len(pa), len(pb)):
            continue  # a module and one of its ancestors
        parent = "::".join(pa[:common])
        graph[parent][pa[common]].add(pb[common])

    cycles = 0
    for parent in sorted(graph):
        siblings = graph[parent]
        names = sorted(set(siblings) | {b for bs in siblings.values() for b in bs})
        order, state = [], {}

        def visit(node: str, stack: list[str]) -> None:
            nonlocal cycles
            if state.get(node) == "done":
                return
            if state.get(node) == "active":
                cycle = stack[stack.index(node):] + [node]
                print(f"cycle in {parent}: {' -> '.join(cycle)}")
                cycles += 1
                return
            state[node] = "active"
            for nxt in sorted(siblings.get(node, ())):
                visit(nxt, stack + [node])
            state[node] = "done"
            order.append(node)

        for name in names:
            visit(name, [])
        print(f"{parent}: {' > '.join(reversed(order))}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
