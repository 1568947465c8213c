"""Server-side commands: up, api, worker, scheduler, check, migrate."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import click

from ..config import mask_url_password
from . import EXIT_USAGE, load, main


def setup_logging(level: str = "INFO") -> None:
    from ..logs import configure

    configure(level)


def _probe_host(host: str) -> str:
    """Where to reach a server listening on ``host`` from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@main.command()
@click.option("--host", default=None, help="API address (default from config: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="API port (default from config: 8080).")
@click.option("--sandbox/--no-sandbox", "with_sandbox", default=None,
              help="Also run the provider sandbox (default: when the config's sandbox.autostart is true).")
@click.pass_context
def up(ctx, host, port, with_sandbox):
    """Run everything on this machine: API + worker + scheduler (Ctrl-C stops all).

    Says "is up" once the API answers /healthz (and the sandbox its port). A part that exits is
    restarted with a growing pause (1 s doubling to at most 60 s; the log says when it tries
    next) while the others keep serving; /readyz and /metrics show it. Only the API, worker or
    scheduler refused by the configuration (or not serving within 90 s) stops everything. The
    sandbox is optional: if its port is taken, the rest runs without it."""
    from ..supervise import (
        Supervisor,
        child_env,
        find_or_start_redis,
        http_ok,
        port_answers,
        port_free,
    )

    settings = load(ctx)
    host = host or settings.api.host
    port = port or settings.api.port
    if not port_free(host, port):
        click.echo(f"error: cannot start the API: {host}:{port} is already in use (another broadcaster up?); "
                   "stop that, or pass --port / set api.port", err=True)
        ctx.exit(EXIT_USAGE)
    sandbox_on = settings.sandbox.autostart if with_sandbox is None else with_sandbox
    sandbox_note = None
    box = settings.sandbox
    if sandbox_on:
        taken = [p for p in (box.port, box.smtp_port) if p > 0 and not port_free(box.host, p)]
        if taken:
            sandbox_on = False
            sandbox_note = (f"sandbox:   NOT started — {box.host}:{', '.join(map(str, taken))} already in use "
                            "(a sandbox you started yourself serves the channels just as well; set sandbox.port, "
                            "or --no-sandbox)")
            click.echo(f"warning: {sandbox_note}", err=True)
    var = Path(os.environ.get("BROADCASTER_VAR", "var"))
    try:
        choice = find_or_start_redis(settings.broker, var, dict(os.environ))
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_USAGE)
    from ..ledger import Ledger

    ledger = Ledger.open(settings.ledger)  # migrate once, before the children start
    token_note = _first_admin_token(ledger, settings, var)
    ledger.close()
    key_note = _first_signing_key(settings)
    cfg = ["--config", settings.source] if settings.source else []
    var.mkdir(parents=True, exist_ok=True)
    parts_file = var / "parts.json"
    sup = Supervisor(child_env(choice.url, parts_file), state_file=parts_file)
    if sandbox_on:
        site = _site_on_sandbox(settings, box.port)
        sup.add("sandbox", *cfg, "sandbox", "--host", box.host, "--port", str(box.port),
                "--smtp-port", str(box.smtp_port), *(["--site", site] if site else []), required=False,
                probe=lambda: port_answers(_probe_host(box.host), box.port))
    api_url = f"http://{_url_host(_probe_host(host))}:{port}"
    sup.add("api", *cfg, "api", "--host", host, "--port", str(port), probe=lambda: http_ok(f"{api_url}/healthz"))
    sup.add("worker", *cfg, "worker", "--no-banner")  # the lines below say what runs
    sup.add("scheduler", *cfg, "scheduler")

    def ready(running) -> None:
        shown = f"http://{_url_host(host)}:{port}"
        click.echo(f"broadcaster is up (Redis: {choice.how}; ledger: {mask_url_password(settings.ledger)})")
        click.echo(f"  web page:  {shown}/")
        click.echo(f"  API:       {shown}/api/v1   (docs: {shown}/docs)")
        if any(c.name == "sandbox" for c in running):
            click.echo(f"  sandbox:   http://{_url_host(box.host)}:{box.port}/_sandbox/")
        elif sandbox_note or any(c.name == "sandbox" for c in sup.children):
            click.echo(f"  {sandbox_note or 'sandbox:   NOT running (see the message above)'}")
        if token_note:
            click.echo(f"  {token_note}")
        if key_note:
            click.echo(f"  {key_note}")
        click.echo("  Ctrl-C stops everything.")

    try:
        code = sup.run(on_ready=ready)
    finally:
        if choice.process is not None:
            choice.process.terminate()
    click.echo("broadcaster stopped." if code == 0 else "broadcaster stopped: a required part could not run.")
    ctx.exit(code)


