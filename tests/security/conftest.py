"""Security suite fixtures: the API test app of ``tests/api/conftest.py`` (env, make_env) reused as is."""

from tests.api.conftest import (  # noqa: F401  (fixtures and helpers re-exported for this package)
    SECRETS,
    Env,
    assert_error,
    config,
    env,
    make_env,
    shared_env,
)
