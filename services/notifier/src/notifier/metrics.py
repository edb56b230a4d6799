"""Notifier's own figures for ``/metrics``: mail by state (the worker is another process, so the
table, not a counter in this one, is the truth) and the suppression list."""

from __future__ import annotations

from ember_shared.metrics import scrape_gauge
from litestar import Litestar
from sqlalchemy import func, select

from notifier.models import EmailStatus, PendingEmail, Suppression

MAILS = scrape_gauge(
    "ember_mails", "Mails by state (sent, failed, dead, suppressed, ...).", ["service", "status"]
)
SUPPRESSIONS = scrape_gauge(
    "ember_mail_suppressions", "Addresses on the suppression list.", ["service"]
)


async def mail_probe(app: Litestar) -> None:
    by_status = select(PendingEmail.status, func.count()).group_by(PendingEmail.status)
    async with app.state.db_engine.connect() as connection:
        counts = {str(status): int(n) for status, n in (await connection.execute(by_status)).all()}
        suppressed = (
            await connection.execute(select(func.count()).select_from(Suppression))
        ).scalar_one()
    for status in EmailStatus:
        MAILS.labels(service="notifier", status=status.value).set(counts.get(status.value, 0))
    SUPPRESSIONS.labels(service="notifier").set(suppressed)
