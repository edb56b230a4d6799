"""Ember's dev kit: the dev stack behind ``make run`` (:mod:`ember_devkit.devstack`), the embedded
Postgres and Redis it starts when no ``DATABASE_URL``/``REDIS_URL`` is given
(:mod:`ember_devkit.embedded`), and the pytest harness (:mod:`ember_devkit.testing`).

Only the workspace's development install has it; a service's production image installs the
runtime (``ember_shared``) and its own package, nothing from here.
"""
