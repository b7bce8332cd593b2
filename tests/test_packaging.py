"""The built distribution: one top-level name in site-packages, and it works from there.

The wheel is built from the checkout (``pip wheel``, the same build the container image runs),
installed into a folder of its own and imported from a working directory outside the checkout,
so that nothing of the source tree can stand in for what the wheel lacks."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import importlib.util, json, sys
from importlib import resources

import tocsin.schemas.alert, tocsin.worker, tocsin.api, tocsin.simulators.run
scenarios = sorted(p.name for p in resources.files("tocsin.simulators").joinpath("scenarios").iterdir())
static = sorted(p.name for p in resources.files("tocsin.alerts.console").joinpath("static").iterdir())
print(json.dumps({
    "alert_module": tocsin.schemas.alert.__file__,
    "bare": [n for n in ("schemas", "ingest", "detectors", "alerts", "simulators") if importlib.util.find_spec(n)],
    "scenarios": scenarios,
    "static": static,
}))
"""


def test_the_wheel_holds_one_top_level_name_and_runs_from_site_packages(tmp_path: Path) -> None:
    import json

    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("tocsin-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"tocsin", wheel.name.split("-py")[0] + ".dist-info"}
    # the design's folders are subpackages of tocsin, as files, not as links
    for pkg in ("schemas", "ingest", "detectors", "alerts", "simulators"):
        assert f"tocsin/{pkg}/__init__.py" in names

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["alert_module"]).is_relative_to(site)
    assert found["bare"] == []
    shipped = sorted(p.name for p in (REPO / "simulators" / "scenarios").iterdir() if p.suffix == ".yaml")
    assert [s for s in found["scenarios"] if s.endswith(".yaml")] == shipped
    assert "console.js" in found["static"]

    version = subprocess.run(
        [sys.executable, "-m", "tocsin.cli", "--version"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0 and version.stdout.startswith("tocsin "), version.stdout + version.stderr
