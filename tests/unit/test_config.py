"""Configuration: YAML data → validated, frozen Settings. Every problem at once, with its key path
and a plain sentence; secrets are a type that never shows itself."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, example, given, settings as hsettings, strategies as st
from pydantic import ValidationError

from broadcaster.config import (
    ChannelPolicy,
    Secret,
    Settings,
    interpolate,
    load_settings,
    parse_duration,
    parse_rate,
    read_settings,
)
from broadcaster.errors import ConfigError

HOOK = {"kind": "webhook", "url": "https://hooks.example/h", "format": "generic"}


def problems(data, env=None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_settings(data, env=env or {})
    return dict(info.value.problems)


# ---------------------------------------------------------------- a good file


def test_minimal_valid_configuration_has_sane_defaults():
    s = load_settings({"channels": {"hook": HOOK}, "routes": {"incident": ["hook"]}}, env={})
    assert isinstance(s, Settings)
    assert s.route("incident") == ("hook",)
    assert s.route("promotion") == ()
    p = s.policy_for("hook")
    assert p.attempts == 8 and p.deadline == 86400.0 and p.fallback == ()


def test_settings_are_frozen():
    s = load_settings({}, env={})
    with pytest.raises(ValidationError):
        s.ledger = "sqlite:///other.db"  # type: ignore[misc]


def test_empty_document_is_the_defaults():
    assert load_settings(None, env={}) == load_settings({}, env={})


def test_disabled_channel_is_left_out_of_routes():
    s = load_settings({"channels": {"a": HOOK, "b": {**HOOK, "enabled": False}},
                       "routes": {"incident": ["a", "b"]}}, env={})
    assert s.route("incident") == ("a",)


# ---------------------------------------------------------------- every problem, with its path


def test_all_problems_are_reported_together_with_key_paths():
    found = problems({
        "bogus": 1,
        "public_url": "nope",
        "channels": {
            "x": {"kind": "webhook", "url": "ftp:/bad"},
            "y": {"kind": "zzz"},
            "m": {"kind": "mastodon", "base_url": "not a url", "access_token": "tok"},
        },
        "policy": {"defaults": {"deadline": "5 fortnights", "rate_limit": "x/y", "attempts": "many"}},
    })
    assert found["bogus"] == "unknown key"
    assert found["public_url"] == "not a URL"
    assert found["channels.x.url"] == "not a URL"
    assert found["channels.m.base_url"] == "not a URL"
    assert found["channels.y.kind"].startswith("unknown channel kind 'zzz'")
    assert "webhook" in found["channels.y.kind"], "the message lists the kinds that exist"
    assert "not a duration" in found["policy.defaults.deadline"]
    assert "not a rate" in found["policy.defaults.rate_limit"]
    assert found["policy.defaults.attempts"] == "must be a whole number"


def test_config_error_message_is_one_line_per_problem():
    with pytest.raises(ConfigError) as info:
        load_settings({"bogus": 1, "public_url": "nope"}, env={})
    lines = str(info.value).splitlines()
    assert sorted(lines) == ["bogus: unknown key", "public_url: not a URL"]
    assert info.value.lines() == lines


@pytest.mark.parametrize("data, path, words", [
    ({"channels": {"h": {**HOOK, "colour": "red"}}}, "channels.h.colour", "unknown key"),
    ({"channels": {"h": {"kind": "webhook"}}}, "channels.h.url", "required key is missing"),
    ({"channels": {"h": {"url": "https://x.example"}}}, "channels.h.kind", "required key is missing"),
    ({"channels": {"h": {**HOOK, "format": "irc"}}}, "channels.h.format", "must be"),
    ({"channels": {"h": {**HOOK, "enabled": "perhaps"}}}, "channels.h.enabled", "must be true or false"),
    ({"channels": {"h": "just a string"}}, "channels.h", "must be a mapping"),
    ({"channels": {"Bad Name": HOOK}}, "channels.Bad Name", "lowercase"),
    ({"channels": ["h"]}, "channels", "must be a mapping"),
    ({"api": {"port": 70000}}, "api.port", "less than or equal"),
    ({"api": {"port": "eighty"}}, "api.port", "must be a whole number"),
    ({"worker": {"pool": "gevent"}}, "worker.pool", "must be"),
    ({"policy": {"defaults": {"attempts": 0}}}, "policy.defaults.attempts", "greater than or equal"),
    ({"policy": {"defaults": {"backoff": {"base": "soon"}}}}, "policy.defaults.backoff.base", "not a duration"),
    ({"policy": {"defaults": {"breaker": {"failures": 0}}}}, "policy.defaults.breaker.failures", "greater"),
    ({"policy": {"defaults": {"timeout": -1}}}, "policy.defaults.timeout", "must not be negative"),
    ({"policy": {"defaults": {"rate_limit": "0/s"}}}, "policy.defaults.rate_limit", "not a rate"),
    ({"policy": {"defaults": {"rate_limit": "10/0s"}}}, "policy.defaults.rate_limit", "not a rate"),
    ({"policy": {"defaults": {"on_too_long": "explode"}}}, "policy.defaults.on_too_long", "must be"),
    ({"policy": {"deadlines": {"party": "1h"}}}, "policy.deadlines", "unknown kind 'party'"),
    ({"routes": {"incident": "hook"}}, "routes.incident", "must be a list"),
    ({"quiet_during_incidents": ["sale"]}, "quiet_during_incidents[0]", "unknown kind"),
    ({"tokens": [{"name": "ci"}]}, "tokens[0].hash", "required key is missing"),
])
def test_each_kind_of_problem_names_its_key(data, path, words):
    found = problems(data)
    assert path in found, f"expected a problem at {path!r}, got {found}"
    assert words in found[path]
    assert "Traceback" not in found[path] and "pydantic" not in found[path].lower()


def test_routes_to_unknown_channels_and_unknown_kinds():
    found = problems({"channels": {"hook": HOOK}, "routes": {"incident": ["hook", "ghost"], "party": ["hook"]}})
    assert found["routes.incident[1]"] == "no channel named 'ghost'"
    assert found["routes.party"].startswith("unknown kind")


def test_fallback_to_unknown_channel_and_to_itself():
    found = problems({"channels": {"a": HOOK, "b": HOOK},
                      "policy": {"channels": {"a": {"fallback": ["ghost", "a", "b"]}, "zz": {"attempts": 2}}}})
    assert found["policy.channels.a.fallback[0]"] == "no channel named 'ghost'"
    assert found["policy.channels.a.fallback[1]"] == "a channel cannot fall back to itself"
    assert "policy.channels.a.fallback[2]" not in found
    assert found["policy.channels.zz"] == "no channel by that name"


def test_fallback_in_defaults_to_a_channel_itself_is_refused_for_that_channel():
    found = problems({"channels": {"a": HOOK, "b": HOOK}, "policy": {"defaults": {"fallback": ["b"]}}})
    assert found == {"policy.channels.b.fallback[0]": "a channel cannot fall back to itself"}


def test_type_errors_and_cross_check_problems_are_reported_in_the_same_error():
    found = problems({"channels": {"hook": HOOK}, "routes": {"incident": ["ghost"]}, "api": {"port": "x"}})
    assert "api.port" in found
    assert "routes.incident[0]" in found


@pytest.mark.parametrize("kind", [["webhook"], {"a": 1}])
def test_non_string_channel_kind_is_a_config_error(kind):
    found = problems({"channels": {"x": {"kind": kind, "url": "https://x.example"}}})
    assert "channels.x.kind" in found


# ---------------------------------------------------------------- durations and rates


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), (" 10 s ", 10),
    ("45", 45), (12, 12.0), (0.5, 0.5), (0, 0.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "5 weeks", "-5s", "5x", "1e3s", True, None, "ms"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_nan_deadline_is_refused_by_load_settings():
    problems({"policy": {"defaults": {"deadline": float("nan")}}})


@pytest.mark.parametrize("text, rate", [
    ("300/5m", (300, 300.0)), ("1/s", (1, 1.0)), ("10/30s", (10, 30.0)), ("5 / 2h", (5, 7200.0)),
    ("100/250ms", (100, 0.25)), ([3, 60], (3, 60.0)),
])
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("bad", ["300", "0/s", "x/y", "3/5", "3/0m", "-1/s"])
def test_bad_rates(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


@pytest.mark.parametrize("bad", [[1, 0], [0, 1], [-1, -1]])
def test_list_rates_are_validated_like_strings(bad):
    found = problems({"policy": {"defaults": {"rate_limit": bad}}})
    assert "policy.defaults.rate_limit" in found


def test_rate_and_duration_strings_in_a_full_file():
    s = load_settings({"channels": {"h": HOOK}, "policy": {
        "defaults": {"rate_limit": "300/5m", "deadline": "2h", "timeout": "250ms", "backoff": {"base": "1s", "max": "5m"},
                     "breaker": {"failures": 3, "cooldown": "1d"}, "fallback_after": "10m"}}}, env={})
    p = s.policy_for("h")
    assert p.rate_limit == (300, 300.0)
    assert (p.deadline, p.timeout, p.backoff.base, p.backoff.max) == (7200.0, 0.25, 1.0, 300.0)
    assert (p.breaker.failures, p.breaker.cooldown, p.fallback_after) == (3, 86400.0, 600.0)


# ---------------------------------------------------------------- policy_for merges overrides


def test_policy_for_merges_overrides_over_defaults():
    s = load_settings({
        "channels": {"a": HOOK, "b": HOOK, "c": HOOK},
        "policy": {"defaults": {"attempts": 4, "deadline": "1h", "timeout": "5s"},
                   "channels": {"a": {"attempts": 2, "fallback": ["b", "c"], "fallback_after": "5m"},
                                "c": {"deadline": "10m"}},
                   "deadlines": {"incident": "30m"}}}, env={})
    a, b, c = s.policy_for("a"), s.policy_for("b"), s.policy_for("c")
    assert isinstance(a, ChannelPolicy)
    assert (a.attempts, a.deadline, a.timeout, a.fallback, a.fallback_after) == (2, 3600.0, 5.0, ("b", "c"), 300.0)
    assert (b.attempts, b.deadline, b.fallback) == (4, 3600.0, ())
    assert (c.attempts, c.deadline) == (4, 600.0)
    assert s.deadline_for("incident", "c") == 1800.0, "a per-kind deadline wins"
    assert s.deadline_for("promotion", "c") == 600.0
    assert s.policy.defaults.attempts == 4, "overrides never change the defaults"


def test_policy_for_merges_nested_sections_too():
    s = load_settings({"channels": {"a": HOOK},
                       "policy": {"defaults": {"backoff": {"base": "1s", "max": "60s"}, "breaker": {"cooldown": "2m"}},
                                  "channels": {"a": {"backoff": {"base": "5s"}, "breaker": {"failures": 2}}}}}, env={})
    p = s.policy_for("a")
    assert p.backoff.base == 5.0 and p.breaker.failures == 2
    assert p.backoff.max == 60.0
    assert p.breaker.cooldown == 120.0


# ---------------------------------------------------------------- ${VAR} and secrets


def test_missing_environment_variable_is_named_with_its_key_path():
    found = problems({"channels": {"h": {**HOOK, "secret": "${WH_SECRET}"}}, "ledger": "${DB_URL}"})
    assert found["channels.h.secret"] == "environment variable WH_SECRET is not set"
    assert found["ledger"] == "environment variable DB_URL is not set"


def test_environment_defaults_and_values():
    data = {"ledger": "${DB:-sqlite:///x.db}", "public_url": "https://${HOST}:${PORT:-443}",
            "channels": {"h": {**HOOK, "secret": "${WH_SECRET}"}}}
    s = load_settings(data, env={"WH_SECRET": "whsec_abc", "HOST": "status.example", "PORT": ""})
    assert s.ledger == "sqlite:///x.db"
    assert s.public_url == "https://status.example:443", "an empty variable falls back to the default"
    assert s.channels["h"].secret.reveal() == "whsec_abc"
    s2 = load_settings(data, env={"WH_SECRET": "x", "HOST": "h.example", "DB": "postgresql://db/x", "PORT": "8443"})
    assert s2.ledger == "postgresql://db/x" and s2.public_url.endswith(":8443")


def test_empty_default_is_allowed():
    s = load_settings({"channels": {"h": {**HOOK, "secret": "${WH_SECRET:-}"}}}, env={})
    assert not s.channels["h"].secret


def test_interpolate_walks_lists_and_reports_index_paths():
    out: list = []
    result = interpolate({"a": ["x", "${NOPE}", {"b": "${YES}"}]}, {"YES": "1"}, problems=out)
    assert result == {"a": ["x", "", {"b": "1"}]}
    assert out == [("a[1]", "environment variable NOPE is not set")]


SECRET_VALUE = "s3cr3t-Value-that-must-never-show"


def _with_secrets():
    return load_settings({
        "channels": {"h": {**HOOK, "url": "https://hooks.example/${TOKEN}", "secret": "${TOKEN}"},
                     "m": {"kind": "mastodon", "base_url": "https://social.example", "access_token": "${TOKEN}"}},
    }, env={"TOKEN": SECRET_VALUE})


def test_secrets_never_appear_in_repr_str_or_dumps():
    s = _with_secrets()
    assert s.channels["m"].access_token.reveal() == SECRET_VALUE
    assert s.channels["h"].url.reveal().endswith(SECRET_VALUE)
    for text in (repr(s), str(s), repr(s.channels), str(s.model_dump()), s.model_dump_json(),
                 repr(s.channels["h"]), str(s.channels["h"].model_dump()), s.channels["m"].model_dump_json(),
                 repr(s.channels["m"].access_token), str(s.channels["m"].access_token), f"{s.channels['h'].secret}"):
        assert SECRET_VALUE not in text


def test_webhook_credential_headers_are_masked():
    s = load_settings({"channels": {"h": {**HOOK, "headers": {"Authorization": "Bearer ${TOKEN}"}}}},
                      env={"TOKEN": SECRET_VALUE})
    assert SECRET_VALUE not in repr(s.channels["h"]) + s.channels["h"].model_dump_json()


def test_passwords_in_service_urls_are_masked():
    s = load_settings({"ledger": "postgresql://bc:${TOKEN}@db/bc", "broker": "redis://:${TOKEN}@redis:6379/0"},
                      env={"TOKEN": SECRET_VALUE})
    assert SECRET_VALUE not in repr(s) + s.model_dump_json()


def test_secret_type_behaviour():
    a, b = Secret("x"), Secret("x")
    assert a == b and hash(a) == hash(b) and a != "x"
    assert not Secret("") and Secret("y")
    assert "x" not in repr(a)


def test_secrets_never_appear_in_config_errors():
    with pytest.raises(ConfigError) as info:
        load_settings({
            "bogus": SECRET_VALUE,
            "channels": {"h": {**HOOK, "url": SECRET_VALUE, "secret": ["${TOKEN}"]},
                         "m": {"kind": "mastodon", "access_token": {"nested": "${TOKEN}"}, "language": 5}},
        }, env={"TOKEN": SECRET_VALUE})
    text = str(info.value) + repr(info.value.problems)
    assert SECRET_VALUE not in text
    assert "channels.h.url" in text and "channels.m.access_token" in text


# ---------------------------------------------------------------- read_settings (the file)


def test_read_settings_from_file_records_its_source(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("channels:\n  hook: {kind: webhook, url: 'https://h.example/x'}\nroutes: {incident: [hook]}\n")
    s = read_settings(p, env={})
    assert s.source == str(p.resolve())
    assert s.route("incident") == ("hook",)


def test_read_settings_uses_the_environment_variable_for_the_path(tmp_path):
    p = tmp_path / "env.yaml"
    p.write_text("public_url: https://status.example\n")
    assert read_settings(None, env={"BROADCASTER_CONFIG": str(p)}).public_url == "https://status.example"


def test_read_settings_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        read_settings(tmp_path / "nope.yaml", env={})
    assert info.value.lines() == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_read_settings_invalid_yaml_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("channels:\n  hook: {kind: webhook\nroutes: [\n")
    with pytest.raises(ConfigError) as info:
        read_settings(p, env={})
    assert "not valid YAML at line" in str(info.value)


def test_read_settings_non_mapping_document(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        read_settings(p, env={})
    assert "must be a mapping" in str(info.value)


# ---------------------------------------------------------------- property: only ConfigError

KEYS = st.sampled_from([
    "ledger", "broker", "redis", "public_url", "channels", "routes", "policy", "tokens", "quiet_during_incidents",
    "quiet_action", "scheduler", "api", "worker", "sandbox", "defaults", "deadlines", "attempts", "backoff",
    "base", "max", "deadline", "timeout", "rate_limit", "breaker", "failures", "cooldown", "fallback",
    "fallback_after", "on_too_long", "incident", "promotion", "hook", "a", "url", "format", "secret", "enabled",
    "headers", "port", "host", "name", "hash", "base_url", "access_token", "interval", "lease", "requeue_after",
])
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["webhook", "mastodon", "slack", "generic", "1/s", "300/5m", "5m", "250ms", "-1s",
                              "https://x.example", "not a url", "${NOPE}", "${X:-1s}", "", "hook", "incident"])
           | st.text(max_size=12))
# channel kind is drawn from scalars only: unhashable kinds have their own test above
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                    max_leaves=25)
CHANNEL = st.fixed_dictionaries({"kind": st.sampled_from(["webhook", "mastodon", "email", "nope", 3, None])},
                                optional={"url": SCALARS, "format": SCALARS, "base_url": SCALARS,
                                          "access_token": SCALARS, "secret": SCALARS, "enabled": SCALARS})
TOP = st.fixed_dictionaries({}, optional={
    "channels": st.dictionaries(st.sampled_from(["hook", "a", "B", "x y"]), CHANNEL | DOCS, max_size=3) | DOCS,
    "routes": st.dictionaries(st.sampled_from(["incident", "promotion", "bogus"]), DOCS, max_size=2) | DOCS,
    "policy": DOCS, "scheduler": DOCS, "api": DOCS, "tokens": DOCS, "quiet_during_incidents": DOCS,
    "ledger": SCALARS, "public_url": SCALARS,
}) | DOCS


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TOP)
def test_load_settings_raises_only_config_error(data):
    try:
        s = load_settings(data, env={"X": "2s"})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError always lists at least one problem"
        for path, message in exc.problems:
            assert isinstance(path, str) and isinstance(message, str) and message
    else:
        assert isinstance(s, Settings)


@hsettings(max_examples=50, deadline=None)
@given(st.dictionaries(st.just("x"), st.fixed_dictionaries({"kind": DOCS}), min_size=1))
@example({"x": {"kind": ["webhook"]}})
def test_load_settings_raises_only_config_error_for_any_channel_kind(channels):
    with contextlib.suppress(ConfigError):
        load_settings({"channels": channels}, env={})
