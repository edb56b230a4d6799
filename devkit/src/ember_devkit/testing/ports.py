"""A free loopback port for a server a test starts (uvicorn on a socket of its own, a gateway).

The one implementation lives beside the embedded servers, which need it too; tests import it
from here so that no test folder keeps a copy.
"""

from __future__ import annotations

from ember_devkit.embedded import free_port

__all__ = ["free_port"]
