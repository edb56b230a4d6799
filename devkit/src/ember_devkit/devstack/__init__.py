"""The local stack: ``make run`` (``python -m ember_devkit.devstack run``) and the tests' ``stack``.

Starts embedded Postgres and Redis when no URLs are given, migrates and seeds every service,
then runs every service, stand-in, worker and Caddy under one supervisor. See
:mod:`ember_devkit.devstack.layout` for the conventions by which parts are found.
"""

from ember_devkit.devstack.stack import DevStack, StackOptions
from ember_devkit.devstack.supervisor import StackError

__all__ = ["DevStack", "StackError", "StackOptions"]
