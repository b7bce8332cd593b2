"""The README and the docs beside it stay true: the two commands, the settings table (docs/settings.md),
the Kafka topics and dead-letter reasons (docs/operations.md), the size of the README, and what .ci/run calls."""

from __future__ import annotations

import re
from pathlib import Path

from tocsin.schemas.deadletter import Reason
from tocsin.schemas.topics import ALL_KAFKA_TOPICS
from tocsin.settings import markdown_table

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SETTINGS = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands() -> None:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None and README.index(block.group(0)) < 200
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)


def test_settings_table_matches_the_code() -> None:
    table = SETTINGS.split("<!-- settings:start -->\n")[1].split("\n<!-- settings:end -->")[0]
    assert table == markdown_table()


def test_every_kafka_topic_and_dead_letter_reason_is_documented() -> None:
    for t in ALL_KAFKA_TOPICS:
        assert f"`{t}`" in OPERATIONS, t
    for r in Reason:
        assert f"`{r.value}`" in OPERATIONS, r


def test_readme_is_short_and_its_links_resolve() -> None:
    assert len(README.encode("utf-8")) <= 15 * 1024
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (REPO / target).exists(), target
