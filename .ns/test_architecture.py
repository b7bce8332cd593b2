"""The dependency rules of docs/architecture.md hold: the import-linter contracts in pyproject.toml
(also run by ``make lint``) are all kept, and none of them has been dropped."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECK = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"


def test_every_import_contract_is_kept() -> None:
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_the_contracts_are_the_documented_ones() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    assert set(contracts) >= {
        "layers",
        "product-never-imports-simulators",
        "stages-independent",
        "alerts-not-runtime",
        "kafka-in-runtime",
        "pure-kernels",
        "acyclic",
    }
    runtime = sorted(f.stem for f in (REPO / "tocsin").glob("*.py") if f.stem != "__init__")
    assert contracts["layers"]["containers"] == ["tocsin"]
    assert contracts["layers"]["exhaustive"] is True
    # the runtime layer is every module of tocsin/ (exhaustive: a new one must be placed)
    assert contracts["layers"]["layers"] == [
        "simulators",
        " : ".join(runtime),
        "ingest | detectors | alerts",
        "schemas",
    ]
    # the one exception: the command line's simulator subcommands
    ignored = contracts["layers"].get("ignore_imports", [])
    assert ignored == ["tocsin.cli -> tocsin.simulators.**"]
    assert not any(m.startswith("tocsin.kafka") for m in contracts["kafka-in-runtime"]["source_modules"])


PACKAGES = ("schemas", "ingest", "detectors", "alerts", "simulators")


def test_the_wheel_has_one_top_level_name() -> None:
    """The design's folders stay at the top of the repository; the distribution holds them under
    ``tocsin`` through symlinks (docs/architecture.md, Packaging)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["tocsin", "tocsin.*"]
    for name in PACKAGES:
        link = REPO / "tocsin" / name
        assert link.is_symlink(), link
        assert link.resolve() == (REPO / name).resolve()


def _bare_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in PACKAGES]
    return found


def test_no_module_imports_a_package_by_its_bare_name() -> None:
    """``import schemas`` would load a second copy of a module already loaded as
    ``tocsin.schemas`` (two classes of one name, two metric registries): every import names the
    namespace."""
    offenders = []
    for top in ("tocsin", *PACKAGES, "tests"):
        for dirpath, dirnames, filenames in os.walk(REPO / top):  # does not enter the symlinks
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            offenders += [o for f in filenames if f.endswith(".py") for o in _bare_imports(Path(dirpath) / f)]
    assert offenders == []
