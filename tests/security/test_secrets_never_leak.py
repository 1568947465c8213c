"""Secrets never leak (docs/reliability.md).

Known secret values are configured — through ``${VAR}`` from the environment, as in production —
for every kind of credential: a chat webhook URL, a webhook signing secret, a Mastodon token, an
SMTP password, a Bluesky app password, a Postmark server token, and a raw API token. Then
representative flows run: loading the configuration, ``repr``/``str``/dumps of the settings and
channels, real delivery attempts through the engine against providers (``httpx.MockTransport``
and a fake SMTP server) that *echo the credentials back* in their error answers, credential
checks, API requests and errors, ``broadcaster check`` (offline and online against an echoing
server on loopback), with logging configured as the real processes do at DEBUG. Every log record,
exception message and ``repr``, API response, CLI output and ledger row is then searched for the
secret values (and for recognisable fragments of them). Tokens are in the ledger only as hashes.
"""

from __future__ import annotations

import json
import logging
import smtplib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import MetaData, select

from broadcaster import engine, service
from broadcaster.channels.ports import ChannelPorts
from broadcaster.config import load_settings
from broadcaster.ledger import Ledger
from broadcaster.resilience import MemoryBreaker, MemoryRateLimiter
from broadcaster.runtime import Runtime
from tests.support.runtime import memory_runtime

WEBHOOK_PATH = "T0SECRET/B0SECRET/webhook-path-SECRET-a1b2c3"
ENV = {
    "HOOK_URL": f"https://hooks.example.test/services/{WEBHOOK_PATH}",
    "HOOK_SIGNING": "whsec_c2lnbmluZy1TRUNSRVQtZDRlNWY2",
    "MASTODON_TOKEN": "mastodon-token-SECRET-g7h8i9",
    "SMTP_PASSWORD": "smtp-password-SECRET-j0k1l2",
    "BSKY_APP_PASSWORD": "bsky-app-SECRET-m3n4-o5p6",
    "POSTMARK_TOKEN": "postmark-token-SECRET-q7r8s9",
}
#: the values, and fragments an echo or a truncation could leave behind
NEEDLES = (*tuple(ENV.values()), "webhook-path-SECRET", "c2lnbmluZy1TRUNSRVQ", "SECRET-g7h8", "SECRET-j0k1", "SECRET-m3n4", "SECRET-q7r8")

CONFIG = {
    "ledger": "sqlite:///unused.db",
    "public_url": "https://status.example.test",
    "channels": {
        "hook": {"kind": "webhook", "url": "${HOOK_URL}", "secret": "${HOOK_SIGNING}"},
        "chat": {"kind": "webhook", "format": "slack", "url": "${HOOK_URL}/slack"},
        "masto": {"kind": "mastodon", "base_url": "https://social.example.test", "access_token": "${MASTODON_TOKEN}",
                  "read_instance_limits": False},
        "bsky": {"kind": "bluesky", "base_url": "https://pds.example.test", "handle": "ops.example.test",
                 "app_password": "${BSKY_APP_PASSWORD}"},
        "mail": {"kind": "email", "transport": "smtp",
                 "smtp": {"host": "smtp.example.test", "security": "none", "username": "ops",
                          "password": "${SMTP_PASSWORD}"},
                 "from_address": "status@example.test", "recipients": ["a@example.test"]},
        "pm": {"kind": "email", "transport": "postmark", "postmark": {"base_url": "https://pm.example.test",
                                                                     "server_token": "${POSTMARK_TOKEN}"},
               "from_address": "status@example.test", "recipients": ["b@example.test"]},
    },
    "routes": {"incident": ["hook", "chat", "masto", "bsky", "mail", "pm"]},
    "api": {"max_body_bytes": 65536, "rate_limit": "100000/m", "anonymous_rate_limit": "100000/m"},
    "policy": {"defaults": {"attempts": 1}},
}


def leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [n for n in NEEDLES + extra if n and n in text]


# ---------------------------------------------------------------- echoing providers


