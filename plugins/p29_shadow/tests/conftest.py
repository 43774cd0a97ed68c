"""The host's test fixtures (``redis_server``, ``real_redis``, ``fake_redis``) and markers,
from the installed ``quantum-governor`` (:mod:`governor_core.testing.fixtures`).

Imported rather than named in ``pytest_plugins``: pytest refuses ``pytest_plugins`` in a
conftest it meets while collecting, as here under ``pytest plugins/``.
"""

from governor_core.testing.fixtures import fake_redis, pytest_configure, real_redis, redis_server

__all__ = ["fake_redis", "pytest_configure", "real_redis", "redis_server"]
