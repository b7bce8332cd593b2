"""Plumbing shared by the adapters of JSON-over-HTTP providers (SMS carrier, broadcast platform).

:class:`HttpProvider` owns the aiohttp session (``start``/``stop``, ``async with``), holds the API
key as a :class:`pydantic.SecretStr` that is only unwrapped to build the ``Authorization`` header
(it never reaches logs, ``repr`` or a result's ``detail``), posts JSON, and classifies what comes
back: a 2xx answer counts only when it is ``application/json`` with a JSON object the subclass's
schema accepts (:func:`checked`); anything else (a captive portal's ``200 text/html``, an empty
``204``, a body without a message id) is ``RETRY``, never ``ACCEPTED``, since the provider may or may
not have the message and the idempotency key makes the retry safe; 5xx, 408, 425 and 429 are
``RETRY`` with the provider's ``Retry-After``; any other 3xx/4xx is ``REJECTED``; timeouts and
connection errors are ``RETRY``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self, TypeVar

import aiohttp
from pydantic import BaseModel, SecretStr, ValidationError

from tocsin.alerts.adapters.base import AdapterError, DeliveryResult, Outcome

MASK = "**********"
RETRY_4XX_STATUSES = frozenset({408, 425, 429})

OnSuccess = Callable[[int, dict[str, Any]], DeliveryResult]
"""Turns a 2xx answer (status, its JSON object body) into a result."""
ACCEPTED_STATUSES = frozenset({200, 201, 202})

M = TypeVar("M", bound=BaseModel)


def checked(model: type[M], status: int, data: dict[str, Any]) -> M | DeliveryResult:
    """``data`` validated by ``model``, or a ``RETRY`` naming what the provider's 2xx answer lacked."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)[:3])
        return DeliveryResult(Outcome.RETRY, detail=f"HTTP {status} answer not understood ({wrong}); not counted")


def taken(ref: str, shown: str, *, duplicate: bool) -> DeliveryResult:
    """A provider took the request: ``ACCEPTED``, or ``DUPLICATE`` when it already had it (same key)."""
    if duplicate:
        return DeliveryResult(Outcome.DUPLICATE, provider_ref=ref, detail=f"{shown} (duplicate)")
    return DeliveryResult(Outcome.ACCEPTED, provider_ref=ref, detail=shown)


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None.

    ``now_s`` is the current Unix time, used only for the HTTP-date form.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def json_object(body: str) -> dict[str, Any]:
    """``body`` parsed as a JSON object, or ``{}`` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class HttpProvider:
    """Base of an adapter that POSTs JSON to one provider with a Bearer API key.

    Subclasses set ``name``, build payloads and call :meth:`_post_json`; they may override
    :meth:`_error_text` and the ``_max_detail_body_chars`` limit for error details.
    """

    name: str
    _max_detail_body_chars: ClassVar[int] = 200

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._base_url = base_url.rstrip("/")
        self._api_key = SecretStr(api_key)
        self._timeout_s = timeout_s
        self._wall_clock_s = wall_clock_s
        self._session: aiohttp.ClientSession | None = None

    def _repr_fields(self) -> dict[str, object]:
        """Extra constructor settings shown by ``repr`` between the API key and the timeout."""
        return {}

    def __repr__(self) -> str:
        extra = "".join(f"{key}={value!r}, " for key, value in self._repr_fields().items())
        return (
            f"{type(self).__name__}(base_url={self._base_url!r}, api_key='{MASK}', "
            f"{extra}timeout_s={self._timeout_s!r})"
        )

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise AdapterError(f"{type(self).__name__}.send called before start()")
        return self._session

    async def _post_json(
        self, path: str, payload: dict[str, Any], on_success: OnSuccess, *, correlation_id: str = ""
    ) -> DeliveryResult:
        """POST ``payload`` to ``base_url + path`` and classify the answer; never raises for I/O."""
        session = self._require_session()
        headers = {"Authorization": f"Bearer {self._api_key.get_secret_value()}"}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        try:
            async with session.post(
                f"{self._base_url}{path}", json=payload, headers=headers, allow_redirects=False
            ) as resp:
                body = await resp.text(errors="replace")
                if 200 <= resp.status < 300:
                    return self._success(resp.status, resp.content_type, body, on_success)
                return self._classify_failure(resp.status, resp.headers.get("Retry-After"), body)
        except TimeoutError:
            return DeliveryResult(Outcome.RETRY, detail=f"timeout after {self._timeout_s}s")
        except aiohttp.ClientError as exc:
            return DeliveryResult(Outcome.RETRY, detail=self._scrub(f"{type(exc).__name__}: {exc}"))

    def _success(self, status: int, content_type: str, body: str, on_success: OnSuccess) -> DeliveryResult:
        """A 2xx answer counts only with the expected status, JSON content type and a JSON object."""
        if status not in ACCEPTED_STATUSES:
            return DeliveryResult(Outcome.RETRY, detail=f"HTTP {status} is not an acceptance; not counted")
        if content_type != "application/json":
            shown = content_type or "no content type"
            return DeliveryResult(
                Outcome.RETRY, detail=f"HTTP {status} with {shown}, not application/json; not counted"
            )
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return DeliveryResult(Outcome.RETRY, detail=f"HTTP {status} body is not a JSON object; not counted")
        return on_success(status, data)

    def _classify_failure(self, status: int, retry_after: str | None, body: str) -> DeliveryResult:
        """A non-2xx answer: ``RETRY`` (with ``Retry-After``) for 5xx/408/425/429, else ``REJECTED``."""
        detail = self._scrub(f"HTTP {status}: {self._error_text(body)}")
        if status >= 500 or status in RETRY_4XX_STATUSES:
            wait_s = parse_retry_after(retry_after, now_s=self._wall_clock_s())
            return DeliveryResult(Outcome.RETRY, detail=detail, retry_after_s=wait_s)
        # 400/401/403/404/409/422 and any other 3xx/4xx: the same request will fail again.
        return DeliveryResult(Outcome.REJECTED, detail=detail)

    def _error_text(self, body: str) -> str:
        """The provider's ``error`` message, or the raw body, shortened for ``detail``."""
        data = json_object(body)
        text = str(data["error"]) if "error" in data else body.strip()
        return text[: self._max_detail_body_chars]

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that may echo request data (error bodies, exceptions)."""
        secret = self._api_key.get_secret_value()
        return text.replace(secret, MASK)
