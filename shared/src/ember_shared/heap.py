"""What a long-lived server does with the heap its start-up made."""

from __future__ import annotations

import gc


def freeze_start_up_heap() -> None:
    """Everything allocated by start-up (modules, the app, its routes and schemas: hundreds of
    thousands of objects that live as long as the process) leaves the garbage collector's
    generations: each full collection otherwise walks all of it again, a cost every request
    pays in turn, and more in a process that loaded more (OpenTelemetry's exporter and
    instrumentations). Python's own advice for long-lived servers (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
