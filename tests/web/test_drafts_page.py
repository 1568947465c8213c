"""Drafts on the page: the source alert is shown (escaped), the draft is editable, and one
button publishes it as the signed-in token."""

from __future__ import annotations

import json

from broadcaster.asgi import create_app
from broadcaster.ledger.drafts import DraftStore
from tests.cli.live import make_settings, memory_runtime
from tests.web.conftest import CHANNELS, XSS, Web

TOKEN = "am-web-token-1b2c"


def alert(status: str) -> bytes:
    return json.dumps({"version": "4", "groupKey": "{}:{alertname=\"ApiDown\"}", "status": status,
                       "commonLabels": {"alertname": "ApiDown", "team": XSS},
                       "commonAnnotations": {"summary": f"API unreachable {XSS}"},
                       "alerts": [{"status": status, "labels": {"alertname": "ApiDown"}, "annotations": {},
                                   "generatorURL": "javascript:alert(1)", "fingerprint": "f1"}]}).encode()


def make_web(tmp_path) -> Web:
    settings = make_settings(f"sqlite:///{tmp_path}/ledger.db", CHANNELS, routes={"incident": ["hook-a"]},
                             inbound={"receivers": {"prom": {"source": "alertmanager", "token": TOKEN}},
                                      "rules": [{"title": "{labels.alertname}", "body": "{annotations.summary}"}]})
    rt = memory_runtime(settings)
    return Web(create_app(settings, rt), rt)


def test_draft_on_the_page_edit_and_publish(tmp_path):
    web = make_web(tmp_path)
    c, csrf = web.signed_in()
    r = c.post("/api/v1/inbound/alertmanager/prom", content=alert("firing"),
               headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    draft_id = r.json()["draft"]
    html = c.get("/drafts").text
    assert draft_id in html and "ApiDown" in html and "API unreachable" in html
    assert XSS not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html

    # a stale form is refused; a saved edit shows; one click publishes
    assert c.post(f"/drafts/{draft_id}/publish", data={"csrf": "stale"}).status_code == 403
    r = c.post(f"/drafts/{draft_id}/edit", data={"csrf": csrf, "title": "API is down", "body": "Looking into it.",
                                                  "severity": "major", "resolve_body": "Fixed."},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    assert c.post(f"/drafts/{draft_id}/publish", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    d = DraftStore(web.runtime.ledger).get(draft_id)
    assert d.state == "published" and d.published_by == "ops"
    ann = web.runtime.ledger.get_announcement(d.announcement_id)
    assert (ann.title, ann.severity) == ("API is down", "major")
    # a second click (another tab) does not post twice
    again = c.post(f"/drafts/{draft_id}/publish", data={"csrf": csrf})
    assert again.status_code == 400 and len(web.runtime.ledger.list_announcements(limit=10)) == 1
    web.runtime.ledger.close()
