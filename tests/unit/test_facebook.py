"""Facebook Page adapter against a fake Graph API: requests, comments, error-code table."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from broadcaster.channels.facebook import Facebook, FacebookSettings, usage_wait
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, Message, Post, Receipt, Update

TOKEN = "EAAB-page-token-secret"
GRAPH = "https://graph.test/v19.0"
PAGE = "1234"


class FakeGraph:
    def __init__(self, reply: httpx.Response | None = None):
        self.requests: list[httpx.Request] = []
        self.reply = reply

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.reply is not None:
            return self.reply
        path = request.url.path.removeprefix("/v19.0/")
        if request.method == "POST" and path == f"{PAGE}/feed":
            return httpx.Response(200, json={"id": f"{PAGE}_555"})
        if request.method == "POST" and path.endswith("/comments"):
            return httpx.Response(200, json={"id": "555_777"})
        if request.method == "GET":
            return httpx.Response(200, json={"id": PAGE, "name": "Example Status"})
        if request.method == "DELETE":
            return httpx.Response(200, json={"success": True})
        return httpx.Response(404)


def make(fake: FakeGraph) -> Facebook:
    s = FacebookSettings(graph_url=GRAPH, page_id=PAGE, access_token=TOKEN)
    return Facebook("fb", s, http=httpx.Client(transport=httpx.MockTransport(fake)))


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def post(text: str, url: str | None = None, reply_to: Receipt | None = None) -> Post:
    return Post(channel="fb", kind="incident", title="t", text=text, parts=(text,), url=url, reply_to=reply_to)


def test_page_post_is_the_exact_form_request():
    fake = FakeGraph()
    receipt = make(fake).send(post("API down", url="https://status.example.com/1"), key="k")
    (req,) = fake.requests
    assert req.method == "POST" and str(req.url) == f"{GRAPH}/{PAGE}/feed"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(req) == {"message": "API down", "link": "https://status.example.com/1", "access_token": TOKEN}
    assert TOKEN not in str(req.url)
    assert receipt == Receipt(remote_id=f"{PAGE}_555", url=f"https://www.facebook.com/{PAGE}/posts/555", extra={})


def test_update_is_a_comment_on_the_original_post():
    fake = FakeGraph()
    ch = make(fake)
    receipt = ch.send(post("[Resolved] ok", reply_to=Receipt(remote_id=f"{PAGE}_555")), key="u")
    assert str(fake.requests[0].url) == f"{GRAPH}/{PAGE}_555/comments"
    assert form(fake.requests[0]) == {"message": "[Resolved] ok", "access_token": TOKEN}
    assert receipt.remote_id == "555_777" and receipt.url == f"https://www.facebook.com/{PAGE}/posts/555?comment_id=777"
    # a second update still comments on the post, not on the comment
    ch.send(post("[Resolved] really", reply_to=receipt), key="u2")
    assert str(fake.requests[1].url) == f"{GRAPH}/{PAGE}_555/comments"


def graph_error(code: int, status: int = 400, **extra) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "x", **extra}})


@pytest.mark.parametrize(
    "response, error",
    [
        (graph_error(1, 500), TransientError),
        (graph_error(2, 500), TransientError),
        (graph_error(190, 400, error_subcode=463), AuthError),
        (graph_error(102), AuthError),
        (graph_error(10, 403), PermanentError),
        (graph_error(200, 403), PermanentError),
        (graph_error(299, 403), PermanentError),
        (graph_error(368), PermanentError),
        (graph_error(100), PermanentError),
        (graph_error(100, is_transient=True), TransientError),
        (graph_error(2, 500, is_transient=False), PermanentError),
        (graph_error(4), RateLimited),
        (graph_error(17), RateLimited),
        (graph_error(32), RateLimited),
        (graph_error(613), RateLimited),
        (graph_error(80001), RateLimited),
        (httpx.Response(502, text="<html>bad gateway</html>"), TransientError),
        (httpx.Response(400, text="not json"), PermanentError),
        (httpx.Response(200, json={}), AmbiguousDelivery),
    ],
)
def test_error_table(response, error):
    with pytest.raises(error) as info:
        make(FakeGraph(response)).send(post("x"), key="k")
    assert type(info.value) is error
    assert info.value.response.startswith(f"HTTP {response.status_code}")


def test_duplicate_post_means_already_posted():
    receipt = make(FakeGraph(graph_error(506))).send(post("x"), key="k")
    assert receipt == Receipt(remote_id=None, url=None, extra={"duplicate": True})


def test_throttle_wait_comes_from_the_usage_header_in_minutes():
    usage = {PAGE: [{"type": "pages", "call_count": 100, "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": 7}]}
    reply = httpx.Response(400, json={"error": {"code": 80001, "message": "too many"}}, headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
    with pytest.raises(RateLimited) as info:
        make(FakeGraph(reply)).send(post("x"), key="k")
    assert info.value.retry_after == 420


def test_usage_wait_without_an_estimate():
    assert usage_wait(httpx.Headers({"X-App-Usage": json.dumps({"call_count": 100, "total_time": 5})})) is None
    assert usage_wait(httpx.Headers({"X-App-Usage": "garbage"})) is None
    assert usage_wait(httpx.Headers({"X-App-Usage": json.dumps({"estimated_time_to_regain_access": 2})})) == 120


def test_render_is_one_part_and_refuses_absurd_length():
    ch = make(FakeGraph())
    body = "word " * 2000  # 10 kB: one post on Facebook
    p = ch.render(Message(Announcement(id="a", kind="notice", title="T", body=body, url="https://e.com/x")))
    assert len(p.parts) == 1 and p.url == "https://e.com/x"
    with pytest.raises(ContentRejected):
        ch.render(Message(Announcement(id="a", kind="notice", title="T", body="x" * 70_000)))
    upd = Message(Announcement(id="a", kind="notice", title="T"), update=Update(id="u", announcement_id="a", status="resolved", body="ok"))
    assert ch.render(upd).parts == ("[Resolved] T\n\nok",)


def test_check_retract_and_secret():
    fake = FakeGraph()
    ch = make(fake)
    assert ch.check() == f"page Example Status ({PAGE})"
    ch.retract(Receipt(remote_id=f"{PAGE}_555"))
    get, delete = fake.requests
    assert str(get.url) == f"{GRAPH}/{PAGE}?fields=id%2Cname"
    assert str(delete.url) == f"{GRAPH}/{PAGE}_555" and delete.method == "DELETE"
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" and TOKEN not in str(r.url) for r in (get, delete))
    assert TOKEN not in repr(ch) + repr(ch.settings)
    with pytest.raises(DeliveryError) as info:
        make(FakeGraph(graph_error(190))).send(post("x"), key="k")
    assert TOKEN not in str(info.value) + (info.value.response or "")
