"""The token scope matrix for every endpoint in the OpenAPI document, and refusal timing.

Seven callers — admin, full poster (any kind, any channel, not admin), deploy-only, a token
limited to one channel, a revoked token, an unknown token, no token — against every operation,
each on a fresh target, with the status each must get (docs/reliability.md, "Tokens and scopes"). The matrix
is checked against ``/openapi.json`` so a new endpoint without a row fails here.

Timing: an unknown token and a known-but-refused one (revoked, or a real one with one character
changed) must be refused in about the same time, so response times do not tell an attacker which
tokens exist (measured mean over 200 tries each, interleaved; figures printed).
"""

from __future__ import annotations

import itertools
import statistics
import time

import pytest

from broadcaster import service
from broadcaster.inbound import drafts
from broadcaster.inbound.signals import Signal
from broadcaster.models import DeliveryState as S
from broadcaster.principal import Principal
from tests.support.ledger import audit_entries

from .conftest import Env, assert_error, config

CALLERS = ("admin", "poster", "deploy", "hook-only", "revoked", "unknown", "none")
VALID = ("admin", "poster", "deploy", "hook-only")
REFUSED = {"revoked": 401, "unknown": 401, "none": 401}


def expect(**by_caller) -> dict[str, int]:
    """Expected status per caller: keyword per caller, ``valid=`` for all valid tokens."""
    valid = by_caller.pop("valid", None)
    out = {c: valid for c in VALID} if valid is not None else {}
    out.update(REFUSED)
    out.update({k.replace("_", "-"): v for k, v in by_caller.items()})
    return out


def public(status: int) -> dict[str, int]:
    return {c: status for c in CALLERS}


