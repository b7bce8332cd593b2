"""Configuration files: a YAML (``.yaml``/``.yml``) or JSON file read into a pydantic model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

MAX_NESTING = 100
"""Deepest bracket nesting a YAML file may have: PyYAML's scanner is quadratic in it (50,000 '[' take minutes)."""


def _flow_depth(text: str) -> int:
    """Deepest nesting of [ and { outside quoted strings (a cheap upper bound, no YAML parsing)."""
    depth = deepest = 0
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def load_model_file(path: str | Path, model_cls: type[M], what: str, *, wrap_read_errors: bool = True) -> M:
    """Read ``path`` into ``model_cls``; errors are re-raised as ``ValueError(f"{what} {path}: {error}")``.

    An empty YAML file reads as ``{}``. With ``wrap_read_errors=False`` a file that cannot be read or
    decoded raises the original exception (``OSError``, ``UnicodeDecodeError``); only parse and
    validation errors are wrapped.
    """
    p = Path(path)
    text = None if wrap_read_errors else p.read_text(encoding="utf-8")
    try:
        if text is None:
            text = p.read_text(encoding="utf-8")
        if p.suffix in (".yaml", ".yml"):
            import yaml

            if _flow_depth(text) > MAX_NESTING:
                raise ValueError(f"nested deeper than {MAX_NESTING} levels")
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        return model_cls.model_validate(data)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        raise ValueError(f"{what} {p}: {exc}") from exc
