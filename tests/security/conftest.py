"""Security suite fixtures: the API test app of ``tests/api/conftest.py`` (env, make_env) reused as is."""

