"""The internal HTTP contracts: what one Ember service asks another over ``/internal/...``.

One module per providing service. Each request and answer is defined here once and used by both
ends: the provider's controller takes and returns these structs (so its OpenAPI document, and the
published baseline, are generated from them) and the caller encodes and decodes the very same
ones, so the two can no longer drift apart. A shape that also travels in events (the address)
is the event contract's own (:class:`ember_shared.events.contracts.Address`), never a copy.
"""
