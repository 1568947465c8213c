"""The delivery policy as a table: each outcome → next state, due time, attempt counted, maybe_sent.
Pure functions, so every row is checked exactly (seeded randomness for the jitter)."""

from __future__ import annotations

import random

import pytest

from broadcaster.config import load_settings
from broadcaster.delivery import backoff, breaker_fallback_due, counts_against_breaker, decide
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ChannelUnavailable,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    RecipientsRefused,
    TransientError,
)
from broadcaster.models import DeliveryState as S

NOW = 1_700_000_000.0
HOOK = {"kind": "webhook", "url": "https://hooks.example/h"}


def policy(**over):
    data = {"channels": {"a": HOOK, "b": HOOK}, "policy": {"defaults": {
        "attempts": 5, "backoff": {"base": "2s", "max": "60s"}, "breaker": {"failures": 3, "cooldown": "30s"}, **over}}}
    s = load_settings(data, env={})
    return s.policy_for("a")


def with_fallback(**over):
    data = {"channels": {"a": HOOK, "b": HOOK}, "policy": {
        "defaults": {"attempts": 5, "backoff": {"base": "2s", "max": "60s"}, **over},
        "channels": {"a": {"fallback": ["b"], "fallback_after": "10m"}}}}
    return load_settings(data, env={}).policy_for("a")


def run(exc, *, attempt=1, deadline_at=None, pol=None, idempotent=False, can_lookup=False, public=True, seed=7):
    return decide(exc, attempt=attempt, now=NOW, deadline_at=deadline_at, policy=pol or policy(),
                  idempotent=idempotent, can_lookup=can_lookup, public=public, rng=random.Random(seed))


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("exc", [PermanentError("no"), AuthError("401"), ContentRejected("too long"),
                                 RecipientsRefused("all refused"), DeliveryError("odd")])
def test_permanent_errors_stop_at_once(exc):
    d = run(exc, attempt=1)
    assert d.state == S.FAILED and d.due_at is None and d.attempted and not d.fall_back
    assert str(exc) in d.reason


@pytest.mark.parametrize("exc", [PermanentError("no"), AuthError("401"), ContentRejected("x")])
def test_permanent_errors_fall_back_when_the_channel_has_fallbacks(exc):
    d = run(exc, pol=with_fallback())
    assert d.state == S.FALLEN_BACK and d.fall_back and d.due_at is None
    assert "falling back to b" in d.reason


@pytest.mark.parametrize("retry_after", [0.0, 2.5, 17.0, 3600.0])
def test_rate_limited_waits_exactly_retry_after(retry_after):
    d = run(RateLimited(retry_after=retry_after), attempt=3)
    assert d.state == S.RETRYING
    assert d.due_at == NOW + retry_after
    assert d.attempted is True
    assert d.maybe_sent is None and not d.fall_back


def test_rate_limited_even_on_the_last_attempt_keeps_waiting():
    """The provider refused before doing anything: being told to wait is not a failure."""
    d = run(RateLimited(retry_after=5), attempt=5, pol=policy(attempts=5))
    assert d.state == S.RETRYING and d.due_at == NOW + 5


def test_rate_limited_without_a_hint_backs_off():
    d = run(RateLimited(retry_after=None), attempt=2, seed=3)
    expected = max(0.1, random.Random(3).uniform(0, 4.0))
    assert d.state == S.RETRYING and d.due_at == pytest.approx(NOW + expected)


def test_negative_retry_after_is_clamped_to_zero():
    assert RateLimited(retry_after=-5).retry_after == 0.0
    assert run(RateLimited(retry_after=-5)).due_at == NOW


def test_rate_limit_beyond_the_deadline_gives_up():
    d = run(RateLimited(retry_after=120), deadline_at=NOW + 60)
    assert d.state == S.FAILED and "deadline" in d.reason
    d = run(RateLimited(retry_after=120), deadline_at=NOW + 60, pol=with_fallback())
    assert d.state == S.FALLEN_BACK and d.fall_back


def test_rate_limit_landing_exactly_on_the_deadline_still_retries():
    d = run(RateLimited(retry_after=60), deadline_at=NOW + 60)
    assert d.state == S.RETRYING and d.due_at == NOW + 60


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_transient_backs_off_with_full_jitter_bounds(attempt):
    ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
    for seed in range(30):
        d = run(TransientError("503"), attempt=attempt, seed=seed)
        assert d.state == S.RETRYING and d.attempted
        assert NOW + 0.1 <= d.due_at <= NOW + ceiling
        assert d.due_at == pytest.approx(NOW + max(0.1, random.Random(seed).uniform(0, ceiling)))


def test_transient_out_of_attempts_fails_or_falls_back():
    d = run(TransientError("503"), attempt=5)
    assert d.state == S.FAILED and "gave up after 5 attempts" in d.reason
    d = run(TransientError("503"), attempt=5, pol=with_fallback())
    assert d.state == S.FALLEN_BACK and d.fall_back
    assert run(TransientError("503"), attempt=4).state == S.RETRYING


