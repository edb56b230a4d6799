"""Declaring what a service does when an event arrives.

    handlers = EventHandlers("orders")

    @handlers.on(PaymentSucceeded)
    async def mark_order_paid(event: Envelope, data: PaymentSucceeded, session: AsyncSession) -> None:
        ...

The runtime (:mod:`ember_shared.events.consumer`) calls each handler inside a transaction
that also records the event id as handled, so a redelivered event changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ember_shared.events.envelope import Envelope, EventData

DataT = TypeVar("DataT", bound=EventData)
HandlerFn = Callable[[Envelope, Any, AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class RegisteredHandler:
    name: str
    event_type: str
    data_type: type[EventData]
    fn: HandlerFn


@dataclass
class EventHandlers:
    service: str
    handlers: list[RegisteredHandler] = field(default_factory=list)

    def on(
        self, data_type: type[DataT], *, name: str | None = None
    ) -> Callable[
        [Callable[[Envelope, DataT, AsyncSession], Awaitable[None]]],
        Callable[[Envelope, DataT, AsyncSession], Awaitable[None]],
    ]:
        def register(
            fn: Callable[[Envelope, DataT, AsyncSession], Awaitable[None]],
        ) -> Callable[[Envelope, DataT, AsyncSession], Awaitable[None]]:
            if not data_type.TYPE:
                raise ValueError(f"{data_type.__name__} has no TYPE")
            handler_name = name or f"{self.service}.{fn.__name__}"
            if any(
                h.name == handler_name and h.event_type == data_type.TYPE for h in self.handlers
            ):
                # The name is what handled_events records: a twin would be skipped as done.
                raise ValueError(f"{handler_name} already handles {data_type.TYPE}")
            self.handlers.append(
                RegisteredHandler(
                    name=handler_name,
                    event_type=data_type.TYPE,
                    data_type=data_type,
                    fn=fn,
                )
            )
            return fn

        return register

    @property
    def event_types(self) -> list[str]:
        return sorted({h.event_type for h in self.handlers})
