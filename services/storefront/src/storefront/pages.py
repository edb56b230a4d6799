"""The shop's pages. A placeholder home page until the real storefront lands."""

from __future__ import annotations

from html import escape
from typing import Any

import msgspec
import structlog
from ember_shared.problems import Problem
from litestar import MediaType, Request, get, post
from litestar.response import Response

log = structlog.get_logger("storefront.pages")

#: The services whose API reference pages the home page links to.
API_SERVICES = ("identity", "catalog", "cart", "checkout", "orders", "notifier")

#: Biggest CSP report we read; browsers send a few hundred bytes.
MAX_REPORT_BYTES = 16_384

# Design tokens: every style below uses these and nothing else (invariant 13).
_STYLE = """
:root {
  --color-ink: #2b1d14; --color-paper: #fbf6ef; --color-ember: #c2410c; --color-muted: #7c6a5c;
  --font-body: system-ui, -apple-system, "Segoe UI", sans-serif; --font-size-base: 1.0625rem;
  --font-size-title: 2.5rem; --space-1: .5rem; --space-2: 1rem; --space-4: 2rem; --radius: .5rem;
  --measure: 42rem;
}
body { margin: 0; background: var(--color-paper); color: var(--color-ink);
  font: var(--font-size-base)/1.6 var(--font-body); }
main { max-width: var(--measure); margin: 0 auto; padding: var(--space-4) var(--space-2); }
h1 { font-size: var(--font-size-title); margin: 0 0 var(--space-1); color: var(--color-ember); }
p.lead { color: var(--color-muted); margin-top: 0; }
ul { padding-left: var(--space-2); }
a { color: var(--color-ember); }
footer { margin-top: var(--space-4); color: var(--color-muted); }
"""


def _home_html() -> str:
    links = "\n".join(
        f'      <li><a href="/api/docs/{name}">{escape(name)} API</a></li>' for name in API_SERVICES
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Ember coffee</title>
    <style>{_STYLE}</style>
  </head>
  <body>
    <main>
      <h1>Ember</h1>
      <p class="lead">Small-batch coffee, roasted to order and sent to your door.</p>
      <p>The shop's pages are on their way. Meanwhile, every service documents its API:</p>
      <ul>
{links}
      </ul>
      <footer>Ember &middot; direct from the roaster</footer>
    </main>
  </body>
</html>
"""


@get("/", include_in_schema=False, cache=False)
async def home() -> Response[str]:
    """The shop's home page."""
    return Response(_home_html(), media_type=MediaType.HTML)


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
