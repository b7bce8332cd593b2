"""Configuration files: a YAML (``.yaml``/``.yml``) or JSON file read into a pydantic model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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


def _yaml_line(text: str, loc: tuple[int | str, ...], key: str | None) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (a pydantic error location), or of its mapping
    key ``key`` when given (an error about one key of a mapping); None when it cannot be found."""
    import yaml

    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    if key is not None:  # the key, in the node or a mapping below it (depth first)
        stack = [node]
        while stack:
            here = stack.pop()
            if isinstance(here, yaml.MappingNode):
                for k, _v in here.value:
                    if k.value == key:
                        return int(k.start_mark.line) + 1
                stack.extend(v for _k, v in reversed(here.value))
            elif isinstance(here, yaml.SequenceNode):
                stack.extend(reversed(here.value))
    return line


def _where(text: str, exc: ValidationError) -> str:
    """`` (line N)`` of the first error of a YAML file, when it can be placed."""
    first = exc.errors()[0]
    key = (first.get("ctx") or {}).get("key")
    line = _yaml_line(text, tuple(first["loc"]), key if isinstance(key, str) else None)
    return f" line {line}" if line else ""


def load_model_file(path: str | Path, model_cls: type[M], what: str, *, wrap_read_errors: bool = True) -> M:
    """Read ``path`` into ``model_cls``; errors are re-raised as ``ValueError(f"{what} {path}: {error}")``,
    with `` line N`` after the path when a YAML file's first validation error can be placed.

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
    except ValidationError as exc:
        where = _where(text, exc) if text is not None and p.suffix in (".yaml", ".yml") else ""
        raise ValueError(f"{what} {p}{where}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        raise ValueError(f"{what} {p}: {exc}") from exc
