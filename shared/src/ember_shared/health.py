"""Liveness and readiness probes, served by every service under ``/api/health/<service>/``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ember_shared.drain import is_draining
from ember_shared.problems import problem_response


def health_controller(service: str) -> type[Controller]:
    class HealthController(Controller):
        path = f"/api/health/{service}"
        tags = ["health"]
        include_in_schema = True

        @get(
            "/live",
            summary="Liveness: the process answers.",
            description=(
                "With `balancer=true` (a load balancer's probe, e.g. Caddy's health check), a "
                "replica that has been told to stop answers 503 `draining` while it finishes "
                "its work, so that it is no longer chosen; every other caller still gets 200."
            ),
            cache=False,
        )
        async def live(
            self,
            request: Request[Any, Any, Any],
            balancer: bool = Parameter(query="balancer", default=False),
        ) -> Response[Any]:
            if balancer and is_draining(request.app):
                return problem_response(
                    request, 503, "draining", "This replica is stopping; another one answers."
                )
            return Response({"status": "ok", "service": service})

        @get(
            "/ready",
            summary="Readiness: the database answers (Redis down only degrades).",
            cache=False,
        )
        async def ready(self, request: Request[Any, Any, Any]) -> Response[Any]:
            checks: dict[str, str] = {}
            engine: AsyncEngine = request.app.state.db_engine
            try:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                checks["database"] = "ok"
            except Exception as exc:
                checks["database"] = f"down: {type(exc).__name__}"
            try:
                await request.app.state.redis.ping()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"down: {type(exc).__name__}"
            if checks["database"] == "ok":
                # Redis is a helper (docs/degradation.md): without it the service still answers,
                # so taking every replica out of rotation would turn a blip into an outage.
                status = "ready" if checks["redis"] == "ok" else "degraded"
                return Response({"status": status, "service": service, "checks": checks})
            return problem_response(
                request, 503, "unavailable", "A dependency of this service is down.", checks=checks
            )

    return HealthController