def _site_on_sandbox(settings, sandbox_port: int) -> str | None:
    """The output directory of the status site whose ``site_url`` is the sandbox's ``/status``
    (the demo's), for the sandbox to serve — so the ``Verify:`` link in its posts opens. A site
    published anywhere else is that web server's to serve, not ours."""
    from urllib.parse import urlsplit

    from ..channels.statuspage import StatuspageSettings
    from ..sandbox.app import SITE_PATH

    for cfg in settings.channels.values():
        if isinstance(cfg, StatuspageSettings) and cfg.enabled and cfg.site_url:
            url = urlsplit(str(cfg.site_url))
            if url.port == sandbox_port and url.path.rstrip("/") == SITE_PATH:
                return str(cfg.output_dir)
    return None


def _first_signing_key(settings) -> str | None:
    """With ``signing`` configured and a key directory that holds no key at all, create the first
    key, as ``broadcaster keys create`` would, so a new installation (the demo) signs from its
    first post. A keyring that has keys but no usable one is left alone: that is a decision."""
    from .. import signing

    cfg = signing.config_of(settings)
    if cfg is None:
        return None
    ring = signing.Keyring(cfg.key_dir)
    try:
        if ring.keys():
            return None
        info = ring.create()
    except (signing.SigningError, OSError) as exc:
        return f"signing: no key and none could be created in {cfg.key_dir} ({exc}); posts go out unsigned"
    return f"signing key created: {info.id} in {cfg.key_dir} (`broadcaster keys list`)"


def _first_admin_token(ledger, settings, var: Path) -> str | None:
    """On a brand-new ledger with no tokens at all, create an admin token so the system can be
    used at once. The raw token goes to ``var/admin-token`` (mode 600), never to the ledger or logs."""
    from ..tokens import TokenStore

    store = TokenStore(ledger, settings)
    path = var / "admin-token"
    if store.list():
        return f"admin token: in {path}" if path.exists() else None
    raw, _ = store.create("admin", admin=True, actor="broadcaster up")
    var.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(raw + "\n")
    return f"admin token created: export BROADCASTER_TOKEN=$(cat {path})"


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="API processes (default from config api.workers: 1); more use more cores.")
@click.pass_context
def api(ctx, host, port, workers):
    """Run the HTTP API and web page (uvicorn)."""
    import uvicorn

    settings = load(ctx)
    setup_logging()
    workers = workers or settings.api.workers
    opts = dict(host=host or settings.api.host, port=port or settings.api.port, log_level="warning",
                timeout_keep_alive=5, timeout_graceful_shutdown=5,
                proxy_headers=False)  # the app reads them itself, from api.trusted_proxies only
    if workers > 1:
        if not settings.source:
            raise click.UsageError("--workers > 1 needs the configuration in a file (--config)")
        os.environ["BROADCASTER_CONFIG"] = settings.source  # each process reads the same file
        uvicorn.run("broadcaster.asgi:app_from_environment", factory=True, workers=workers, **opts)
        return
    from ..asgi import create_app

    uvicorn.run(create_app(settings), **opts)


@main.command()
@click.option("-Q", "--queues", default=None, help="Comma-separated queues (default: every channel's + bc.default).")
@click.option("-c", "--concurrency", type=int, default=None)
@click.option("--pool", type=click.Choice(["threads", "prefork", "solo"]), default=None)
@click.option("--loglevel", default="INFO")
@click.option("--banner/--no-banner", default=True, help="Print Celery's start-up banner (off under `up`).")
@click.pass_context
def worker(ctx, queues, concurrency, pool, loglevel, banner):
    """Run a Celery worker for the channel queues."""
    from ..tasks import create_app

    settings = load(ctx)
    setup_logging(loglevel)
    app = create_app(settings)
    argv = [*([] if banner else ["--quiet"]), "worker", f"--loglevel={loglevel}",
            f"--pool={pool or settings.worker.pool}",
            f"--concurrency={concurrency or settings.worker.concurrency}",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]
    if queues:
        argv.append(f"--queues={queues}")
    app.worker_main(argv=argv)


