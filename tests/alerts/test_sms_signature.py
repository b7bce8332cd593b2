"""SMS sender signature and length cap. Carriers in China take a text only with the sender's
registered signature in 【】 at its very start, refuse vague and test signatures, and cap a message
at about 500 characters including the signature (GUIDE section 3, carriers' SMS rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.alerts.factories import alert_message
from tocsin.alerts.notify import Notifier, NotifyMetrics, sms_text
from tocsin.alerts.routing import DEFAULT_ROUTING, load_routing
from tocsin.alerts.sms_text import SMS_MAX_CHARS, check_signature, compose_sms
from tocsin.schemas.alert import AlertStatus
from tocsin.schemas.registry import Area, Device, Registry

SIG = "【临江区应急管理局】"
INSTRUCTION = "请立即向上风向撤离，关闭门窗，用湿毛巾捂住口鼻，等待应急部门通知。"


def test_signature_is_wrapped_once() -> None:
    assert check_signature("临江区应急管理局") == SIG
    assert check_signature(" 【临江区应急管理局】 ") == SIG
    assert check_signature("LJ应急") == "【LJ应急】"


@pytest.mark.parametrize(
    "bad",
    ["", "  ", "【】", "应", "临江区应急管理局临江区应急管", "通知", "区应急管理局", "应急管理局"]
    + ["测试", "演练平台", "TEST", "临江区!"],
)
def test_empty_vague_and_test_signatures_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="signature"):
        check_signature(bad)


def test_signature_first_and_exercise_mark_in_the_body() -> None:
    alert = alert_message("x").model_copy(update={"status": AlertStatus.EXERCISE, "instruction": INSTRUCTION})
    text = sms_text(alert, SIG)
    assert text.startswith(SIG + "（演练）青山镇发布yellow预警。")
    assert text.count("【") == 1 and text.count("】") == 1  # only the signature is in 【】
    assert text.endswith(INSTRUCTION)
    test = alert.model_copy(update={"status": AlertStatus.TEST})
    assert sms_text(test, SIG).startswith(SIG + "（测试）")
    assert sms_text(alert.model_copy(update={"status": AlertStatus.ACTUAL}), SIG).startswith(SIG + "青山镇")


def test_long_text_is_capped_at_500_with_the_instruction_whole() -> None:
    description = "监测" * 400  # 800 characters
    text = compose_sms(SIG, "", "青山镇发布危险化学品泄漏橙色预警", description, INSTRUCTION)
    assert len(text) == SMS_MAX_CHARS == 500
    assert text.startswith(SIG + "青山镇发布危险化学品泄漏橙色预警。监测")
    assert text.endswith("…" + INSTRUCTION)
    # a text within the cap is untouched
    short = compose_sms(SIG, "", "标题", "描述。", INSTRUCTION)
    assert short == f"{SIG}标题。描述。{INSTRUCTION}"
    # even a headline too long to fit leaves the instruction whole
    huge = compose_sms(SIG, "", "长" * 600, "描述", INSTRUCTION)
    assert len(huge) == 500 and huge.startswith(SIG + "长") and huge.endswith("…。" + INSTRUCTION)


def test_routing_file_signature_is_checked_at_load(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("sms_signature: 临江区应急管理局\nroutes:\n  - {name: p, channels: [sms], residents: true}\n")
    assert load_routing(good, env={}).sms_signature == SIG
    bad = tmp_path / "bad.yaml"
    bad.write_text("sms_signature: 测试\nroutes:\n  - {name: p, channels: [sms], residents: true}\n")
    with pytest.raises(ValueError, match="test signature"):
        load_routing(bad, env={})


def test_signature_from_the_environment() -> None:
    assert load_routing(None, env={"TOCSIN_SMS_SIGNATURE": "临江区应急管理局"}).sms_signature == SIG
    with pytest.raises(ValueError, match="empty"):
        load_routing(None, env={"TOCSIN_SMS_SIGNATURE": ""})
    assert load_routing(None, env={}).sms_signature is None


def test_notifier_texts_carry_the_signature() -> None:
    registry = Registry(
        devices=[Device(device_id="D01", family="hazmat", site="site", lat=30.0, lon=120.0, area=Area(code="330110"))],
        sms_recipients={"330110": ["+8613800000001"]},
    )
    routing = load_routing(None, env={"TOCSIN_SMS_SIGNATURE": "临江区应急管理局"})
    assert routing.routes == DEFAULT_ROUTING.routes
    notifier = Notifier(registry, {"sms": object()}, NotifyMetrics(CollectorRegistry()), routing=routing)  # type: ignore[dict-item]
    notes = [n for n in notifier.route(alert_message("x")) if n.channel == "sms"]
    assert notes and all(n.text.startswith(SIG) for n in notes)
