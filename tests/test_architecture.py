"""The dependency rules of docs/architecture.md hold: the import-linter contracts in pyproject.toml
(also run by ``make lint``) are all kept, and none of them has been dropped."""

from __future__ import annotations

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
    assert contracts["layers"]["layers"] == ["simulators", "tocsin", "ingest | detectors | alerts", "schemas"]
    # the one exception: the command line's simulator subcommands; no cycle is excused
    ignored = contracts["layers"].get("ignore_imports", [])
    assert ignored == ["tocsin.cli -> simulators.**"]
    assert "ignore_imports" not in contracts["acyclic"]
    assert "tocsin" not in contracts["kafka-in-runtime"]["source_modules"]
