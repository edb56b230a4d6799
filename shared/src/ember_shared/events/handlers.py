"""Declaring what a service does when an event arrives.

    handlers = EventHandlers("orders")

    @handlers.on(PaymentSucceeded)
    async def mark_order_paid(event: Envelope, data: PaymentSucceeded, session: AsyncSession) -> None:
        ...

The runtime (:mod:`ember_shared.events.consumer`) calls each handler inside a transaction
that also records the event id as handled, so a redelivered event changes nothing.

A handler may ask for more than the event, its data and the session, as a route asks Litestar
for its dependencies: each parameter after the first three is resolved by name, for every call,
from the providers registered on the ``EventHandlers`` (or on the app's
``ServiceSpec.event_dependencies``, for what only the app can make)::

    handlers = EventHandlers("catalog", dependencies={"clock": provide_clock})

    @handlers.on(PaymentSucceeded)
    async def sell(event: Envelope, data: PaymentSucceeded, session: AsyncSession,
                   keeper: StockKeeper) -> None: ...

A provider is a function, plain or async, whose parameters are themselves resolved by name:
``event``, ``data`` and ``session`` are the call's own, any other name is another provider.
A name that nothing provides stops the consumer from starting.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ember_shared.events.envelope import Envelope, EventData

DataT = TypeVar("DataT", bound=EventData)
P = ParamSpec("P")
HandlerFn = Callable[..., Awaitable[None]]
#: Makes a dependency for one call: plain or async, its parameters resolved by name.
Provider = Callable[..., Any]
#: The names a provider or handler may take that every call has.
CALL_NAMES = frozenset({"event", "data", "session"})


def parameter_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


@dataclass(frozen=True)
class RegisteredHandler:
    name: str
    event_type: str
    data_type: type[EventData]
    fn: HandlerFn
    #: What it asks for past ``(event, data, session)``, resolved from the providers by name.
    needs: tuple[str, ...] = ()
    #: How many events of its type one replica may handle at once (see ``EventHandlers.on``).
    concurrency: int = 1


@dataclass
class EventHandlers:
    service: str
    handlers: list[RegisteredHandler] = field(default_factory=list)
    #: Providers of what handlers ask for by name (see the module's docs).
    dependencies: dict[str, Provider] = field(default_factory=dict)

    def on(
        self, data_type: type[DataT], *, name: str | None = None, concurrency: int = 1
    ) -> Callable[
        [Callable[Concatenate[Envelope, DataT, AsyncSession, P], Awaitable[None]]],
        Callable[Concatenate[Envelope, DataT, AsyncSession, P], Awaitable[None]],
    ]:
        """Register a handler of ``data_type``.

        ``concurrency`` above 1 lets one replica handle that many of the type's events at once
        (each in its own transaction, still exactly once) instead of one after the other, so an
        event does not queue behind the one before it. Only for a handler whose events need no
        order among themselves: each about its own order or mail, say, never a later state of
        the same thing. A stream's events are handled at once only if every handler of its
        type in the service says so (the smallest ``concurrency`` wins).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")

        def register(
            fn: Callable[Concatenate[Envelope, DataT, AsyncSession, P], Awaitable[None]],
        ) -> Callable[Concatenate[Envelope, DataT, AsyncSession, P], Awaitable[None]]:
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
                    needs=parameter_names(fn)[3:],
                    concurrency=concurrency,
                )
            )
            return fn

        return register

    @property
    def event_types(self) -> list[str]:
        return sorted({h.event_type for h in self.handlers})


class Dependencies:
    """Resolves what handlers ask for, per call, from providers by name (checked up front)."""

    def __init__(
        self, providers: Mapping[str, Provider], handlers: Iterable[RegisteredHandler]
    ) -> None:
        self.providers = dict(providers)
        self._parameters = {name: parameter_names(p) for name, p in self.providers.items()}
        for handler in handlers:
            for need in handler.needs:
                self._check(need, (handler.name,))

    def _check(self, name: str, path: tuple[str, ...]) -> None:
        if name in CALL_NAMES:
            return
        if name not in self.providers:
            raise ValueError(
                f"{path[0]} needs {name!r} ({' -> '.join((*path[1:], name))}), "
                "which no event dependency provides"
            )
        if name in path[1:]:
            raise ValueError(f"event dependencies depend on each other: {' -> '.join(path[1:])}")
        for parameter in self._parameters[name]:
            self._check(parameter, (*path, name))

    async def resolve(
        self, handler: RegisteredHandler, event: Envelope, data: EventData, session: AsyncSession
    ) -> dict[str, Any]:
        """The keyword arguments of one call of ``handler``; each provider runs once per call."""
        call: dict[str, Any] = {"event": event, "data": data, "session": session}
        return {need: await self._make(need, call) for need in handler.needs}

    async def _make(self, name: str, made: dict[str, Any]) -> Any:
        if name in made:
            return made[name]
        arguments = {p: await self._make(p, made) for p in self._parameters[name]}
        value = self.providers[name](**arguments)
        if inspect.isawaitable(value):
            value = await value
        made[name] = value
        return value
