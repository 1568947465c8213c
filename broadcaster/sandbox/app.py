"""The sandbox ASGI app: every provider under its own prefix, the control API under
``/_sandbox``, one shared :class:`SandboxState` — and, given ``site_dir``, a status site's output
directory served read-only at ``/status/``: the demo's stand-in for the separate web host or
bucket a real status site is published to, so the ``Verify:`` link in demo posts opens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .control import control_routes
from .drop import DropConnections
from .providers import PROVIDERS, Provider
from .state import SandboxState

SMTP = "smtp"
#: where ``site_dir`` is served (a demo ``site_url`` is ``http://<sandbox>/status``)
SITE_PATH = "/status"


class SandboxApp:
    """ASGI callable. ``providers[prefix]`` lists the stand-ins mounted at ``/{prefix}``."""

    def __init__(self, state: SandboxState | None = None, *, rate_limits: bool = True,
                 settings: dict[str, dict[str, Any]] | None = None, clock: Callable[[], float] = time.time,
                 site_dir: str | None = None):
        self.state = state or SandboxState(clock=clock)
        self.providers: dict[str, list[Provider]] = {}
        for prefix, classes in PROVIDERS.items():
            self.providers[prefix] = [cls(self.state) for cls in classes]
            if not rate_limits:
                self.configure(prefix, {"rate_limits": False})
        for prefix, values in (settings or {}).items():
            self.configure(prefix, values)
        mounts = [Mount("/_sandbox", routes=control_routes(self))]
        for prefix, instances in self.providers.items():
            mounts.append(Mount(f"/{prefix}", routes=[r for p in instances for r in p.routes()]))
        if site_dir:  # GET/HEAD only; the directory may appear after the first post
            mounts.append(Mount(SITE_PATH, app=StaticFiles(directory=site_dir, html=True, check_dir=False)))
        self.starlette = Starlette(routes=mounts)
        self.asgi = DropConnections(self.starlette)

    async def __call__(self, scope, receive, send) -> None:
        await self.asgi(scope, receive, send)

    @property
    def names(self) -> list[str]:
        return [*self.providers, SMTP]

    def configure(self, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
        """Merge settings into every stand-in under ``prefix``; KeyError if there is none."""
        instances = self.providers[prefix]
        for provider in instances:
            provider.settings.update(values)
        return dict(instances[0].settings)

    def provider(self, prefix: str) -> Provider:
        return self.providers[prefix][0]


def create_app(**kw: Any) -> SandboxApp:
    return SandboxApp(**kw)