@main.command()
@click.option("--once", is_flag=True, help="Run one sweep and exit (for cron or debugging).")
@click.pass_context
def scheduler(ctx, once):
    """Run the scheduler: releases due work, re-enqueues what the broker lost."""
    from .. import scheduler as sched
    from ..runtime import Runtime
    from ..tasks import celery_enqueuer

    settings = load(ctx)
    setup_logging()
    runtime = Runtime.from_settings(settings, enqueuer=celery_enqueuer(settings))
    if once:
        r = sched.tick(runtime, sched.feature_hooks())
        click.echo(f"expired {r.expired}, released {r.promoted}, enqueued {r.enqueued}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sched.run(runtime, stop)


@main.command()
@click.option("--offline", is_flag=True, help="Only validate the file; do not contact any channel.")
@click.pass_context
def check(ctx, offline):
    """Validate the configuration and verify channel credentials without posting."""
    from ..errors import DeliveryError
    from ..runtime import Runtime

    settings = load(ctx)
    click.echo(f"configuration OK: {settings.source or '(inline)'} — {len(settings.channels)} channels, "
               f"{len(settings.routes)} routes")
    for name, cfg in settings.channels.items():  # valid, but will fail (e.g. a retired Teams connector URL)
        for warning in getattr(cfg, "config_warnings", list)():
            click.echo(f"warning: channels.{name}: {warning}", err=True)
    from ..channels.statuspage import shared_fate

    for warning in shared_fate(settings):
        click.echo(f"warning: {warning}", err=True)
    if offline:
        return
    failed = 0
    rt = Runtime(settings, breaker=None, limiter=None,  # builds channels only: no ledger
                 redis=_refresh_redis(settings))
    for name, cfg in settings.channels.items():
        if not cfg.enabled:
            click.echo(f"  {name:24} {cfg.kind:22} disabled")
            continue
        ch = rt.build_channel(name)
        try:
            what = ch.check()
            click.echo(f"  {name:24} {cfg.kind:22} ok: {what}{_expiry_note(settings, name, ch)}")
        except DeliveryError as exc:
            from ..config import redact

            failed += 1
            click.echo(f"  {name:24} {cfg.kind:22} FAILED: {redact(str(exc), rt.secrets_of(name))}")
        finally:
            ch.close()
    if failed:
        ctx.exit(1)


def _refresh_redis(settings):
    """The shared Redis, when a channel renews its token: ``check`` may renew one that is due,
    and must take the same lock as the workers and the scheduler (without it, nothing renews)."""
    if not any(getattr(c, "refresh", None) is not None and c.enabled for c in settings.channels.values()):
        return None
    from ..runtime import connect_redis, state_redis_url

    try:
        return connect_redis(state_redis_url(settings), settings, socket_timeout=5, socket_connect_timeout=3)
    except ValueError:
        return None


def _expiry_note(settings, name: str, ch) -> str:
    """The token expiry forecast, where the adapter learnt it or the configuration states it."""
    learnt = getattr(ch, "credential_expires_at", None)
    renewed = getattr(settings.channels[name], "refresh", None) is not None
    expires = float(learnt) if isinstance(learnt, (int, float)) else (None if renewed else
                                                                       settings.readiness.expiry_of(name))
    if expires is None:
        return ""
    days = (expires - time.time()) / 86400
    if days < 0:
        return f"; token EXPIRED {-days:.0f} days ago"
    soon = " — renew it" if expires - time.time() < settings.readiness.warn_before else ""
    return f"; token expires in {days:.0f} days{soon}"


@main.command()
@click.pass_context
def migrate(ctx):
    """Bring the ledger schema up to date (safe to run on every upgrade)."""
    from ..ledger import LATEST, current_version, make_engine, migrate as do_migrate

    settings = load(ctx)
    engine = make_engine(settings.ledger)
    before = current_version(engine)
    applied = do_migrate(engine, log=click.echo)
    click.echo(f"ledger schema at version {LATEST} (was {before}; applied {len(applied)})")
    logging.shutdown()
