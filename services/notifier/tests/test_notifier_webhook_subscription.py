"""The Resend endpoint subscribes to what the notifier acts on, and to nothing else (issue 12)."""

from __future__ import annotations

from pathlib import Path

from ember_devkit.devstack.environment import RESEND_EVENTS_NOTIFIER_ACTS_ON, stack_environment
from notifier.webhooks.services import ACTED_ON


def test_make_runs_resend_endpoint_and_the_readme_name_what_the_notifier_acts_on() -> None:
    """``email.sent`` (every mail) would cost a signed request and a transaction that change
    nothing; ``make run``'s stand-in and the README's setup leave it out."""
    assert set(RESEND_EVENTS_NOTIFIER_ACTS_ON) == ACTED_ON
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("Webhooks) to the four types above only:\n", 1)[1].split("`")[1]
    assert set(listed.split(",")) == ACTED_ON


def test_the_stack_tells_the_resend_standin_its_subscription(tmp_path: Path) -> None:
    def environment(given: dict[str, str]) -> dict[str, str]:
        return stack_environment(
            offset=0,
            data_dir=tmp_path,
            database_url="postgresql://x/y",
            redis_url="redis://x/0",
            given=given,
            local_secrets={},
        )

    subscribed = environment({})["RESEND_STANDIN_WEBHOOK_EVENTS"].split(",")
    assert set(subscribed) == ACTED_ON
    # Set by hand, it wins (``*``: every type, as a stand-in without the setting sends).
    given = {"RESEND_STANDIN_WEBHOOK_EVENTS": "*"}
    assert environment(given)["RESEND_STANDIN_WEBHOOK_EVENTS"] == "*"
