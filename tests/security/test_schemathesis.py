"""Schemathesis against our own OpenAPI, in-process over ASGI (no network), with an admin token.

Every operation in ``/openapi.json`` gets schema-valid ("positive") and schema-violating
("negative") requests generated from the spec. Promise checked (the API error shape, docs/reliability.md): no
request, however odd, gets a 5xx; every error is ``{"error": {"code", "message", "details"}}``;
every 2xx answer matches its documented schema and content type. Hypothesis is derandomized,
so a run is reproducible; at least 1,000 cases are generated on SQLite (figures printed at the end).

The same run goes against PostgreSQL too, which refuses what SQLite stores (a NUL byte in any
text, a value longer than its ``VARCHAR(n)``): fewer examples per operation there, so the
whole file stays within a few minutes.
"""

from __future__ import annotations

import collections
import time
import warnings

import pytest

warnings.filterwarnings("ignore", category=DeprecationWarning)
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import (  # noqa: E402 - after the importorskip above
    HealthCheck,
    Phase,
    given,
    settings,
    strategies as st,
)
from schemathesis import (  # noqa: E402 - after the importorskip above
    GenerationMode,
    checks as sc,
)

from .conftest import Env, config  # noqa: E402

#: examples per operation and generation mode, by ledger; 21+ operations, most in both modes:
#: ≈ 1,300 cases on SQLite, ≈ 450 on PostgreSQL (each case there costs a network round trip or more)
EXAMPLES = {"sqlite": 45, "postgres": 15}
MIN_CASES = {"sqlite": 1000, "postgres": 300}
#: documented-schema checks that must hold for every answer (status codes are checked apart:
#: see test_openapi_documents_the_generic_error_statuses)
CHECKS = [sc.not_a_server_error, sc.content_type_conformance, sc.response_schema_conformance,
          sc.response_headers_conformance]

STATS: dict[str, dict] = {backend: {"cases": 0, "by_status": collections.Counter(), "seconds": 0.0, "operations": 0}
                          for backend in EXAMPLES}


def _env(tmp_path_factory, ledger=None) -> Env:
    # generous limits: the fuzzer is one client making a thousand requests
    return Env(tmp_path_factory.mktemp("fuzz"),
               config(api={"max_body_bytes": 64 * 1024, "rate_limit": "1000000/m",
                           "anonymous_rate_limit": "1000000/m"}), ledger=ledger)


@pytest.fixture(scope="module", params=list(EXAMPLES))
def fuzz_env(request, tmp_path_factory):
    ledger = None
    if request.param == "postgres":
        from broadcaster.ledger import Ledger
        from tests.conftest import _reset_pg

        url = request.getfixturevalue("pg_database")
        _reset_pg(url)
        ledger = Ledger.open(url.replace("postgresql://", "postgresql+psycopg://"))
    e = _env(tmp_path_factory, ledger)
    e.backend = request.param
    yield e
    e.client.close()
    e.ledger.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_env):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_env.app)
    # the token is ours to choose (always a valid admin one); fuzz everything else
    schema.config.generation.update(with_security_parameters=False)
    return schema


def repaired(data, body):
    """Half of the schema-valid bodies get the few values the spec cannot express (``kind`` and
    ``severity`` are plain strings there, checked in code; channels must exist), so generated
    text also travels the success path — ledger write, 202 — not only the 422 one."""
    from broadcaster.models import KINDS

    if not isinstance(body, dict) or "kind" not in body or not data.draw(st.booleans(), label="repair"):
        return body
    body = dict(body, kind=data.draw(st.sampled_from(KINDS), label="kind"))
    for key in ("severity", "status", "window", "publish_at"):
        body.pop(key, None)
    body["channels"] = data.draw(st.lists(st.sampled_from(["hook", "ops-chat", "discord"]), max_size=3,
                                          unique=True), label="channels")
    body["variants"] = {}
    if isinstance(body.get("url"), str):
        body["url"] = "https://example.test/" + body["url"][:100]
    return body


def _operations():
    # collected at import: a throw-away app, only to learn the operation labels
    import tempfile
    from pathlib import Path

    class _Factory:
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=f"bc-{name}-"))

    e = _env(_Factory())
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", e.app)
        schema.config.generation.update(with_security_parameters=False)
        cases = []
        for result in schema.get_all_operations():
            op = result.ok()
            cases.append((op.method.upper(), op.path, GenerationMode.POSITIVE))
            if _violable(op):
                cases.append((op.method.upper(), op.path, GenerationMode.NEGATIVE))
        return cases
    finally:
        e.client.close()
        e.ledger.close()