# target: what is created first (by the system) — an incident routed to hook + ops-chat, a
# scheduled incident, a maintenance to hook, a failed delivery to hook, a draft incident from an
# alert (the kind's route: hook + ops-chat), a promotion (to discord) held for a second person's
# approval, and an inbound receiver (its path; the caller's API token is not the receiver's secret)
MATRIX: dict[tuple[str, str], tuple[str | None, dict, dict[str, int]]] = {
    ("GET", "/healthz"): (None, {}, public(200)),
    ("GET", "/readyz"): (None, {}, public(200)),
    ("GET", "/metrics"): (None, {}, public(200)),
    ("POST", "/api/v1/announcements"): (None, {"kind": "incident", "title": "t"},
                                        expect(admin=202, poster=202, deploy=403, hook_only=403)),
    ("GET", "/api/v1/announcements"): (None, {}, expect(valid=200)),
    ("GET", "/api/v1/announcements/{ann_id}"): ("incident", {}, expect(valid=200)),
    ("POST", "/api/v1/announcements/{ann_id}/updates"): ("incident", {"status": "identified", "body": "found"},
                                                         expect(admin=202, poster=202, deploy=403, hook_only=403)),
    ("POST", "/api/v1/announcements/{ann_id}/retract"): ("incident", {"reason": "wrong"},
                                                         expect(admin=202, poster=202, deploy=403, hook_only=403)),
    ("POST", "/api/v1/announcements/{ann_id}/cancel"): ("scheduled", {},
                                                        expect(admin=200, poster=200, deploy=403, hook_only=403)),
    ("POST", "/api/v1/deliveries/{delivery_id}/retry"): ("failed", {},
                                                         expect(admin=202, poster=202, deploy=403, hook_only=202)),
    ("POST", "/api/v1/deliveries/{delivery_id}/confirm"): ("unknown", {},
                                                           expect(admin=200, poster=200, deploy=403, hook_only=200)),
    ("POST", "/api/v1/preview"): (None, {"kind": "incident", "title": "t"}, expect(valid=200)),
    ("GET", "/api/v1/channels"): (None, {}, expect(valid=200)),
    ("POST", "/api/v1/subscribe"): (None, {"list": "news", "address": "reader@example.test"}, public(202)),
    ("GET", "/api/v1/subscribe/confirm"): (None, {"token": "forged"}, public(422)),
    ("POST", "/api/v1/subscribe/confirm"): (None, {"token": "forged"}, public(422)),
    ("GET", "/api/v1/unsubscribe"): (None, {"token": "forged"}, public(422)),
    ("POST", "/api/v1/unsubscribe"): (None, {"token": "forged"}, public(422)),
    ("GET", "/api/v1/unsubscribe/endpoint"): (None, {"token": "forged"}, public(422)),
    ("POST", "/api/v1/unsubscribe/endpoint"): (None, {"token": "forged"}, public(422)),
    ("GET", "/api/v1/subscribers"): (None, {}, expect(admin=200, poster=403, deploy=403, hook_only=403)),
    # no list here takes endpoints: the registration is refused alike for everyone (the same answer)
    ("POST", "/api/v1/subscribe/endpoint"): (None, {"list": "news", "endpoint": {"format": "slack",
                                                                                "url": "https://hooks.example/x"}},
                                             public(422)),
    ("POST", "/api/v1/subscribe/endpoint/confirm"): (None, {"code": "0" * 32}, public(422)),
    ("GET", "/api/v1/subscribers/endpoints"): (None, {}, expect(admin=200, poster=403, deploy=403, hook_only=403)),
    ("POST", "/api/v1/subscribers/endpoints/{endpoint_id}/enable"): (
        "endpoint", {}, expect(admin=404, poster=403, deploy=403, hook_only=403)),
    ("POST", "/api/v1/subscribers/endpoints/{endpoint_id}/disable"): (
        "endpoint", {}, expect(admin=404, poster=403, deploy=403, hook_only=403)),
    ("GET", "/api/v1/export"): (None, {}, expect(admin=200, poster=403, deploy=403, hook_only=403)),
    ("GET", "/api/v1/export/subscribers.csv"): (None, {}, expect(admin=200, poster=403, deploy=403, hook_only=403)),
    ("GET", "/api/v1/incidents"): (None, {}, expect(valid=200)),
    ("POST", "/api/v1/maintenance/{ann_id}/cancel"): ("maintenance", {"reason": "moved"},
                                                      expect(admin=200, poster=200, deploy=403, hook_only=200)),
    # drafts: anyone with a token may read them; changing one needs the right to post it as it stands
    ("GET", "/api/v1/drafts"): (None, {}, expect(valid=200)),
    ("GET", "/api/v1/drafts/{draft_id}"): ("draft", {}, expect(valid=200)),
    ("PATCH", "/api/v1/drafts/{draft_id}"): ("draft", {"title": "edited"},
                                            expect(admin=200, poster=200, deploy=403, hook_only=403)),
    ("POST", "/api/v1/drafts/{draft_id}/publish"): ("draft", {},
                                                   expect(admin=202, poster=202, deploy=403, hook_only=403)),
    ("POST", "/api/v1/drafts/{draft_id}/discard"): ("draft", {},
                                                   expect(admin=200, poster=200, deploy=403, hook_only=403)),
    # two-person review: the approver must be allowed to post the held kind to its channels
    ("GET", "/api/v1/approvals"): (None, {}, expect(valid=200)),
    ("POST", "/api/v1/announcements/{ann_id}/approve"): ("held", {},
                                                         expect(admin=200, poster=200, deploy=403, hook_only=403)),
    ("POST", "/api/v1/announcements/{ann_id}/reject"): ("held", {"reason": "no"},
                                                        expect(admin=200, poster=200, deploy=403, hook_only=403)),
    # no API token: the receiver checks its sender's own secret, which no caller here has
    ("POST", "/api/v1/inbound/{source}/{receiver}"): ("receiver", {"version": "4", "alerts": []}, public(401)),
}


AUTHOR = Principal("m-author")  # wrote the held post: no caller below is its author
RECEIVER_SECRET = "matrix-receiver-token-3e8a1c"


