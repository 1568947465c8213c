"""``broadcaster sandbox``: run the provider stand-ins in the foreground (registered by the
main CLI group; this module only defines the command)."""

from __future__ import annotations

import threading

import click

from .faults import MODES, parse_spec


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, secret = value.partition("=")
        if not sep or not name or not secret:
            raise click.BadParameter(f"{value!r}: expected name=value", param_hint=what)
        out[name] = secret
    return out


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8099, show_default=True, type=int, help="HTTP port (0 picks a free one).")
@click.option("--smtp-port", default=8025, show_default=True, type=int, help="SMTP sink port (-1 disables it).")
@click.option("--fault", "faults", multiple=True, metavar="PROVIDER=MODE[,KEY=VALUE...]",
              help=f"Start with a fault, e.g. x=429,seconds=30 or mastodon=5xx,count=3. Modes: {', '.join(MODES)}.")
@click.option("--webhook-secret", multiple=True, metavar="NAME=SECRET",
              help="Verify Standard Webhooks signatures on /webhook/NAME with SECRET (whsec_...).")
@click.option("--no-rate-limits", is_flag=True, help="Do not enforce the providers' request windows.")
@click.option("--site", "site_dir", metavar="DIR", default=None,
              help="Serve a status site's output directory read-only at /status/ (the demo's web host).")
def sandbox(host: str, port: int, smtp_port: int, faults: tuple[str, ...], webhook_secret: tuple[str, ...],
            no_rate_limits: bool, site_dir: str | None) -> None:
    """Local stand-ins for the provider APIs with switchable faults (demos, drills, tests).

    Faults can be changed while it runs: POST /_sandbox/faults {"provider": "x", "mode": "down"}.
    """
    from .server import Sandbox

    try:
        parsed = [parse_spec(spec) for spec in faults]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = {"webhook": {"secrets": _pairs(webhook_secret, "--webhook-secret")}} if webhook_secret else None
    try:
        box = Sandbox(host, port, None if smtp_port < 0 else smtp_port, faults=parsed,
                      rate_limits=not no_rate_limits, settings=settings, log_level="info", site_dir=site_dir)
        unknown = [f.provider for f in parsed if f.provider not in box.app.names]
        if unknown:
            raise click.UsageError(f"unknown provider(s) in --fault: {', '.join(unknown)}; known: {', '.join(box.app.names)}")
        box.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port} or SMTP {smtp_port}: {exc.strerror or exc}") from None
    click.echo(f"sandbox control page: {box.base_url}/_sandbox/")
    for name in box.app.providers:
        click.echo(f"  {name:<11} base_url {box.url(name)}")
    if site_dir:
        click.echo(f"  {'status':<11} {box.base_url}/status/  ({site_dir}, read-only)")
    if box.smtp_port is not None:
        click.echo(f"  {'smtp':<11} {host}:{box.smtp_port}")
    for fault in parsed:
        click.echo(f"  fault: {fault.provider} {fault.mode}" + ("" if fault.count is None else f" x{fault.count}"))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        box.stop()
