"""Acknowledgements: an operator's ack of one alert message, as the operator API writes it to
Kafka ``alerts.acks`` (key: the fingerprint) and reads it back into its view."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from tocsin.schemas.common import WireModel


class Ack(WireModel):
    """An operator's acknowledgement of one alert message (Kafka ``alerts.acks``, key = fingerprint)."""

    fingerprint: str = Field(min_length=1)
    identifier: str = Field(min_length=1, description="the message acknowledged")
    by: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=1000)
    at: AwareDatetime