def test_transient_whose_retry_would_be_after_the_deadline_gives_up():
    # with base 2s the first retry is at most 2s away; a deadline 0.05 s ahead cannot be met
    d = run(TransientError("503"), attempt=1, deadline_at=NOW + 0.05)
    assert d.state == S.FAILED and "after the deadline" in d.reason


def test_deadline_already_passed_gives_up_for_every_transient_kind():
    for exc in (TransientError("x"), RateLimited(retry_after=1), ChannelUnavailable(retry_after=1)):
        d = run(exc, deadline_at=NOW - 1, pol=with_fallback())
        assert d.state == S.FALLEN_BACK, type(exc).__name__


def test_channel_unavailable_waits_for_the_probe_without_counting_an_attempt():
    d = run(ChannelUnavailable(retry_after=12.0))
    assert d.state == S.RETRYING and d.due_at == NOW + 12.0 and d.attempted is False


def test_channel_unavailable_without_hint_waits_the_cooldown_and_at_least_half_a_second():
    assert run(ChannelUnavailable()).due_at == NOW + 30.0
    assert run(ChannelUnavailable(retry_after=0.01)).due_at == NOW + 0.5


# -- ambiguous outcomes: guarantee 2 (never a blind re-post on a public channel)


def test_ambiguous_on_public_non_idempotent_channel_goes_unknown():
    d = run(AmbiguousDelivery("read timeout"), idempotent=False, can_lookup=False, public=True)
    assert d.state == S.UNKNOWN and d.maybe_sent is True and d.due_at is None
    assert "not re-sent" in d.reason


@pytest.mark.parametrize("idempotent, can_lookup, public, how", [
    (True, False, True, "same idempotency key"),
    (False, True, True, "looked up"),
    (True, True, True, "same idempotency key"),
    (False, False, False, "private channel"),
])
def test_ambiguous_retries_when_it_can_be_made_safe(idempotent, can_lookup, public, how):
    d = run(AmbiguousDelivery("timeout"), attempt=2, idempotent=idempotent, can_lookup=can_lookup, public=public)
    assert d.state == S.RETRYING and d.maybe_sent is True and d.attempted
    assert NOW + 0.1 <= d.due_at <= NOW + 4.0
    assert how in d.reason


def test_ambiguous_out_of_attempts_is_unknown_never_failed():
    d = run(AmbiguousDelivery("timeout"), attempt=5, idempotent=True, pol=with_fallback())
    assert d.state == S.UNKNOWN and d.maybe_sent is True and not d.fall_back


def test_ambiguous_past_the_deadline_is_unknown():
    d = run(AmbiguousDelivery("timeout"), attempt=1, idempotent=True, deadline_at=NOW - 1)
    assert d.maybe_sent is True
    assert d.state == S.UNKNOWN


# ---------------------------------------------------------------- backoff itself


def test_backoff_is_full_jitter_between_100ms_and_the_capped_ceiling():
    pol = policy()
    rng = random.Random(1234)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff(attempt, pol, rng) for _ in range(400)]
        assert min(samples) >= 0.1 and max(samples) <= ceiling
        if ceiling >= 8:  # spread over the whole range, not a fixed delay plus noise
            assert min(samples) < ceiling * 0.1 and max(samples) > ceiling * 0.9


def test_backoff_is_reproducible_with_a_seed_and_caps_at_max():
    pol = policy()
    assert backoff(3, pol, random.Random(9)) == backoff(3, pol, random.Random(9))
    assert all(backoff(50, pol, random.Random(s)) <= 60.0 for s in range(50))
    assert backoff(0, pol, random.Random(1)) <= 2.0, "attempt 0 is treated as the first"


# ---------------------------------------------------------------- breaker helpers


def test_breaker_fallback_due_needs_fallbacks_fallback_after_and_an_open_time():
    fb = with_fallback()  # fallback_after 10m
    assert breaker_fallback_due(NOW - 600, NOW, fb) is True
    assert breaker_fallback_due(NOW - 599, NOW, fb) is False
    assert breaker_fallback_due(None, NOW, fb) is False
    assert breaker_fallback_due(NOW - 10_000, NOW, policy()) is False, "no fallbacks configured"
    no_after = load_settings({"channels": {"a": HOOK, "b": HOOK}, "policy": {"channels": {"a": {"fallback": ["b"]}}}},
                             env={}).policy_for("a")
    assert breaker_fallback_due(NOW - 10_000, NOW, no_after) is False, "no fallback_after configured"


@pytest.mark.parametrize("exc, counts", [
    (TransientError("503"), True), (AmbiguousDelivery("timeout"), True), (AuthError("401"), True),
    (RateLimited(retry_after=1), False), (ChannelUnavailable(), False), (ContentRejected("long"), False),
    (RecipientsRefused(), False), (PermanentError("400"), False),
])
def test_which_errors_count_against_the_breaker(exc, counts):
    assert counts_against_breaker(exc) is counts
