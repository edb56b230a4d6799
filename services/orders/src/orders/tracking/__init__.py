"""Shipment tracking through a 17track-compatible provider: registration, polling, events."""