def _violable(op) -> bool:
    """Whether the schema lets anything be violated (an operation without parameters or body, or
    with only free-form strings, has no negative case): asked once at collection, so no test is
    generated only to be skipped."""
    from hypothesis.errors import Unsatisfiable

    found = []

    @settings(max_examples=1, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw(data):
        found.append(data.draw(op.as_strategy(generation_mode=GenerationMode.NEGATIVE)))

    try:
        draw()
    except Unsatisfiable:
        return False
    return bool(found)


CASES = _operations()
OPERATIONS = sorted({(method, path) for method, path, _ in CASES})


def assert_json_error(response, label: str) -> None:
    ctype = response.headers.get("content-type", "")
    ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps every value of a header
    assert ctype.startswith("application/json"), (label, response.status_code, ctype, response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, (label, body)
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, (label, err)
    assert isinstance(err["code"], str) and err["code"], (label, err)
    assert isinstance(err["message"], str) and err["message"], (label, err)
    assert isinstance(err["details"], dict), (label, err)
    assert "Traceback" not in response.text, label


@pytest.mark.slow
@pytest.mark.parametrize("method, path, mode", CASES,
                         ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_generated_requests(api_schema, fuzz_env, method, path, mode):
    op = api_schema[path][method]
    op = op.ok() if hasattr(op, "ok") else op
    admin = fuzz_env.admin
    backend = fuzz_env.backend
    stats = STATS[backend]
    label = f"{method} {path} [{mode.value}, {backend}]"
    ran = []

    @settings(max_examples=EXAMPLES[backend], derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data):
        case = data.draw(op.as_strategy(generation_mode=mode))
        if mode is GenerationMode.POSITIVE:
            body = repaired(data, case.body)
            if body is not case.body:  # repaired: a fresh key too (generated ones are often blank)
                case.body = body
                case.headers = {**(case.headers or {}), "Idempotency-Key": f"fuzz-{stats['cases']}"}
        # a valid admin token always: the point is what the API does with the rest of the request
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        started = time.perf_counter()
        response = case.call(headers=admin)
        stats["seconds"] += time.perf_counter() - started
        stats["cases"] += 1
        stats["by_status"][response.status_code] += 1
        ran.append(response.status_code)
        assert response.status_code < 500, (label, response.status_code, response.text[:500])
        if response.status_code >= 400:
            assert_json_error(response, label)
        case.validate_response(response, checks=CHECKS, headers=admin)

    one()
    stats["operations"] += 1
    assert ran, label


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(EXAMPLES))
def test_enough_cases_and_no_5xx(backend):
    """Runs after the generated tests of this module (same file, defined later)."""
    stats = STATS[backend]
    if stats["cases"] == 0:
        pytest.skip(f"the generated tests did not run on {backend} (selected alone)")
    statuses = dict(sorted(stats["by_status"].items()))
    print(f"\nschemathesis on {backend}: {stats['cases']} cases over {len(OPERATIONS)} operations "
          f"({stats['operations']} operation×mode runs), statuses {statuses}, "
          f"{stats['seconds']:.1f} s inside the app")
    assert stats["cases"] >= MIN_CASES[backend]
    assert not [s for s in statuses if s >= 500]


def test_openapi_lists_every_operation_we_fuzz():
    paths = {p for _, p in OPERATIONS}
    assert {"/api/v1/announcements", "/api/v1/announcements/{ann_id}/updates", "/api/v1/preview",
            "/api/v1/deliveries/{delivery_id}/retry", "/api/v1/channels", "/api/v1/subscribe"} <= paths
    assert len(OPERATIONS) >= 20


def test_openapi_documents_the_generic_error_statuses(api_schema, fuzz_env):
    spec = fuzz_env.client.get("/openapi.json").json()
    missing = []
    for path, item in spec["paths"].items():
        op = item.get("post")
        if op is None or not path.startswith("/api/"):
            continue
        for status in ("400", "413", "415"):
            if status not in op.get("responses", {}):
                missing.append(f"POST {path} {status}")
    assert not missing, missing
