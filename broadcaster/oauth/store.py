"""Where a channel's renewed token set is kept: the operator's choice, never the ledger.

- :class:`FileTokenStore` — a JSON file, replaced atomically (a private temporary file in the
  same directory, created 0600, fsynced, renamed over the old one, directory fsynced): a reader
  sees the old document or the new one, never half of one, and a crash right after a renewal
  still finds the new refresh token on disk. A file found open to other users is narrowed.
- :class:`CommandTokenStore` — the operator's secret-store commands (``pass``, ``vault kv``, a
  cloud secret manager's CLI…), run with our environment: ``read`` prints the document,
  ``write`` receives it on stdin. Their output never reaches a log or an error; their stderr is
  shown shortened and with the tokens cut out.
- :class:`MemoryTokenStore` — the twin for tests (can be told to fail).

Every failure is a :class:`StoreError` whose message names the place, never the content.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Protocol

from ..config import redact
from .settings import TokenStoreSettings
from .tokens import TokenSet, from_json, to_json

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The store could not be read or written (the message names where, never a token)."""


class TokenStore(Protocol):
    #: where the tokens live, for messages ("file /var/lib/…", "command pass")
    where: str

    def load(self) -> TokenSet | None: ...

    def save(self, tokens: TokenSet) -> None: ...


class FileTokenStore:
    def __init__(self, path: str | os.PathLike, channel: str):
        self.path = Path(path)
        self.channel = channel
        self.where = f"file {self.path}"

    def load(self) -> TokenSet | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.where}: {exc.strerror}") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("token file %s was readable by other users; narrowed to 0600", self.path)
            try:
                os.chmod(self.path, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot narrow {self.where} to 0600: {exc.strerror}") from None
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read {self.where}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        try:
            return from_json(text, self.where)
        except ValueError as exc:
            raise StoreError(str(exc)) from None

    def save(self, tokens: TokenSet) -> None:
        data = to_json(self.channel, tokens).encode()
        folder = self.path.parent
        tmp = folder / f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise StoreError(f"cannot write {self.where}: {exc.strerror or type(exc).__name__}") from None


class CommandTokenStore:
    def __init__(self, read: tuple[str, ...], write: tuple[str, ...], channel: str, timeout: float = 20.0):
        self.read = tuple(a.replace("{channel}", channel) for a in read)
        self.write = tuple(a.replace("{channel}", channel) for a in write)
        self.channel = channel
        self.timeout = timeout
        self.where = f"command {os.path.basename(self.read[0])}"

    def _run(self, argv: tuple[str, ...], what: str, stdin: str | None, secrets: set[str]) -> str:
        try:
            done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError:
            raise StoreError(f"{what} command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise StoreError(f"{what} command {os.path.basename(argv[0])} took longer than {self.timeout:g}s") from None
        except OSError as exc:
            raise StoreError(f"{what} command {os.path.basename(argv[0])} failed to start: {exc.strerror}") from None
        if done.returncode != 0:
            said = " ".join((done.stderr or "").split())[:200]
            said = redact(said, secrets) or ""
            raise StoreError(f"{what} command {os.path.basename(argv[0])} exited {done.returncode}"
                             + (f": {said}" if said else ""))
        return done.stdout

    def load(self) -> TokenSet | None:
        out = self._run(self.read, "the token store's read", None, set())
        try:
            return from_json(out, self.where)
        except ValueError as exc:
            raise StoreError(str(exc)) from None

    def save(self, tokens: TokenSet) -> None:
        self._run(self.write, "the token store's write", to_json(self.channel, tokens), tokens.secrets())


class MemoryTokenStore:
    """In-memory twin; ``fail_saves``/``fail_loads`` make the next calls fail."""

    where = "memory"

    def __init__(self, tokens: TokenSet | None = None):
        self.tokens = tokens
        self.saves: list[TokenSet] = []
        self.fail_saves = 0
        self.fail_loads = 0
        self._lock = threading.Lock()

    def load(self) -> TokenSet | None:
        with self._lock:
            if self.fail_loads:
                self.fail_loads -= 1
                raise StoreError("memory store: load refused")
            return self.tokens

    def save(self, tokens: TokenSet) -> None:
        with self._lock:
            if self.fail_saves:
                self.fail_saves -= 1
                raise StoreError("memory store: save refused")
            self.tokens = tokens
            self.saves.append(tokens)


def open_store(cfg: TokenStoreSettings, channel: str) -> TokenStore:
    """The store a channel's settings name (``{channel}`` in a file path is the channel name)."""
    if cfg.file:
        return FileTokenStore(cfg.file.replace("{channel}", channel), channel)
    return CommandTokenStore(cfg.read, cfg.write, channel, cfg.timeout)
