"""The one JSON encoding used on every wire (MQTT, Kafka, HTTP): compact UTF-8 JSON.

Timestamps are ISO 8601 with an explicit offset; NaN and infinity are refused both ways.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=False).encode("utf-8")


def decode(cls: type[M], data: bytes | str) -> M:
    return cls.model_validate_json(data)