def echo_handler(request: httpx.Request) -> httpx.Response:
    """A provider that quotes everything it was sent back in its error: the worst case."""
    quoted = f"{request.method} {request.url} auth={request.headers.get('authorization')} " \
             f"token={request.headers.get('x-postmark-server-token')} body={request.content.decode(errors='replace')}"
    path = request.url.path
    if path.endswith("createSession"):
        return httpx.Response(401, json={"error": "AuthenticationRequired", "message": f"Invalid password: {quoted}"})
    if "postmark" in request.url.host or request.url.host.startswith("pm."):
        return httpx.Response(401, json={"ErrorCode": 10, "Message": f"Bad server token: {quoted}"})
    if "hooks" in request.url.host:
        return httpx.Response(400, text=f"invalid_payload for {quoted}")
    return httpx.Response(401, json={"error": f"The access token is invalid: {quoted}"})


def raising_handler(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"cannot connect to {request.url} with {request.headers.get('authorization')}",
                             request=request)


class EchoSMTP:
    """SMTP server whose authentication failure quotes the password it was given."""

    def __init__(self):
        self.closed = False

    def ehlo(self):
        return 250, b"ok"

    def starttls(self, context=None):
        return 220, b"go"

    def login(self, user, password):
        raise smtplib.SMTPAuthenticationError(535, f"5.7.8 bad credentials {user}:{password}".encode())

    def __getattr__(self, name):
        def refuse(*a, **kw):
            raise smtplib.SMTPServerDisconnected(f"closed after {a!r}")
        return refuse

    def quit(self):
        self.closed = True

    def close(self):
        self.closed = True


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def logs(caplog):
    """Logging as the real processes set it up (``broadcaster.logs.configure``) at DEBUG, every
    record also kept by caplog."""
    from broadcaster.logs import configure

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("httpx", "httpcore",
                                                                                    "uvicorn.access")})
    configure("DEBUG")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def make_runtime(tmp_path, handler) -> Runtime:
    settings = load_settings(CONFIG, env=ENV)
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    return memory_runtime(settings, ledger=ledger, http=httpx.Client(transport=httpx.MockTransport(handler)),
                          ports=ChannelPorts(smtp_factory=lambda *a, **kw: EchoSMTP()))


def everything_in_the_ledger(ledger: Ledger) -> str:
    meta = MetaData()
    meta.reflect(ledger.engine)
    out = []
    with ledger.read() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                out.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(out)


def log_text(caplog) -> str:
    parts = []
    for rec in caplog.records:
        parts.append(rec.getMessage())
        parts.append(repr(rec.args))
        if rec.exc_info and rec.exc_info[1] is not None:
            parts.append(logging.Formatter().formatException(rec.exc_info))
    return "\n".join(parts)


# ---------------------------------------------------------------- configuration


def test_settings_never_show_a_secret(tmp_path):
    settings = load_settings(CONFIG, env=ENV)
    views = [repr(settings), str(settings), json.dumps(settings.model_dump(mode="json")), settings.model_dump_json()]
    for ch in settings.channels.values():
        views += [repr(ch), str(ch), ch.model_dump_json()]
    rt = Runtime(settings, ledger=Ledger.open(f"sqlite:///{tmp_path}/l.db"), breaker=MemoryBreaker(),
                 limiter=MemoryRateLimiter())
    for name in settings.channels:
        ch = rt.channel(name)
        views += [repr(ch), str(ch), repr(vars(ch))]
    assert not leaks("\n".join(views))
    # and yet the values are there for the adapters to use
    assert settings.channels["masto"].access_token.reveal() == ENV["MASTODON_TOKEN"]


@pytest.mark.parametrize("broken", [
    {"masto": {"kind": "mastodon", "access_token": "${MASTODON_TOKEN}", "base_url": "not a url"}},
    {"masto": {"kind": "mastodon", "access_token": "${MASTODON_TOKEN}", "bogus_key": "${MASTODON_TOKEN}"}},
    {"masto": {"kind": "mastodon", "access_token": ["${MASTODON_TOKEN}"]}},
    {"hook": {"kind": "webhook", "url": "not a url ${SMTP_PASSWORD}", "secret": "${HOOK_SIGNING}"}},
    {"pm": {"kind": "email", "transport": "postmark", "postmark": {"server_token": "${POSTMARK_TOKEN}"},
            "from_address": "${POSTMARK_TOKEN}", "recipients": ["x@example.test"]}},
], ids=["bad-url", "unknown-key", "token-as-list", "secret-in-bad-url", "token-as-address"])
def test_configuration_errors_do_not_quote_secrets(broken):
    from broadcaster.errors import ConfigError

    cfg = {**CONFIG, "channels": broken, "routes": {}}
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env=ENV)
    text = "\n".join([str(info.value), repr(info.value), repr(info.value.args)])
    assert not leaks(text), text


