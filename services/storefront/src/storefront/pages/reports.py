"""Content-Security-Policy violation reports (the gateway's ``report-uri``)."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from ember_shared.problems import Problem
from litestar import Request, post

log = structlog.get_logger("storefront.reports")

#: Biggest CSP report we read; browsers send a few hundred bytes.
MAX_REPORT_BYTES = 16_384


class CspReport(msgspec.Struct, rename="kebab"):
    document_uri: str = ""
    violated_directive: str = ""
    effective_directive: str = ""
    blocked_uri: str = ""


class CspReportBody(msgspec.Struct):
    csp_report: CspReport = msgspec.field(name="csp-report")


@post("/csp-report", include_in_schema=False, status_code=204)
async def csp_report(request: Request[Any, Any, Any]) -> None:
    """Browsers post Content-Security-Policy violations here (the gateway's ``report-uri``)."""
    body = await request.body()
    if len(body) > MAX_REPORT_BYTES:
        raise Problem(413, "payload-too-large", "A CSP report is at most 16 KiB.")
    try:
        report = msgspec.json.decode(body, type=CspReportBody).csp_report
    except msgspec.DecodeError as exc:
        raise Problem(400, "malformed-json", "The body is not a JSON CSP report.") from exc
    log.warning(
        "csp_violation",
        document=report.document_uri[:200],
        directive=report.effective_directive or report.violated_directive,
        blocked=report.blocked_uri[:200],
    )


ROUTES = [csp_report]
