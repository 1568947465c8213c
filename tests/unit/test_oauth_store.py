"""Token stores: the file is private and replaced atomically (a reader never sees half of it);
secret-store commands round-trip the document; every failure names the place, never a token."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from broadcaster.config import Secret
from broadcaster.oauth.settings import TokenStoreSettings
from broadcaster.oauth.store import CommandTokenStore, FileTokenStore, StoreError, open_store
from broadcaster.oauth.tokens import TokenSet, fingerprint

ACCESS, REFRESH = "access-token-aaaa1111", "refresh-token-bbbb2222"


def tokens(n: int = 0) -> TokenSet:
    return TokenSet(access=Secret(f"{ACCESS}-{n}"), refresh=Secret(f"{REFRESH}-{n}"), expires_at=1000.0 + n,
                    refresh_expires_at=None, obtained_at=10.0, checked_at=10.0, seed="seed1")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_file_store_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = FileTokenStore(tmp_path / "tokens" / "x-main.json", "x-main")
        assert store.load() is None
        store.save(tokens(1))
    finally:
        os.umask(old)
    assert mode(tmp_path / "tokens") == 0o700 and mode(store.path) == 0o600
    assert store.load() == tokens(1)
    assert os.listdir(tmp_path / "tokens") == ["x-main.json"]  # no temporary file left behind
    doc = json.loads(store.path.read_text())
    assert doc["channel"] == "x-main" and doc["version"] == 1 and doc["refresh_token"] == f"{REFRESH}-1"


def test_a_reader_never_sees_half_a_document(tmp_path):
    store = FileTokenStore(tmp_path / "t.json", "x-main")
    store.save(tokens(0))
    stop = threading.Event()
    seen: list[object] = []

    def read():
        while not stop.is_set():
            try:
                seen.append(store.load())
            except StoreError as exc:  # a torn write would surface as "not a JSON document"
                seen.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(1, 120):
        store.save(tokens(n))
    stop.set()
    reader.join()
    assert seen and all(isinstance(s, TokenSet) for s in seen), [s for s in seen if not isinstance(s, TokenSet)][:3]


def test_a_file_open_to_others_is_narrowed(tmp_path, caplog):
    store = FileTokenStore(tmp_path / "t.json", "x-main")
    store.save(tokens(1))
    os.chmod(store.path, 0o644)
    assert store.load() == tokens(1)
    assert mode(store.path) == 0o600 and "narrowed to 0600" in caplog.text


def test_file_errors_name_the_file_and_never_the_content(tmp_path):
    store = FileTokenStore(tmp_path / "t.json", "x-main")
    store.path.write_text(f'{{"access_token": "{ACCESS}", "expires_at": "soon"}}')
    os.chmod(store.path, 0o600)
    with pytest.raises(StoreError) as info:
        store.load()
    assert str(store.path) in str(info.value) and ACCESS not in str(info.value)
    store.path.write_text(f"{ACCESS} not json")
    with pytest.raises(StoreError, match="not a JSON document") as info:
        store.load()
    assert ACCESS not in str(info.value)


def test_a_failed_write_leaves_the_old_document(tmp_path):
    store = FileTokenStore(tmp_path / "t.json", "x-main")
    store.save(tokens(1))
    # the private temporary file this thread would create cannot be: something is in its place
    blocker = tmp_path / f".t.json.{os.getpid()}.{threading.get_ident()}.tmp"
    blocker.mkdir()
    with pytest.raises(StoreError, match="cannot write file") as info:
        store.save(tokens(2))
    assert f"{ACCESS}-2" not in str(info.value)
    assert store.load() == tokens(1) and sorted(os.listdir(tmp_path)) == sorted([blocker.name, "t.json"])


def test_command_store_round_trips_through_the_operators_commands(tmp_path):
    where = tmp_path / "vault"
    where.mkdir()
    cfg = TokenStoreSettings(read=("sh", "-c", f'cat "{where}/$0" 2>/dev/null || true', "{channel}"),
                             write=("sh", "-c", f'umask 077; cat > "{where}/$0"', "{channel}"))
    store = open_store(cfg, "x-main")
    assert isinstance(store, CommandTokenStore) and store.load() is None
    store.save(tokens(3))
    assert store.load() == tokens(3) and (where / "x-main").is_file()


def test_command_failures_hide_what_the_command_echoed(tmp_path):
    store = CommandTokenStore(("sh", "-c", "exit 0"), ("sh", "-c", "cat >&2; exit 3"), "x-main")
    with pytest.raises(StoreError) as info:
        store.save(tokens(4))
    text = str(info.value)
    assert "exited 3" in text and f"{ACCESS}-4" not in text and f"{REFRESH}-4" not in text
    with pytest.raises(StoreError, match="not found"):
        CommandTokenStore(("/nonexistent/secret-tool",), ("true",), "x").load()
    with pytest.raises(StoreError, match="longer than"):
        CommandTokenStore(("sleep", "5"), ("true",), "x", timeout=0.2).load()


def test_store_settings_want_exactly_one_place():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="either file or read/write"):
        TokenStoreSettings(file="a.json", read=("cat",), write=("tee",))
    with pytest.raises(ValidationError, match="needs both read and write"):
        TokenStoreSettings(read=("cat",))
    with pytest.raises(ValidationError, match="give file"):
        TokenStoreSettings()


def test_token_set_shows_times_never_tokens():
    t = tokens(5)
    assert ACCESS not in repr(t) and REFRESH not in str(t) and "expires_at=1970-01-01T00:16:45Z" in repr(t)
    assert fingerprint(Secret(REFRESH)) != fingerprint(Secret(ACCESS)) and REFRESH not in fingerprint(Secret(REFRESH))
