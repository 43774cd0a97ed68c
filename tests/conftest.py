"""The host's fixtures (``redis_server``, ``real_redis``, ``fake_redis``) come from
:mod:`governor_core.testing.fixtures`, shared with the plugins' tests."""

pytest_plugins = ["governor_core.testing.fixtures"]
