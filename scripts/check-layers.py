#!/usr/bin/env python3
"""The library's modules import each other without a cycle, and each top-level module only
imports modules declared before it in harness/src/lib.rs (the layers, lowest first).

With `--dot`, reads instead the module graph that cargo-modules draws from rust-analyzer's
own name resolution (`make cycles` pipes it in) and checks that its "uses" edges have no
cycle: a second witness, which also sees an inherent `impl` written in another module as
that type's module depending on it.

Reads the sources as text: every `use` tree and every inline `crate::`, `super::` or
`self::` path outside comments, strings and `#[cfg(test)] mod tests` is an edge to the
deepest module it names (an item in a module counts as that module). A module that
imports the crate's own re-exports (`crate::Result`) points at the root, which imports
everything: that is a cycle too. Exits 1 and says which modules, else prints a summary.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "harness" / "src"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("lib", "mod"):
        parts.pop()
    return tuple(parts)


def code_of(text):
    """The text without tests, comments and string literals."""
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = re.sub(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"'(?:\\.|[^'\\\n])'", "''", text)
    return re.sub(r"//[^\n]*", "", text)


def expand(tree):
    """`a::{b, c::{d}}` -> ['a::b', 'a::c::d'] (`self` in braces names the prefix)."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner = tree[:start], tree[start + 1:i]
                parts, d, last = [], 0, 0
                for j, c in enumerate(inner + ","):
                    d += c == "{"
                    d -= c == "}"
                    if c == "," and d == 0:
                        if inner[last:j]:
                            parts.append(inner[last:j])
                        last = j + 1
                out = []
                for p in parts:
                    out += [prefix.rstrip(":") if q == "self" else prefix + q for q in expand(p)]
                return out
    return [re.split(r"\bas\b", tree)[0]]


def inline_modules(code):
    """[(start, end, name)] for every `mod name { ... }` written inside a file."""
    found = []
    for m in re.finditer(rf"\bmod\s+({IDENT})\s*\{{", code):
        depth, i = 0, m.end() - 1
        while i < len(code):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            if depth == 0:
                break
            i += 1
        found.append((m.end(), i, m.group(1)))
    return found


def inside(module, inline, pos):
    """The module a position of a file is in: the file's, plus the inline ones around it."""
    path = module
    for start, end, name in inline:
        if start <= pos < end:
            path = path + (name,)
    return path


def resolve(module, path, modules):
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base = module
        while segs and segs[0] in ("super", "self"):
            base = base[:-1] if segs.pop(0) == "super" else base
    else:
        # `mod_name::…` right after `use`: a child module (2018 paths), or an external crate.
        if module + (segs[0],) not in modules:
            return None
        base = module
    target = base
    for s in segs:
        if target + (s,) in modules:
            target = target + (s,)
        else:
            break
    return target


def check_dot(text):
    edges = {}
    for a, b in re.findall(r'"([^"]+)" -> "([^"]+)" \[label="uses"', text):
        if a != b:
            edges.setdefault(a, set()).add(b)
            edges.setdefault(b, set())
    state, cycles = {}, []

    def visit(u, path):
        state[u] = 1
        path.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                cycles.append(path[path.index(v):] + [v])
            elif v not in state:
                visit(v, path)
        path.pop()
        state[u] = 2

    sys.setrecursionlimit(10000)
    for u in sorted(edges):
        if u not in state:
            visit(u, [])
    if not edges:
        print("check-layers --dot: no module graph on stdin (is cargo-modules installed?)", file=sys.stderr)
        sys.exit(2)
    if cycles:
        print("check-layers --dot: import cycles:", file=sys.stderr)
        for c in cycles:
            print("  " + " -> ".join(c), file=sys.stderr)
        sys.exit(1)
    n = sum(len(v) for v in edges.values())
    print(f"check-layers --dot: {len(edges)} modules, {n} use edges (rust-analyzer's resolution), no cycle")


def main():
    if sys.argv[1:] == ["--dot"]:
        check_dot(sys.stdin.read())
        return
    files = sorted(SRC.rglob("*.rs"))
    modules = {module_of(f) for f in files}
    order = [m for m in re.findall(rf"^\s*(?:pub(?:\(crate\))? )?mod ({IDENT});", (SRC / "lib.rs").read_text(), re.M)]
    edges = {m: set() for m in modules}
    for f in files:
        me = module_of(f)
        code = code_of(f.read_text())
        inline = inline_modules(code)
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            paths += [(inside(me, inline, m.start()), p) for p in expand(m.group(1))]
        rest = re.sub(r"\buse\s+[^;]+;", lambda m: " " * len(m.group(0)), code)
        for m in re.finditer(rf"\b(?:crate|super|self)(?:::{IDENT})+", rest):
            paths.append((inside(me, inline, m.start()), m.group(0)))
        for base, p in paths:
            target = resolve(base, p, modules)
            if target is not None and target != me:
                edges[me].add(target)

    problems = []
    # Tarjan's strongly connected components: any with two or more modules is a cycle.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for m in sorted(modules):
        if m not in index:
            visit(m)
    name = lambda m: "::".join(("crate",) + m)
    for comp in sccs:
        problems.append("import cycle among: " + ", ".join(sorted(name(m) for m in comp)))

    rank = {m: i for i, m in enumerate(order)}
    for a in sorted(modules):
        for b in sorted(edges[a]):
            if not a or not b or a[0] == b[0]:
                continue
            if a[0] not in rank or b[0] not in rank:
                problems.append(f"{name(a)} or {name(b)} is not declared in lib.rs")
            elif rank[b[0]] > rank[a[0]]:
                problems.append(f"{name(a)} imports {name(b)}, a module of a higher layer (lib.rs declares it later)")

    if problems:
        print("check-layers: the library's modules are knotted:", file=sys.stderr)
        for p in sorted(set(problems)):
            print("  " + p, file=sys.stderr)
        sys.exit(1)
    n_edges = sum(len(v) for v in edges.values())
    print(f"check-layers: {len(modules)} modules, {n_edges} imports, no cycle, every import points down a layer or within one module's folder")


if __name__ == "__main__":
    main()