class Matrix:
    def __init__(self, env: Env):
        self.env = env
        self.headers: dict[str, dict[str, str]] = {
            "admin": env.token("m-admin", admin=True),
            "poster": env.token("m-poster"),
            "deploy": env.token("m-deploy", kinds=["deploy"]),
            "hook-only": env.token("m-hook", channels=["hook"]),
            "revoked": env.token("m-revoked", admin=True),
            "unknown": {"Authorization": "Bearer bct_" + "Q" * 43},
            "none": {},
        }
        env.store.revoke("m-revoked", actor="test")
        self.groups = itertools.count()

    def target(self, what: str | None) -> dict[str, str]:
        rt, system = self.env.runtime, service.SYSTEM
        if what is None:
            return {}
        if what == "incident":
            return {"ann_id": service.submit(rt, {"kind": "incident", "title": "target"}, principal=system).id}
        if what == "scheduled":
            later = {"kind": "incident", "title": "later", "publish_at": time.time() + 3600}
            return {"ann_id": service.submit(rt, later, principal=system).id}
        if what == "maintenance":
            window = {"starts_at": time.time() + 3600, "ends_at": time.time() + 7200}
            return {"ann_id": service.submit(rt, {"kind": "maintenance", "title": "window", "window": window},
                                             principal=system).id}
        if what in ("failed", "unknown"):
            ann = service.submit(rt, {"kind": "incident", "title": what, "channels": ["hook"]}, principal=system)
            (d,) = self.env.ledger.deliveries_of(ann.id)
            state = S.FAILED if what == "failed" else S.UNKNOWN
            self.env.ledger.force(d.id, state, "test", actor="test", from_states=[S.PENDING])
            return {"delivery_id": d.id}
        if what == "draft":
            signal = Signal(group=f"matrix-{next(self.groups)}", firing=True, title="Disk full", summary="db-1")
            made = drafts.receive(rt, "prom", "alertmanager", signal)
            assert made["result"] == "created", made
            return {"draft_id": made["draft"]}
        if what == "held":  # a non-admin author: admins skip review while incidents (other rows') are open
            ann = service.submit(rt, {"kind": "promotion", "title": "Sale"}, principal=AUTHOR)
            assert [d.state for d in self.env.ledger.deliveries_of(ann.id)] == [S.SCHEDULED]
            return {"ann_id": ann.id}
        if what == "receiver":
            return {"source": "alertmanager", "receiver": "prom"}
        if what == "endpoint":  # a subscriber endpoint that does not exist: only an admin learns that
            return {"endpoint_id": "end_00000000000000000000000"}
        raise AssertionError(what)

    def call(self, method: str, path: str, caller: str, what: str | None, data: dict):
        url = path.format(**self.target(what))
        h = self.headers[caller]
        if method == "GET":
            return self.env.client.get(url, params=data or None, headers=h)
        if method == "PATCH":
            return self.env.client.patch(url, json=data, headers=h)
        if path.endswith(("/unsubscribe", "/unsubscribe/endpoint", "/subscribe/confirm")):
            return self.env.client.post(url, params=data, headers=h)
        return self.env.client.post(url, json=data, headers=h)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    cfg = config(api={"max_body_bytes": 65536, "rate_limit": "100000/m", "anonymous_rate_limit": "100000/m"},
                 subscribers={"secret_key": "matrix-signing-key-0123456789abcdef"},
                 inbound={"receivers": {"prom": {"source": "alertmanager", "token": RECEIVER_SECRET}},
                          "rules": [{"match": {"receiver": "prom"}, "title": "{title}", "body": "{summary}"}]},
                 review={"kinds": ["promotion"]})
    cfg["channels"] = {**cfg["channels"], "mail": {"kind": "email", "smtp": {"host": "smtp.example.test"},
                                                   "from_address": "news@example.test", "lists": ["news"]}}
    e = Env(tmp_path_factory.mktemp("matrix"), cfg,
            confirmation_sender=lambda address, subject, text, unsubscribe=None: None)  # no mail leaves the test
    yield Matrix(e)
    e.client.close()
    e.ledger.close()


def test_the_matrix_covers_every_documented_operation(matrix):
    spec = matrix.env.client.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in ("get", "post", "put",
                                                                                              "patch", "delete")}
    missing, stale = documented - set(MATRIX), set(MATRIX) - documented
    assert not missing and not stale, f"missing rows: {missing}; stale rows: {stale}"


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path", list(MATRIX))
def test_scope(matrix, method, path, caller):
    what, data, statuses = MATRIX[(method, path)]
    r = matrix.call(method, path, caller, what, data)
    want = statuses[caller]
    assert r.status_code == want, (caller, method, path, r.status_code, r.text[:300])
    if want == 401:
        err = assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "m-revoked" not in err["message"]  # a refused token is not named back
    elif want == 403:
        assert_error(r, 403, "forbidden")


def test_a_channel_limited_token_can_post_to_its_channel_only(matrix):
    h = matrix.headers["hook-only"]
    ok = matrix.env.client.post("/api/v1/announcements", json={"kind": "incident", "title": "t", "channels": ["hook"]},
                                headers=h)
    assert ok.status_code == 202, ok.text
    no = matrix.env.client.post("/api/v1/announcements",
                                json={"kind": "incident", "title": "t", "channels": ["hook", "discord"]}, headers=h)
    assert "discord" in assert_error(no, 403, "forbidden")["message"]


def test_a_deploy_token_can_post_a_deploy(matrix):
    r = matrix.env.client.post("/api/v1/announcements", json={"kind": "deploy", "title": "v2 out"},
                               headers=matrix.headers["deploy"])
    assert r.status_code == 202, r.text


