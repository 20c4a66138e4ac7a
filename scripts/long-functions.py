#!/usr/bin/env python3
"""Lists functions (tests aside) longer than a limit in the given Rust files.

A function runs from its `fn` line to the closing brace at the same
indentation; `#[cfg(test)]` modules are skipped.
Usage: long-functions.py LIMIT FILE...   (exit 1 when any is over)"""
import re, sys

def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.strip() == "#[cfg(test)]" and i + 1 < n and re.match(r"\s*(pub(\([^)]*\))? )?mod ", lines[i + 1]):
            ind = len(lines[i + 1]) - len(lines[i + 1].lstrip())
            j = i + 2
            while j < n and not (lines[j].startswith(" " * ind + "}") and len(lines[j]) - len(lines[j].lstrip()) == ind):
                j += 1
            i = j + 1
            continue
        m = re.match(r"(\s*)(pub(\([^)]*\))? )?(const )?(async )?(unsafe )?fn (\w+)", line)
        if m and not line.rstrip().endswith(";"):
            ind = len(m.group(1))
            j = i + 1
            while j < n and not (lines[j].startswith(" " * ind + "}") and len(lines[j]) - len(lines[j].lstrip()) == ind):
                j += 1
            yield m.group(7), i + 1, j - i + 1
        i += 1

limit = int(sys.argv[1])
bad = 0
for p in sys.argv[2:]:
    for name, line, length in functions(p):
        if length > limit:
            print(f"{p}:{line}: {name} is {length} lines (limit {limit})")
            bad += 1
sys.exit(1 if bad else 0)
