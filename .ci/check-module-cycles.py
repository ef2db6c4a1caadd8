#!/usr/bin/env python3
"""Fail if two top-level modules of qbind-core import each other, directly or
through others (issue #16: the protocol layers form a DAG). Doc links
(`[`crate::x`]` in comments) do not count; `#[cfg(test)]` modules do not
count either (tests may reach anywhere)."""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qbind-core", "src")
# Facades that exist to compose the others are allowed to sit on top.
TOP = {"lib"}


def module_of(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip(text):
    # Drop comments and test modules.
    text = re.sub(r"//[^\n]*", "", text)
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    return text[: m.start()] if m else text


edges = {}
for root, _, files in os.walk(SRC):
    for f in files:
        if not f.endswith(".rs"):
            continue
        p = os.path.join(root, f)
        mod = module_of(p)
        if mod in TOP:
            continue
        for dep in re.findall(r"crate::([a-z_]+)", strip(open(p, encoding="utf-8").read())):
            if dep != mod and dep not in TOP:
                edges.setdefault(mod, set()).add(dep)

# Find a cycle by depth-first search.
state = {}
stack = []


def visit(m):
    state[m] = 1
    stack.append(m)
    for d in sorted(edges.get(m, ())):
        if state.get(d) == 1:
            cycle = stack[stack.index(d):] + [d]
            print("module import cycle in qbind-core: " + " -> ".join(cycle))
            sys.exit(1)
        if state.get(d) is None:
            visit(d)
    stack.pop()
    state[m] = 2


for m in sorted(edges):
    if state.get(m) is None:
        visit(m)
print(f"qbind-core: {len(edges)} modules, no import cycle")
