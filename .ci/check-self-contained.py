#!/usr/bin/env python3
"""Fail if any tracked file refers to a path outside the repository.

A user's clone has nothing beside it: a test, bench, example, fuzz target or CI step that reads
`../shared/...` (or any other path above the repository root, or a machine's absolute work
folder) passes on the team's machines and fails everywhere else. This check reads every tracked
text file and reports:

- any mention of `../shared`;
- absolute paths into a work or home folder (`/work/`, `/home/`, `/root/`);
- relative paths (`../`…) that climb above the repository root. A path in a Markdown file is
  resolved from the file's folder (links); anywhere else from the nearest folder holding a
  `Cargo.toml` (what `CARGO_MANIFEST_DIR` and Cargo's `path =` are relative to), which is the
  shallowest base a build or test resolves it from.

Usage: python3 .ci/check-self-contained.py [REPO]   (exit 1 and one line per finding if any)
"""

import os
import re
import subprocess
import sys

SELF = ".ci/check-self-contained.py"
RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+)[\w.\-/]*")
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|home|root)/[\w.\-/]*")
SHARED = re.compile(r"\.\./+shared\b")


def tracked_files(repo):
    out = subprocess.run(
        ["git", "-C", repo, "ls-files", "-z"], check=True, capture_output=True
    ).stdout
    return [p for p in out.decode().split("\0") if p]


def base_dir(repo, path):
    folder = os.path.dirname(path)
    if path.endswith(".md"):
        return folder
    while True:
        if os.path.isfile(os.path.join(repo, folder, "Cargo.toml")):
            return folder
        if not folder:
            return ""
        folder = os.path.dirname(folder)


def escapes(base, ups):
    depth = len([p for p in base.split("/") if p])
    return ups.count("../") > depth


def findings(repo):
    for path in tracked_files(repo):
        if path == SELF or path.endswith(".lock"):
            continue
        full = os.path.join(repo, path)
        if not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data:
            continue
        text = data.decode("utf-8", errors="replace")
        base = base_dir(repo, path)
        for n, line in enumerate(text.splitlines(), 1):
            if SHARED.search(line):
                yield f"{path}:{n}: refers to ../shared: {line.strip()}"
                continue
            for m in ABSOLUTE.finditer(line):
                yield f"{path}:{n}: absolute path {m.group(0)}"
            for m in RELATIVE.finditer(line):
                if escapes(base, m.group(1)):
                    yield f"{path}:{n}: {m.group(0)} climbs above the repository (from {base or '.'}/)"


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else "."
    bad = list(findings(repo))
    for line in bad:
        print(line)
    if bad:
        print(f"{len(bad)} reference(s) to paths outside the repository", file=sys.stderr)
        return 1
    print("no tracked file refers to a path outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