def test_a_channel_limited_token_cannot_take_over_a_draft_routed_beyond_it(matrix):
    """The draft has no channels (the kind's route: hook + ops-chat): that empty list is not a way
    past the token's limit, and narrowing someone's draft to fit the token is refused too."""
    env, h = matrix.env, matrix.headers["hook-only"]
    draft_id = matrix.target("draft")["draft_id"]
    before = max((e["id"] for e in audit_entries(env.ledger, limit=100_000)), default=0)
    narrowed = env.client.patch(f"/api/v1/drafts/{draft_id}", json={"channels": ["hook"]}, headers=h)
    assert "ops-chat" in assert_error(narrowed, 403, "forbidden")["message"]
    assert_error(env.client.post(f"/api/v1/drafts/{draft_id}/publish", headers=h), 403, "forbidden")
    assert_error(env.client.post(f"/api/v1/drafts/{draft_id}/discard", headers=h), 403, "forbidden")
    after = env.client.get(f"/api/v1/drafts/{draft_id}", headers=h).json()
    assert after["state"] == "draft" and not after["fields"]["channels"] and not after["published_by"], after
    touched = [e for e in audit_entries(env.ledger, limit=1000, since_id=before) if draft_id in str(e)]
    assert touched == [], touched  # refused before anything was claimed or written


def test_the_author_of_a_held_post_cannot_release_it(matrix):
    env = matrix.env
    author = env.token("m-author", admin=True)  # same name as the held post's author, even as admin
    for action in ("approve", "reject"):
        ann_id = matrix.target("held")["ann_id"]
        r = env.client.post(f"/api/v1/announcements/{ann_id}/{action}", json={}, headers=author)
        assert "second person" in assert_error(r, 403, "forbidden")["message"]


def test_approving_needs_the_right_to_post_where_the_held_post_can_fall_back(make_env):
    """A reviewer limited to ``hook`` cannot release a post to ``hook`` that falls back to
    ``ops-chat``: approving lets it go out, so it needs what posting it needs."""
    cfg = config(review={"kinds": ["promotion"]},
                 policy={"channels": {"hook": {"fallback": ["ops-chat"]}}})
    env = make_env(cfg)
    ann = service.submit(env.runtime, {"kind": "promotion", "title": "Sale", "channels": ["hook"]}, principal=AUTHOR)
    narrow = env.token("narrow-reviewer", channels=["hook"])
    r = env.client.post(f"/api/v1/announcements/{ann.id}/approve", headers=narrow)
    assert "ops-chat" in assert_error(r, 403, "forbidden")["message"]
    assert [d.state for d in env.ledger.deliveries_of(ann.id)] == [S.SCHEDULED]  # still held
    wide = env.token("wide-reviewer", channels=["hook", "ops-chat"])
    ok = env.client.post(f"/api/v1/announcements/{ann.id}/approve", headers=wide)
    assert ok.status_code == 200, ok.text


# ---------------------------------------------------------------- timing


def _mean_ms(samples: list[float]) -> float:
    return statistics.fmean(samples) * 1000


@pytest.mark.slow
def test_unknown_and_known_but_refused_tokens_take_similar_time(matrix):
    env = matrix.env
    real = env.tokens["m-poster"]
    near_miss = real[:-1] + ("A" if real[-1] != "A" else "B")
    revoked = env.tokens["m-revoked"]
    unknown = "bct_" + "Z" * len(real[4:])
    kinds = {"unknown": unknown, "revoked": revoked, "one-char-off": near_miss}
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(20):  # warm up every path
        for raw in kinds.values():
            env.client.get("/api/v1/channels", headers={"Authorization": f"Bearer {raw}"})
    for _ in range(200):
        for name, raw in kinds.items():
            started = time.perf_counter()
            r = env.client.get("/api/v1/channels", headers={"Authorization": f"Bearer {raw}"})
            samples[name].append(time.perf_counter() - started)
            assert r.status_code == 401
    means = {k: _mean_ms(v) for k, v in samples.items()}
    medians = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    ratios = {k: means[k] / means["unknown"] for k in kinds if k != "unknown"}
    print("\nrefusal timing (200 each, ms): " + ", ".join(f"{k} mean {means[k]:.3f} median {medians[k]:.3f}"
                                                         for k in kinds)
          + "; ratios to unknown: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    for name, ratio in ratios.items():
        assert 0.5 <= ratio <= 2.0, (name, means)
