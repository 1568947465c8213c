"""The ``broadcaster`` command. Each module adds its commands to :data:`main`.

Exit codes: 0 all delivered / ok, 1 some channel failed or unknown, 2 usage or
configuration error, 3 server unreachable, 4 still rate limited by the server after waiting
its Retry-After (up to 60 s in all; nothing was done). No traceback reaches the user.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import DISTRIBUTION
from ..errors import BroadcasterError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_RATE_LIMITED = 0, 1, 2, 3, 4


class Group(click.Group):
    """Turns our own errors into one clear line each and the right exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for line in exc.lines():
                click.echo(f"config error: {line}", err=True)
            ctx.exit(EXIT_USAGE)
        except BroadcasterError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_FAILED)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH", envvar="BROADCASTER_CONFIG",
              help="Configuration file (env BROADCASTER_CONFIG; default config/broadcaster.yaml).")
@click.version_option(package_name=DISTRIBUTION)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """broadcaster — submit an announcement once; deliver it everywhere, even on a bad day."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def load(ctx: click.Context):
    """The validated settings for this invocation (ConfigError → exit 2 with key paths)."""
    from ..config import read_settings

    root = ctx.find_root()
    if "settings" not in root.obj:
        root.obj["settings"] = read_settings(root.obj.get("config_path"))
    return root.obj["settings"]


for _module in ("server", "client", "admin", "data", "breakglass_cmd", "keys", "drafts_cmd", "review_cmd"):
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_module}":
            raise

try:
    from ..sandbox.cli import sandbox as _sandbox

    main.add_command(_sandbox, "sandbox")
except ModuleNotFoundError:
    pass


def run() -> None:
    sys.exit(main(standalone_mode=True))
