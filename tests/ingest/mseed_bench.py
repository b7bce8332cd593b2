"""CPU time to decode one miniSEED record: this tree's decoder against an earlier revision's.

    .venv/bin/python -m tests.ingest.mseed_bench [--rev 1230bde] [--rounds 5] [--n 2000]

The reference is ``ingest/mseed.py`` as it was at ``--rev`` (default: the last revision with the
numpy Steim decoder), read with ``git show`` and imported from a temporary folder; both decode the
first record of each golden file in the same process, in alternating rounds, and the best round of
each is kept (CPU seconds from ``time.process_time``, so other load on the machine does not count).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tocsin.ingest import mseed

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "ingest" / "golden"
NAMES = ["steim2_be_512_multi", "steim1_le_40hz", "steim2_be_100hz", "int32_le_100hz"]


def _module_at(rev: str, folder: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:ingest/mseed.py"], check=True, capture_output=True
    ).stdout
    path = folder / "mseed_reference.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("mseed_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mseed_reference"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _per_record_us(decode: Callable[[bytes], Any], record: bytes, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        decode(record)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="1230bde", help="revision of the reference decoder (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, best kept (default %(default)s)")
    parser.add_argument("--n", type=int, default=2000, help="decodes per round (default %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference = _module_at(args.rev, Path(tmp))
        print(f"{'record':<22} {'bytes':>5} {'samples':>7} {args.rev + ' us':>11} {'now us':>8} {'ratio':>6}")
        for name in NAMES:
            data = (GOLDEN / f"{name}.mseed").read_bytes()
            record = data[: mseed.decode_mseed(data)[0].record_length]
            now, ref = mseed.decode_mseed(record)[0], reference.decode_mseed(record)[0]
            assert np.array_equal(now.samples, ref.samples), name  # the same samples, or no comparison
            best_ref, best_now = float("inf"), float("inf")
            for _ in range(args.rounds):
                best_ref = min(best_ref, _per_record_us(reference.decode_mseed, record, args.n))
                best_now = min(best_now, _per_record_us(mseed.decode_mseed, record, args.n))
            print(
                f"{name:<22} {len(record):>5} {now.num_samples:>7} {best_ref:>11.1f} {best_now:>8.1f} "
                f"{best_ref / best_now:>6.1f}"
            )


if __name__ == "__main__":
    main()
