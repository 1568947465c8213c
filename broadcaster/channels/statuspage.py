"""Our own static status page: a JSON state file of incidents, regenerated into HTML, an Atom
feed and summary JSON, written atomically and copied to every mirror.

Why mirrors: the page must stay reachable when our own servers are down, so it is published to
places that do not share their fate (a second disk, ``rsync`` to another host, a bucket).
Idempotent by construction: the incident id is derived from the delivery key and each update's
id from its key, and every send regenerates and re-publishes the whole site, so re-sending a
key neither duplicates anything nor leaves a mirror behind.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .. import official
from ..config import ChannelSettings, Duration, Settings, Strict, Url
from ..errors import PermanentError, TransientError
from ..models import Message, Post, Receipt
from . import _statussite as site
from ._statusi18n import languages
from .base import Channel, Progress
from .registry import register

log = logging.getLogger(__name__)


class MirrorSettings(Strict):
    path: str | None = None  # a directory that receives a copy of every file
    command: str | None = None  # e.g. "rsync -a {dir}/ host:/srv/status/"; {dir} = output_dir
    timeout: Duration = 120.0

    @model_validator(mode="after")
    def _one(self) -> MirrorSettings:
        if (self.path is None) == (self.command is None):
            raise ValueError("a mirror has either path or command")
        if self.command is not None and not shlex.split(self.command):
            raise ValueError("command is empty")
        return self

    def label(self, index: int) -> str:
        what = self.path if self.path is not None else shlex.split(self.command)[0]
        return f"mirror {index} ({what})"


class StatuspageSettings(ChannelSettings):
    kind: Literal["statuspage"] = "statuspage"
    output_dir: str
    state_dir: str | None = None  # default: "<output_dir>.state", outside what is published
    title: str = "Service status"
    site_url: Url | None = None  # public URL of output_dir, for absolute links in feed and JSON
    components: tuple[str, ...] = ()
    #: optional headings over components: group name → its members (each a declared component)
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    mirrors: tuple[MirrorSettings, ...] = ()
    history: int = Field(50, ge=1, le=10_000)
    #: the "By e-mail" link: the API's public form, e.g. <public_url>/api/v1/subscribe/form?list=customers
    subscribe_url: Url | None = None
    #: the "By webhook" link: the API's endpoint form, e.g. <public_url>/api/v1/subscribe/endpoint/form?list=customers
    subscribe_webhook_url: Url | None = None
    #: the language of the pages, feeds and badges (a catalogue in channels/status_locales/)
    language: str = "en"

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if v not in languages():
            raise ValueError(f"no catalogue for {v!r} (one of {', '.join(languages())})")
        return v

    @model_validator(mode="after")
    def _groups(self) -> StatuspageSettings:
        seen: dict[str, str] = {}
        for group, members in self.groups.items():
            for m in members:
                if m not in self.components:
                    raise ValueError(f"groups.{group}: {m!r} is not one of components")
                if m in seen:
                    raise ValueError(f"groups.{group}: {m!r} is already in group {seen[m]!r}")
                seen[m] = group
        return self


# ---------------------------------------------------------------- pure state changes


def apply(state: dict, post: Post, key: str, now: float) -> tuple[dict, str, str]:
    """Add ``post`` to ``state`` (a copy): (new state, incident id, update id). A key already
    applied changes nothing."""
    state = copy.deepcopy(state)
    official.remember_signature(state, post.meta.get("signature"))
    incidents = state.setdefault("incidents", {})
    meta = post.meta
    update_id = site.short_id(f"update:{key}")
    update = {"id": update_id, "key": key, "status": site.status_of(post),
              "body": meta.get("body") or post.text, "created_at": now}
    target = post.reply_to.remote_id if meta.get("update") and post.reply_to else None
    if target not in incidents:  # first post (or an update whose incident is unknown here)
        inc_id = site.short_id(key)
        if inc_id not in incidents:
            incidents[inc_id] = {
                "id": inc_id, "key": key, "kind": post.kind, "name": post.title, "status": site.status_of(post),
                "severity": meta.get("severity"), "impact": site.impact_of(post.kind, meta.get("severity")),
                "components": list(meta.get("components") or []), "window": meta.get("window"),
                "component_states": dict(meta.get("component_states") or {}),
                "url": post.url, "created_at": now, "updated_at": now, "retracted_at": None, "updates": [update],
                "announcement_id": meta.get("announcement_id"),  # its signature file is marked on retraction
                "next_update_at": meta.get("next_update_at"),
            }
            state["updated_at"] = now
        return state, inc_id, update_id
    inc = incidents[target]
    if all(u["id"] != update["id"] for u in inc["updates"]):
        if "components" in meta:  # an update may change what the incident affects (the author's list)
            inc["components"] = list(meta.get("components") or [])
            inc["component_states"] = dict(meta.get("component_states") or {})
        inc["updates"].append(update)
        inc["status"], inc["updated_at"], state["updated_at"] = update["status"], now, now
        inc["next_update_at"] = meta.get("next_update_at")  # each update keeps the promise or makes the next
    return state, str(target), update_id


def retract(state: dict, receipt: Receipt, now: float) -> dict:
    """Hide an incident, or drop one update and fall back to the previous status."""
    state = copy.deepcopy(state)
    inc = state.get("incidents", {}).get(receipt.remote_id or "")
    if inc is None:
        return state
    # retraction is per announcement: its signatures stop verifying (the file says "retracted")
    official.mark_retracted(state, inc.get("announcement_id"), now)
    if receipt.extra.get("is_update"):
        inc["updates"] = [u for u in inc["updates"] if u["id"] != receipt.extra.get("update_id")]
        if inc["updates"]:
            inc["status"] = inc["updates"][-1]["status"]
        else:
            inc["retracted_at"] = now
    else:
        inc["retracted_at"] = now
    inc["updated_at"] = state["updated_at"] = now
    return state


# ---------------------------------------------------------------- file I/O


def atomic_write(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; web servers must read the page
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        atomic_write(root / rel, data)
    pages = root / "incidents"
    if pages.is_dir():  # pages of retracted incidents go away
        for page in pages.glob("*.html"):
            if f"incidents/{page.name}" not in files:
                page.unlink(missing_ok=True)


def run_mirror_command(command: str, directory: Path, timeout: float) -> None:
    argv = [part.replace("{dir}", str(directory)) for part in shlex.split(command)]
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        log.warning("mirror command %s exited %s: %s", argv[0], done.returncode,
                    done.stderr.decode("utf-8", "replace")[-300:])
        raise OSError(f"exit status {done.returncode}")


@register
class Statuspage(Channel[StatuspageSettings]):
    kind = "statuspage"
    Settings = StatuspageSettings
    marks_io = False  # it writes files and runs a publish command: any unexpected error may follow a send
    idempotent = True
    can_lookup = True
    can_retract = True
    carries_signatures = True

    @property
    def output(self) -> Path:
        return Path(self.settings.output_dir)

    @property
    def state_path(self) -> Path:
        state_dir = self.settings.state_dir or str(self.output).rstrip("/") + ".state"
        return Path(state_dir) / "state.json"

    def render(self, message: Message) -> Post:
        return site.status_post(self.name, message)

    # -- state, under a lock shared by every worker on this machine

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict]:
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.state_path.with_name(".state.lock"), "a+b")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise TransientError(f"{self.name}: cannot open the state directory ({exc.strerror})") from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self.load()

    def load(self) -> dict:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"version": 1, "incidents": {}}
        except (OSError, ValueError) as exc:
            raise PermanentError(f"{self.name}: state file {self.state_path} is unreadable "
                                 f"({type(exc).__name__})") from exc

    def save_and_publish(self, state: dict) -> None:
        files = site.build_site(state, site.Site(
            title=self.settings.title, components=self.settings.components, site_url=self.settings.site_url,
            history=self.settings.history, groups=dict(self.settings.groups), now=self.clock(),
            subscribe_url=self.settings.subscribe_url, subscribe_webhook_url=self.settings.subscribe_webhook_url,
            language=self.settings.language))
        if self.trust_files is not None:
            files.update(self.trust_files(state))
        try:
            atomic_write(self.state_path, json.dumps(state, indent=1).encode())
            write_tree(self.output, files)
        except OSError as exc:
            raise TransientError(f"{self.name}: cannot write {self.output} ({exc.strerror or exc})") from exc
        failed = []
        for i, mirror in enumerate(self.settings.mirrors, 1):
            try:
                if mirror.path is not None:
                    write_tree(Path(mirror.path), files)
                elif mirror.command is not None:  # a mirror has one or the other (MirrorSettings)
                    run_mirror_command(mirror.command, self.output, mirror.timeout)
            except (OSError, subprocess.SubprocessError) as exc:
                reason = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else (
                    getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
                failed.append(f"{mirror.label(i)}: {reason}")
        if failed:
            raise TransientError(f"{self.name}: page written, but " + "; ".join(failed))

    def receipt(self, inc_id: str, update_id: str, is_update: bool) -> Receipt:
        url = site.page_link(self.settings.site_url, f"incidents/{inc_id}.html") if self.settings.site_url else None
        return Receipt(remote_id=inc_id, url=url, extra={"update_id": update_id, "is_update": is_update})

    # -- the contract

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        with self.locked() as state:
            state, inc_id, update_id = apply(state, post, key, self.clock())
            self.save_and_publish(state)
        is_update = state["incidents"][inc_id]["key"] != key
        return self.receipt(inc_id, update_id, is_update)

    def lookup(self, post: Post, *, key: str) -> Receipt | None:
        incidents = self.load().get("incidents", {})
        inc_id = site.short_id(key)
        if inc_id in incidents:
            return self.receipt(inc_id, site.short_id(f"update:{key}"), False)
        update_id = site.short_id(f"update:{key}")
        for inc in incidents.values():
            if any(u["id"] == update_id for u in inc["updates"]):
                return self.receipt(inc["id"], update_id, True)
        return None

    def retract(self, receipt: Receipt) -> None:
        with self.locked() as state:
            self.save_and_publish(retract(state, receipt, self.clock()))

    def check(self) -> str:
        problems = []
        for label, directory in [("output_dir", self.output)] + [
            (m.label(i), Path(m.path)) for i, m in enumerate(self.settings.mirrors, 1) if m.path is not None
        ]:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=directory):
                    pass
            except OSError as exc:
                problems.append(f"{label}: not writable ({exc.strerror or exc})")
        for i, m in enumerate(self.settings.mirrors, 1):
            if m.command is not None and shutil.which(shlex.split(m.command)[0]) is None:
                problems.append(f"{m.label(i)}: command not found")
        if problems:
            raise PermanentError(f"{self.name}: " + "; ".join(problems))
        return f"output and {len(self.settings.mirrors)} mirror(s) ready"


def shared_fate(settings: Settings) -> list[str]:
    """Warnings for ``broadcaster check``: a status site served from the host of our own
    ``public_url`` goes down with it — the one day it is needed."""
    api_host = urlsplit(settings.public_url).hostname
    out = []
    for name, cfg in settings.channels.items():
        if (isinstance(cfg, StatuspageSettings) and cfg.enabled and cfg.site_url
                and urlsplit(cfg.site_url).hostname == api_host):
            out.append(f"channels.{name}.site_url: the status site shares its host ({api_host}) with "
                       "public_url; serve it from elsewhere (see docs/status-site.md)")
    return out
