"""Security suite fixtures: the API test app (``tests/api/conftest.py``) reused as it is."""

from tests.api.conftest import Env, assert_error, config  # noqa: F401  (re-exported for the tests)