# ---------------------------------------------------------------- deliveries against echoing providers


def run_flows(tmp_path, handler) -> dict:
    """Submit to all six channels, attempt each once through the engine, check every channel's
    credentials, then read everything back through the API."""
    from broadcaster.asgi import create_app
    from broadcaster.tokens import TokenStore
    from tests.api.conftest import TestClient

    rt = make_runtime(tmp_path, handler)
    raw_token, _ = TokenStore(rt.ledger, rt.settings).create("ops-admin", admin=True, actor="test")
    sub = service.submit(rt, {"kind": "incident", "title": "Database down", "body": "On it."},
                         principal=service.Principal("ops-admin", admin=True))
    outcomes, errors = {}, []
    for d in rt.ledger.deliveries_of(sub.id):
        try:
            outcomes[d.channel] = engine.attempt(rt, d.id)
        except Exception as exc:  # noqa: BLE001 - an escaping exception is looked at too
            errors.append(f"{type(exc).__name__}: {exc} {exc!r}")
    settled = {d.channel: str(d.state) for d in rt.ledger.deliveries_of(sub.id)}
    assert len(settled) == 6 and "delivered" not in settled.values(), settled
    for name in rt.settings.channels:
        try:
            rt.channel(name).check()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc} {exc!r} {exc.args!r}")
    with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as client:
        h = {"Authorization": f"Bearer {raw_token}"}
        responses = [client.get(f"/api/v1/announcements/{sub.id}", headers=h),
                     client.get("/api/v1/announcements", headers=h), client.get("/api/v1/channels", headers=h),
                     client.get("/api/v1/export", headers=h),
                     client.post("/api/v1/preview", json={"kind": "incident", "title": "t", "body": "b"}, headers=h),
                     client.get("/readyz"), client.get("/metrics"), client.get("/api/v1/nope", headers=h)]
        for d in rt.ledger.deliveries_of(sub.id):
            responses.append(client.post(f"/api/v1/deliveries/{d.id}/retry", headers=h))
        responses.append(client.post(f"/api/v1/announcements/{sub.id}/retract", headers=h))
    out = {"raw": raw_token, "errors": errors, "responses": responses, "outcomes": outcomes,
           "ledger": everything_in_the_ledger(rt.ledger), "deliveries": rt.ledger.deliveries_of(sub.id),
           "events": [e for d in rt.ledger.deliveries_of(sub.id) for e in rt.ledger.events_of(d.id)]
           if hasattr(rt.ledger, "events_of") else None}
    rt.http.close()
    rt.ledger.close()
    return out


def without_response_excerpts(text: str) -> str:
    """API/export JSON with the attempt log's provider ``response`` excerpts removed (they are
    checked separately, below)."""
    import re

    return re.sub(r'"response":\s*"(?:[^"\\]|\\.)*"', '"response":"-"', text)


@pytest.mark.parametrize("handler", [echo_handler, raising_handler], ids=["echo", "connect-error"])
def test_failed_deliveries_leak_nothing_to_logs_errors_or_messages(tmp_path, logs, handler):
    out = run_flows(tmp_path, handler)
    raw = (out["raw"],)
    for d in out["deliveries"]:
        assert not leaks(d.last_error or "", raw), d.last_error
    api_text = "\n".join(without_response_excerpts(r.text) + repr(dict(r.headers)) for r in out["responses"])
    assert not leaks(api_text, raw), "a secret reached an API response"
    assert not leaks("\n".join(out["errors"]), raw), out["errors"]
    assert not leaks(log_text(logs), raw), "a secret reached the log"
    assert out["raw"] not in out["ledger"]
    print(f"\nsecrets ({handler.__name__}): {len(logs.records)} log records, {len(out['responses'])} responses, "
          f"{len(out['errors'])} exceptions searched; outcomes {out['outcomes']}")


def test_a_connect_error_leaves_no_secret_in_the_ledger(tmp_path, logs):
    out = run_flows(tmp_path, raising_handler)
    assert not leaks(out["ledger"], (out["raw"],))


def test_provider_answers_that_quote_credentials_are_redacted_in_the_attempt_log(tmp_path, logs):
    out = run_flows(tmp_path, echo_handler)
    assert not leaks(out["ledger"], (out["raw"],)), "a secret was written to the ledger"
    assert not leaks("\n".join(r.text for r in out["responses"]), (out["raw"],))


