"""The YAML examples in docs/configuration.md (and README.md, docs/token-refresh.md) must keep loading.

Every ```yaml block is validated with ``broadcaster.config.load_settings``. The first line of a
block may carry a marker comment:

* ``# fragment: KEY`` — the block is the value of one top-level key (e.g. a few entries of
  ``channels:``); the test loads ``{KEY: <block>}``.
* ``# expect-errors`` — the block is a deliberately broken file. It must be refused, and the
  ``config error: ...`` lines of the next fenced block (the pasted ``broadcaster check`` output)
  must be exactly the problems ``load_settings`` reports.

Anything else is a complete configuration file. Environment: ``env`` starts empty (``{}``); each
``${VAR}`` a valid example uses without a default is provided by the test (a URL for names
ending in ``_URL``, else a plain string). Broken examples get ``env={}``.

Also checked, so the reference stays complete: every top-level key and every field of every
channel kind is mentioned in the document.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from broadcaster.channels import registry
from broadcaster.config import ChannelSettings, Settings, load_settings
from broadcaster.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"
SOURCES = [DOC, ROOT / "README.md", ROOT / "docs" / "token-refresh.md"]

FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"^#\s*(fragment:\s*(?P<key>[a-z_]+)|(?P<errors>expect-errors))\s*$")
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """``(language, text, line number)`` of every fenced block, in document order."""
    text = path.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def examples() -> list:
    out = []
    for path in SOURCES:
        if not path.is_file():
            continue
        blocks = fenced_blocks(path)
        for i, (lang, body, line) in enumerate(blocks):
            if lang != "yaml":
                continue
            following = blocks[i + 1][1] if i + 1 < len(blocks) else ""
            out.append(pytest.param(body, following, id=f"{path.name}:{line}"))
    return out


def env_for(body: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, default in VAR.findall(body):
        if default:  # ${VAR:-default}: the example must work without the variable
            continue
        env[name] = f"https://example.test/{name.lower()}" if name.endswith("_URL") else f"test-value-{name.lower()}"
    return env


def parse(body: str):
    first = body.lstrip().splitlines()[0] if body.strip() else ""
    marker = MARKER.match(first)
    data = yaml.safe_load(body)
    if marker and marker.group("key"):
        return {marker.group("key"): data}, False
    return data, bool(marker and marker.group("errors"))


ALL = examples()


def test_the_document_has_examples():
    assert DOC.is_file()
    assert len([p for p in ALL if p.id.startswith("configuration.md")]) >= 15


@pytest.mark.parametrize("body,following", ALL)
def test_example_loads(body: str, following: str):
    data, expect_errors = parse(body)
    if not expect_errors:
        load_settings(data, env=env_for(body))
        return
    with pytest.raises(ConfigError) as info:
        load_settings(data, env={})
    shown = [line.removeprefix("config error: ") for line in following.splitlines() if line.startswith("config error: ")]
    assert shown, "an expect-errors block must be followed by the pasted `config error:` output"
    assert info.value.lines() == shown


def test_every_channel_kind_has_a_loading_example():
    kinds = set()
    for param in ALL:
        body, _ = param.values
        data, expect_errors = parse(body)
        if expect_errors:
            continue
        kinds |= {ch.kind for ch in load_settings(data, env=env_for(body)).channels.values()}
    assert kinds == set(registry.kinds())


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^##+ |\Z)", text, re.M | re.S)
    assert m, f"docs/configuration.md has no '### {heading}' section"
    return m.group(1)


def test_every_key_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for key in Settings.model_fields:
        if key != "source":
            assert f"`{key}`" in text, f"top-level key {key!r} is not documented"
    common = set(ChannelSettings.model_fields)
    for kind in registry.kinds():
        section = _section(text, kind)
        fields = set(registry.channel_class(kind).Settings.model_fields) - common
        missing = sorted(f for f in fields if f"`{f}`" not in section)
        assert not missing, f"channel kind {kind!r}: fields not documented: {missing}"
