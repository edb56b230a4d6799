"""The AsyncAPI document of every domain event, served at ``/api/docs/events``.

The document is generated from the contracts and every service's handlers by ``make asyncapi``
(the generator imports the services, so it lives with the tests) and ships inside this package,
so whichever service serves it needs nothing else.
"""

from __future__ import annotations

from importlib.resources import files

from litestar import get
from litestar.response import Response

ASYNCAPI_RESOURCE = files("ember_shared.events").joinpath("asyncapi.json")


@get(
    ["/api/docs/events", "/api/docs/events/asyncapi.json"],
    include_in_schema=False,
    name="asyncapi",
)
async def asyncapi_document() -> Response[bytes]:
    """AsyncAPI 3 document: each event's stream, payload, publisher and consumers."""
    return Response(ASYNCAPI_RESOURCE.read_bytes(), media_type="application/json")
