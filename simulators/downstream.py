"""The emulated downstream of an embedded run: the SMS carrier and the broadcast platform, each an
HTTP emulator in its own thread. ``tocsin run`` and the scenario runs hand one to
:class:`tocsin.embedded.EmbeddedPipeline`, which delivers to them as it would to the real services."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tocsin.simulators.broadcast_platform import BroadcastPlatformThread, PlatformConfig
from tocsin.simulators.sms_gateway import GatewayConfig, SmsGatewayThread


class EmulatedDownstream:
    """``start()`` starts both emulators (blocking) and returns their base URLs."""

    def __init__(self, api_key: str = "embedded-demo", *, receipt_delay_s: float = 0.1) -> None:
        self.api_key = api_key
        self.sms_server = SmsGatewayThread(GatewayConfig(api_key=api_key, receipt_delay_s=receipt_delay_s))
        self.broadcast_server = BroadcastPlatformThread(PlatformConfig(api_key=api_key))

    def start(self) -> tuple[str, str]:
        return self.sms_server.start(), self.broadcast_server.start()

    def stop(self) -> None:
        self.sms_server.stop()
        self.broadcast_server.stop()

    def sms_stats(self) -> dict[str, Any]:
        """The SMS carrier emulator's counters (stored messages, refused duplicates ...)."""
        with urllib.request.urlopen(f"{self.sms_server.base_url}/_control/stats", timeout=5) as resp:
            return dict(json.loads(resp.read()))