def test_the_ledger_holds_token_hashes_only(tmp_path):
    from broadcaster.tokens import TokenStore, hash_token

    rt = make_runtime(tmp_path, echo_handler)
    store = TokenStore(rt.ledger, rt.settings)
    raws = [store.create(f"t{i}", admin=bool(i % 2), actor="test")[0] for i in range(5)]
    store.revoke("t1", actor="test")
    for raw in raws:
        assert store.verify(raw) is not None or raw == raws[1]
    text = everything_in_the_ledger(rt.ledger)
    for raw in raws:
        assert raw not in text and raw[4:] not in text  # neither the token nor its random part
        assert hash_token(raw) in text
    assert not [repr(i) for i in store.list() if any(raw in repr(i) or hash_token(raw) in repr(i) for raw in raws)]
    rt.ledger.close()


# ---------------------------------------------------------------- the CLI


class EchoServer:
    """Loopback HTTP server answering 401 with everything it received quoted back."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode(errors="replace")
                text = json.dumps({"error": f"bad credentials: {self.path} {dict(self.headers)} {body}",
                                   "message": f"Invalid password {body}", "Message": f"token {dict(self.headers)}"})
                data = text.encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_cli_check_output_is_secret_free(tmp_path, mode, logs):
    import yaml
    from click.testing import CliRunner

    from broadcaster.cli import main

    echo = EchoServer()
    try:
        cfg = json.loads(json.dumps(CONFIG))
        cfg["ledger"] = f"sqlite:///{tmp_path}/ledger.db"
        cfg["channels"]["masto"]["base_url"] = echo.url + "/masto"
        cfg["channels"]["bsky"]["base_url"] = echo.url + "/bsky"
        cfg["channels"]["pm"]["postmark"]["base_url"] = echo.url + "/pm"
        cfg["channels"]["mail"]["smtp"].update(host="127.0.0.1", port=9)  # nothing listens: refused at once
        path = tmp_path / "broadcaster.yaml"
        path.write_text(yaml.safe_dump(cfg))
        args = ["--config", str(path), "check"] + (["--offline"] if mode == "offline" else [])
        result = CliRunner().invoke(main, args, env={**ENV, "BROADCASTER_CONFIG": None}, catch_exceptions=True)
    finally:
        echo.stop()
    out = result.output + (repr(result.exception) if result.exception else "")
    print(f"\ncheck --{mode}: exit {result.exit_code}, {len(out.splitlines())} lines")
    assert result.exit_code in (0, 1, 2), out
    assert "Traceback" not in result.output
    if mode == "online":
        assert "masto" in out and "bsky" in out  # every channel was reported on
    assert not leaks(out), out
    assert not leaks(log_text(logs))


def test_bluesky_error_names_are_not_trusted(tmp_path):
    def echo_in_error_name(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": f"AuthenticationRequired {request.content.decode()}",
                                         "message": "Invalid identifier or password"})

    rt = make_runtime(tmp_path, echo_in_error_name)
    with pytest.raises(Exception) as info:
        rt.channel("bsky").check()
    rt.ledger.close()
    assert not leaks(f"{info.value} {info.value!r}")


# ---------------------------------------------------------------- API errors


def test_an_unexpected_exception_carrying_a_secret_is_not_shown_or_logged(tmp_path, logs, monkeypatch):
    from broadcaster.asgi import create_app
    from broadcaster.tokens import TokenStore
    from tests.api.conftest import TestClient

    rt = make_runtime(tmp_path, echo_handler)
    raw, _ = TokenStore(rt.ledger, rt.settings).create("ops", admin=True, actor="test")

    def explode(*a, **kw):
        raise RuntimeError(f"connection to {ENV['HOOK_URL']} failed with {ENV['MASTODON_TOKEN']}")

    monkeypatch.setattr(service, "submit", explode)
    with TestClient(create_app(rt.settings, rt), raise_server_exceptions=False) as client:
        r = client.post("/api/v1/announcements", json={"kind": "incident", "title": "t"},
                        headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert not leaks(r.text, (raw,))
    assert not leaks(log_text(logs), (raw,))
    assert any("RuntimeError" in rec.getMessage() for rec in logs.records)  # the type is logged, for operators
    rt.ledger.close()
