"""Local stand-ins for the provider APIs, with switchable faults, for demos, drills and tests.

``SandboxApp`` is the ASGI app (one prefix per provider, control API at ``/_sandbox``);
``Sandbox`` runs it with uvicorn (and the SMTP sink) in background threads for tests.
"""

from .app import SandboxApp, create_app
from .faults import MODES, Fault
from .state import SandboxState

__all__ = ["MODES", "Fault", "Sandbox", "SandboxApp", "SandboxState", "create_app"]


def __getattr__(name: str):
    if name == "Sandbox":  # uvicorn and aiosmtpd load only when a server is wanted
        from .server import Sandbox

        return Sandbox
    raise AttributeError(name)
