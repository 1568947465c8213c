"""One summary word per announcement, the same in the API, on the web page and in the CLI.

All three call :func:`broadcaster.models.overall`; this reads what each one actually shows for
the same announcement (the API's JSON, the page's badges, the CLI's ``status`` and ``list``), so
a fourth copy of the rule — or a view that stops using it — fails here. ``['scheduled']`` once
read ``scheduled`` in the API and ``in_progress`` in the CLI.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner

from broadcaster.cli import main
from tests.cli.live import settle


def cli(api, *args):
    return CliRunner().invoke(main, list(args), env=api.env(), catch_exceptions=False)


def posted(api, *extra: str) -> tuple[str, list[str]]:
    res = cli(api, "post", "--kind", "notice", "--title", "One word", "--quiet", *extra)
    assert res.exit_code == 0, res.output
    ann_id = res.stdout.strip()
    return ann_id, [d.id for d in api.runtime.ledger.deliveries_for([ann_id])[ann_id]]


def web_words(api, ann_id: str) -> tuple[str, str]:
    """The badge on the announcements list and on the announcement's own page."""
    with httpx.Client(base_url=api.url) as web:
        presign = re.search(r'name="csrf" value="([^"]*)"', web.get("/signin").text)
        assert presign
        signed = web.post("/signin", data={"csrf": presign.group(1), "token": api.token})
        assert signed.status_code == 303 and signed.headers["location"].endswith("/"), signed.text[:300]
        row = re.search(rf'href="/announcements/{ann_id}">.*?<span class="badge (\w+)">(\w+)</span>',
                        web.get("/").text, re.S)
        page = re.search(r'id="overall" class="badge (\w+)">(\w+)<', web.get(f"/announcements/{ann_id}").text)
    assert row and page and row.group(1) == row.group(2) and page.group(1) == page.group(2)
    return row.group(2), page.group(2)


def cli_words(api, ann_id: str) -> tuple[str, str]:
    """The CLI's own ``overall:`` line (computed from the deliveries) and its list's DELIVERY column."""
    status = cli(api, "status", ann_id)
    line = re.search(r"^overall: (\w+)", status.stdout, re.M)
    listing = cli(api, "list")
    row = next(r.split() for r in listing.stdout.splitlines() if r.startswith(ann_id))
    assert line, status.stdout
    return line.group(1), row[2]  # ID KIND (STATUS: empty for a notice) DELIVERY CREATED TITLE


def api_words(api, ann_id: str) -> tuple[str, str]:
    auth = {"Authorization": f"Bearer {api.token}"}
    one = httpx.get(f"{api.url}/api/v1/announcements/{ann_id}", headers=auth).json()
    page = httpx.get(f"{api.url}/api/v1/announcements", headers=auth).json()
    return one["overall"], next(a["overall"] for a in page["items"] if a["id"] == ann_id)


# deliveries go to hook-a and hook-b (in that order); None leaves a delivery where the API put it
CASES = {
    "scheduled": (["--publish-at", "later"], [None, None]),
    "in_progress": ([], [None, "delivered"]),
    "attention": ([], ["delivered", "failed"]),
    "delivered": ([], ["delivered", "delivered"]),
}


@pytest.mark.parametrize("word", list(CASES))
def test_api_page_and_cli_give_one_word(api, word):
    extra, outcomes = CASES[word]
    if extra[-1:] == ["later"]:
        extra = [*extra[:-1], datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()]
    ann_id, deliveries = posted(api, *extra)
    for delivery_id, outcome in zip(sorted(deliveries), outcomes, strict=True):
        if outcome:
            kw = {"url": "https://example.test/p"} if outcome == "delivered" else {"error": "refused"}
            settle(api.runtime, delivery_id, outcome, **kw)
    states = sorted(str(d.state) for d in api.runtime.ledger.deliveries_for([ann_id])[ann_id])
    if word == "scheduled":
        assert states == ["scheduled", "scheduled"]
    assert api_words(api, ann_id) == (word, word), states
    assert web_words(api, ann_id) == (word, word), states
    assert cli_words(api, ann_id) == (word, word), states
