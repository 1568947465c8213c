"""Every shell recipe in README.md and docs/*.md runs as written against the demo.

The convention (documented in README.md, "Tests"): a fenced ```sh (or ```bash) block whose
opening fence directly follows a line ``<!-- recipe -->`` is a recipe. It assumes what a reader
has after the README's ``make run``: a checkout as the working directory, ``.venv/bin/broadcaster``,
and the demo stack (``broadcaster --config config/demo.yaml up``) on 127.0.0.1:8080 / 8099.
Other blocks (production installs, CI files, systemd) are illustrations and are not run.

The test builds exactly that: a scratch "checkout" (the repository's ``config/``, a
``.venv/bin/broadcaster`` that runs this source tree), starts the demo in a private network
namespace — so its fixed ports and its own private redis-server collide with nothing — and runs
each file's recipes in order in one ``bash -e -o pipefail`` (so a recipe can use what an earlier
one in the same file exported). Each file must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- recipe -->"
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_-]*)[ \t]*$")


def recipes(text: str, where: str = "") -> list[str]:
    """The recipe blocks of a Markdown text, in order. A marker not followed by a shell fence is
    an error (a recipe that silently stopped being run is what this test exists to prevent)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != MARKER:
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None or fence["lang"] not in ("sh", "bash"):
            raise ValueError(f"{where}:{i + 1}: {MARKER} must be followed directly by a ```sh or ```bash block")
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not lines[j].startswith("```"):
            body.append(lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{where}:{i + 2}: the recipe's code block is never closed")
        out.append("\n".join(body))
        i = j + 1
    return out


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_recipe_extraction_follows_the_convention():
    text = "intro\n<!-- recipe -->\n```sh\necho one\n```\n```sh\necho not a recipe\n```\n" \
           "<!-- recipe -->\n```bash\necho two\necho three\n```\n"
    assert recipes(text) == ["echo one", "echo two\necho three"]
    with pytest.raises(ValueError, match="must be followed directly"):
        recipes("<!-- recipe -->\n\n```sh\necho x\n```\n", "doc.md")
    with pytest.raises(ValueError, match="must be followed directly"):
        recipes("<!-- recipe -->\n```yaml\na: 1\n```\n", "doc.md")


def test_the_documents_have_recipes_and_every_marker_is_well_formed():
    found = {p.name: recipes(p.read_text(encoding="utf-8"), str(p)) for p in documents()}
    assert found["README.md"], "the README's recipes are the first thing a newcomer runs"
    assert found["ci.md"], "docs/ci.md's token and post recipes"
    assert found["operations.md"], "the sandbox fault recipe"


def _namespace_runner() -> list[str]:
    """A command prefix that runs in a fresh network namespace (root, or an unprivileged user
    namespace where the kernel allows one)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    for prefix in ([unshare, "--net", "--fork", "--kill-child"], [unshare, "-rn", "--fork", "--kill-child"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return prefix
    return []


DRIVER = r"""
set -u
ip link set lo up 2>/dev/null || true
.venv/bin/broadcaster --config config/demo.yaml up > up.log 2>&1 &
UP=$!
for _ in $(seq 1 300); do
  grep -q '^broadcaster is up' up.log && break
  kill -0 "$UP" 2>/dev/null || { echo "UP-EXITED"; cat up.log; exit 97; }
  sleep 0.5
done
grep -q '^broadcaster is up' up.log || { echo "UP-TIMEOUT"; cat up.log; exit 98; }
for script in recipes/*.sh; do
  name=$(basename "$script" .sh)
  ( bash -e -o pipefail "$script" > "results/$name.out" 2>&1; echo $? > "results/$name.rc" )
done
curl -fsS http://127.0.0.1:8099/_sandbox/counts > results/sandbox-counts.json || true
curl -fsS 'http://127.0.0.1:8099/_sandbox/posts?provider=mastodon' > results/mastodon-posts.json || true
curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:8099/status/verify.html > results/verify-page.code || true
kill -INT "$UP"
wait "$UP"
echo "UP-EXIT $?"
"""


def test_every_recipe_runs_against_the_demo(tmp_path):
    runner = _namespace_runner()
    if not runner:
        unavailable("a private network namespace (unshare) for the demo stack")
    if shutil.which("redis-server") is None:
        unavailable("redis-server (the demo starts a private one)")
    work = tmp_path / "checkout"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / "config").symlink_to(ROOT / "config", target_is_directory=True)
    wrapper = work / ".venv" / "bin" / "broadcaster"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m broadcaster \"$@\"\n")
    wrapper.chmod(0o755)
    (work / "recipes").mkdir()
    (work / "results").mkdir()
    names = []
    for i, doc in enumerate(documents()):
        blocks = recipes(doc.read_text(encoding="utf-8"), str(doc))
        if not blocks:
            continue
        name = f"{i:02d}-{doc.stem}"
        names.append((name, doc))
        script = "".join(f"echo '== {doc.name} recipe {n}' >&2\n{block}\n" for n, block in enumerate(blocks, 1))
        (work / "recipes" / f"{name}.sh").write_text(script)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BROADCASTER_") and k not in ("REDIS_URL", "NO_COLOR")}
    env.update(PYTHONPATH=str(ROOT), PATH=f"{work / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
               BROADCASTER_LOG_FORMAT="text")
    done = subprocess.run([*runner, "bash", "-c", DRIVER], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0 and "UP-EXIT 0" in done.stdout, \
        f"the demo did not run cleanly:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    failures = []
    for name, doc in names:
        rc_file = work / "results" / f"{name}.rc"
        rc = rc_file.read_text().strip() if rc_file.exists() else "never ran"
        if rc != "0":
            out = (work / "results" / f"{name}.out").read_text(errors="replace")[-3000:]
            failures.append(f"{doc.relative_to(ROOT)}: exit {rc}\n{out}")
    assert not failures, "\n\n".join(failures) + "\n\nup.log:\n" + (work / "up.log").read_text()[-3000:]
    # what a newcomer sees after them: no provider shows a repeat (README's recipes once posted
    # the same words twice), and the posts' Verify link opens (the sandbox serves the status site)
    counts = json.loads((work / "results" / "sandbox-counts.json").read_text() or "{}")
    assert counts and not {p: c for p, c in counts.items() if c.get("duplicate_texts")}, counts
    assert (work / "results" / "verify-page.code").read_text() == "200"
    toots = json.loads((work / "results" / "mastodon-posts.json").read_text() or "[]")
    assert any("Verify: http://127.0.0.1:8099/status/verify.html?id=" in p.get("text", "") for p in toots), toots[-3:]
