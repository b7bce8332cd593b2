"""The registry reloads without a restart, and a broken file never replaces a good one."""

from __future__ import annotations

import os
from pathlib import Path

from tocsin.schemas.registry import Area, Device, Registry, RegistryWatcher


def _write(path: Path, ids: list[str], mtime_ns: int) -> None:
    reg = Registry(
        devices=[Device(device_id=i, family="hydro", site="s", lat=30, lon=120, area=Area(code="330110")) for i in ids]
    )
    path.write_text(reg.model_dump_json(), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_reloads_on_change_after_the_check_interval(tmp_path: Path) -> None:
    path, clock = tmp_path / "r.json", Clock()
    _write(path, ["A"], 1_000_000_000)
    w = RegistryWatcher(path, check_interval_s=5.0, monotonic=clock)
    assert w.get("A") is not None and w.get("B") is None
    _write(path, ["A", "B"], 2_000_000_000)
    clock.t = 4.9
    assert w.get("B") is None  # not checked yet
    clock.t = 5.0
    assert w.get("B") is not None and w.reloads == 1
    clock.t = 20.0
    assert w.get("B") is not None and w.reloads == 1  # unchanged file: no reload


def test_broken_file_keeps_the_previous_registry(tmp_path: Path) -> None:
    path, clock = tmp_path / "r.json", Clock()
    _write(path, ["A"], 1_000_000_000)
    errors: list[Exception] = []
    w = RegistryWatcher(path, check_interval_s=1.0, monotonic=clock, on_error=errors.append)
    path.write_text("{not json", encoding="utf-8")
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    clock.t = 2.0
    assert w.get("A") is not None
    assert len(errors) == 1 and str(path) in str(errors[0])
    assert w.reload() is False
    _write(path, ["C"], 4_000_000_000)
    assert w.reload() is True and w.get("C") is not None and w.get("A") is None
