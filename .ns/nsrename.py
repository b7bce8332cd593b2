"""Codemod: move the top-level packages under the tocsin namespace in every .py file.
Run from the repository root. Idempotent."""

import os
import re
import sys
from pathlib import Path

PKGS = ["schemas", "ingest", "detectors", "alerts", "simulators"]
ROOT = Path(".").resolve()


def real_modules() -> set[str]:
    mods: set[str] = set()
    for p in PKGS:
        for dirpath, dirnames, filenames in os.walk(ROOT / p):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            rel = Path(dirpath).relative_to(ROOT)
            base = ".".join(rel.parts)
            if (Path(dirpath) / "__init__.py").exists():
                mods.add(base)
            for f in filenames:
                if f.endswith(".py") and f != "__init__.py":
                    mods.add(f"{base}.{f[:-3]}")
    return mods


MODS = real_modules()
DOTTED = re.compile(r"(?<![\w.])(" + "|".join(PKGS) + r")((?:\.\w+)+)")
FROM_BARE = re.compile(r"^(\s*)from (" + "|".join(PKGS) + r") import ", re.M)
IMPORT_BARE = re.compile(r"^(\s*)import (" + "|".join(PKGS) + r")(\s+as\s+\w+)?\s*$", re.M)
TOPICS = {"alerts.silences"}


def dotted(m: re.Match[str]) -> str:
    pkg, rest = m.group(1), m.group(2)
    parts = rest[1:].split(".")
    if f"{pkg}.{parts[0]}" not in MODS:
        return m.group(0)
    text = m.group(0)
    after = m.string[m.end() : m.end() + 1]
    if text in TOPICS and after != ".":
        # a topic name, or a module referenced alone: decide by whether it is in an import
        line_start = m.string.rfind("\n", 0, m.start()) + 1
        line = m.string[line_start : m.start()]
        if not re.match(r"\s*(from|import)\s+$", line):
            return text
    return "tocsin." + text


def rewrite(src: str) -> str:
    src = FROM_BARE.sub(lambda m: f"{m.group(1)}from tocsin.{m.group(2)} import ", src)
    src = IMPORT_BARE.sub(lambda m: f"{m.group(1)}from tocsin import {m.group(2)}{m.group(3) or ''}", src)
    src = DOTTED.sub(dotted, src)
    return src


def main() -> None:
    roots = ["tocsin", *PKGS, "tests", "deploy"]
    changed = 0
    for r in roots:
        for dirpath, dirnames, filenames in os.walk(ROOT / r, followlinks=False):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__",) and not (Path(dirpath) / d).is_symlink()]
            for f in filenames:
                if not f.endswith(".py"):
                    continue
                path = Path(dirpath) / f
                if path.is_symlink():
                    continue
                old = path.read_text(encoding="utf-8")
                new = rewrite(old)
                if new != old:
                    path.write_text(new, encoding="utf-8")
                    changed += 1
    print(f"rewrote {changed} files", file=sys.stderr)


if __name__ == "__main__":
    main()
