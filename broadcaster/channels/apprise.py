"""Apprise: the long tail of services (Telegram, Matrix, SMS…) through Apprise URLs.

Optional: ``pip install 'broadcaster[apprise]'``. The library is imported only when used, so
the channel kind stays configurable without it and says plainly what is missing.

Why one Apprise object per URL: Apprise answers one bool for everything it notified, so with
several URLs a failure of one would make a retry repeat the others. Each URL is a progress item
(named by a hash, never by the URL, which holds credentials) and a retry skips those done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from ..config import ChannelSettings, Secret
from ..errors import PermanentError, TransientError
from ..models import Post, Receipt
from .base import Channel, MemoryProgress, Progress
from .registry import register

INSTALL_HINT = "the apprise channel needs the optional extra: pip install 'broadcaster[apprise]'"
NOTIFY_TYPE = {"incident": "failure", "maintenance": "warning", "promotion": "info", "deploy": "success"}


class AppriseSettings(ChannelSettings):
    kind: Literal["apprise"] = "apprise"
    urls: tuple[Secret, ...] = Field(min_length=1)  # Apprise URLs carry tokens: masked


def default_factory() -> Any:
    try:
        import apprise
    except ImportError as exc:
        raise PermanentError(INSTALL_HINT) from exc
    return apprise.Apprise()


def item(url: Secret) -> str:
    return "url:" + hashlib.sha256(url.reveal().encode()).hexdigest()[:12]


@register
class Apprise(Channel[AppriseSettings]):
    kind = "apprise"
    Settings = AppriseSettings
    marks_io = False  # the apprise library reaches the services itself: any unexpected error may follow a send

    @property
    def factory(self) -> Callable[[], Any]:
        return self.apprise_factory or default_factory

    def _target(self, index: int, url: Secret) -> Any:
        obj = self.factory()
        if not obj.add(url.reveal()):
            raise PermanentError(f"{self.name}: urls[{index}] is not a valid Apprise URL (or its service is unsupported)")
        return obj

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        progress = progress if progress is not None else MemoryProgress()
        before = progress.states()
        urls = list(enumerate(self.settings.urls))
        todo = [(i, u) for i, u in urls if before.get(item(u), ("",))[0] != "done"]
        targets = [(i, u, self._target(i, u)) for i, u in todo]  # every URL valid before any is notified
        failed = []
        for i, url, target in targets:
            progress.mark([item(url)], "sending")
            try:
                ok = target.notify(body=post.text, title=post.title,
                                   notify_type=NOTIFY_TYPE.get(post.kind, "info"))
            except Exception as exc:  # noqa: BLE001 - a plugin bug must not crash the worker
                ok = False
                detail = f"apprise raised {type(exc).__name__}"
            else:
                detail = "notified" if ok else "apprise reported failure"
            if ok is None:
                progress.mark([item(url)], "failed", "nothing to notify")
                raise PermanentError(f"{self.name}: urls[{i}] matched no service to notify")
            progress.mark([item(url)], "done" if ok else "failed", detail)
            if not ok:
                failed.append(f"urls[{i}]")
        if failed:
            raise TransientError(f"{self.name}: {', '.join(failed)} failed ({len(urls) - len(failed)} of {len(urls)} done)")
        return Receipt(remote_id=f"apprise:{key}", extra={"sent": len(targets), "skipped": len(urls) - len(targets)})

    def check(self) -> str:
        for i, url in enumerate(self.settings.urls):
            self._target(i, url)
        return f"{len(self.settings.urls)} Apprise URL(s) understood (nothing sent)"
