"""LinkedIn adapter against a fake Posts API: exact request shape, little-text escaping, the
length rule, the duplicate signal and the error classification table."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster.channels import channel_class
from broadcaster.channels.linkedin import (
    LinkedIn,
    LinkedInSettings,
    escape_little,
    post_body,
    post_path,
    unescape_little,
)
from broadcaster.config import load_settings
from broadcaster.errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    PermanentError,
    RateLimited,
    TransientError,
)
from broadcaster.models import Announcement, Message, Post, Receipt, Update

TOKEN = "li-token-s3cr3t"
BASE = "https://api.linkedin.test"
NOW = 1_700_000_000.0
URN = "urn:li:share:7100000000000000001"


class FakeLinkedIn:
    def __init__(self, replies: list[httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.replies = list(replies or [])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST" and request.url.path == "/rest/posts":
            if self.replies:
                return self.replies.pop(0)
            return httpx.Response(201, headers={"x-restli-id": URN})
        if request.method == "GET" and request.url.path.startswith("/rest/organizations/"):
            return httpx.Response(200, json={"id": 123, "localizedName": "Example Inc", "vanityName": "example"})
        if request.method == "DELETE":
            return self.replies.pop(0) if self.replies else httpx.Response(204)
        return httpx.Response(404)


def make(fake: FakeLinkedIn, **kw) -> LinkedIn:
    s = LinkedInSettings(base_url=BASE, organization=kw.pop("organization", "123"), access_token=TOKEN, **kw)
    return LinkedIn("linkedin-page", s, http=httpx.Client(transport=httpx.MockTransport(fake)), clock=lambda: NOW)


def post(text: str) -> Post:
    return Post(channel="linkedin-page", kind="incident", title="t", text=text, parts=(text,))


def message(title="API down", body="We are *investigating*.", update: Update | None = None, **kw) -> Message:
    ann = Announcement(id="ann_1", kind="incident", title=title, body=body, **kw)
    return Message(announcement=ann, update=update)


# ---------------------------------------------------------------- request shape


def test_send_makes_the_exact_request():
    fake = FakeLinkedIn()
    receipt = make(fake, api_version="202601").send(post("API down (EU) #ops"), key="k")
    (req,) = fake.requests
    assert req.method == "POST" and str(req.url) == f"{BASE}/rest/posts"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["LinkedIn-Version"] == "202601"
    assert req.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert req.headers["Content-Type"] == "application/json"
    assert json.loads(req.content) == {
        "author": "urn:li:organization:123",
        "commentary": "API down \\(EU\\) \\#ops",
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    assert receipt == Receipt(remote_id=URN, url=f"https://www.linkedin.com/feed/update/{URN}/")


def test_organization_may_be_given_as_urn():
    assert LinkedInSettings(organization="urn:li:organization:42", access_token="t").author == "urn:li:organization:42"
    with pytest.raises(ValueError):
        LinkedInSettings(organization="acme", access_token="t")
    with pytest.raises(ValueError):
        LinkedInSettings(organization="1", access_token="t", api_version="2026-01")


@pytest.mark.parametrize("char", list("|{}@[]()<>#\\*_~"))
def test_every_reserved_character_is_escaped(char):
    assert escape_little(f"a{char}b") == f"a\\{char}b"
    assert unescape_little(escape_little(f"a{char}b")) == f"a{char}b"


def test_escaping_leaves_ordinary_text_and_urls_readable():
    text = "Résumé: 50% off! https://example.com/x?y=1 — ok 👍"
    assert escape_little(text) == text
    assert post_body("urn:li:organization:1", "a_b")["commentary"] == "a\\_b"


def test_retract_deletes_the_url_encoded_urn():
    fake = FakeLinkedIn()
    make(fake).retract(Receipt(remote_id=URN))
    (req,) = fake.requests
    assert req.method == "DELETE"
    assert req.url.raw_path.decode() == "/rest/posts/urn%3Ali%3Ashare%3A7100000000000000001"
    assert req.headers["LinkedIn-Version"] and req.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert post_path("urn:li:ugcPost:9") == "/rest/posts/urn%3Ali%3AugcPost%3A9"


@pytest.mark.parametrize("status", [404, 410])
def test_retract_of_a_post_already_gone_is_fine(status):
    make(FakeLinkedIn([httpx.Response(status)])).retract(Receipt(remote_id=URN))


def test_retract_refused_is_an_error():
    with pytest.raises(AuthError):
        make(FakeLinkedIn([httpx.Response(403, json={"message": "no"})])).retract(Receipt(remote_id=URN))
    with pytest.raises(PermanentError):
        make(FakeLinkedIn()).retract(Receipt(remote_id=None))


def test_check_reads_the_organization():
    fake = FakeLinkedIn()
    assert "Example Inc" in make(fake).check()
    assert fake.requests[0].url.path == "/rest/organizations/123"


def test_contract_metadata_and_registry():
    assert channel_class("linkedin") is LinkedIn
    assert LinkedIn.public and not LinkedIn.idempotent and not LinkedIn.can_lookup and LinkedIn.can_retract


def test_config_validates_through_the_registry():
    s = load_settings({"channels": {"li": {"kind": "linkedin", "organization": "5", "access_token": "${LI}"}}},
                      env={"LI": "li-s3cr3t-value"})
    assert s.channels["li"].access_token.reveal() == "li-s3cr3t-value"
    assert "li-s3cr3t-value" not in repr(s.channels["li"])


# ---------------------------------------------------------------- rendering and length


def test_render_is_plain_text_in_one_piece():
    p = make(FakeLinkedIn()).render(message(url="https://status.example.com"))
    assert p.parts == (p.text,)
    assert p.text == "API down\n\nWe are investigating.\n\nhttps://status.example.com"


def test_update_gets_its_status_prefix():
    upd = Update(id="upd_1", announcement_id="ann_1", status="resolved", body="Fixed.")
    assert make(FakeLinkedIn()).render(message(update=upd)).text.startswith("[Resolved] API down")


def test_too_long_is_truncated_to_the_escaped_limit():
    ch = make(FakeLinkedIn())
    p = ch.render(message(body="word_ " * 800))  # 6 chars, 7 escaped
    (text,) = p.parts
    assert text.endswith("…") and len(escape_little(text)) <= 3000


def test_too_long_is_refused_when_policy_says_reject():
    ch = make(FakeLinkedIn())
    ch.on_too_long = "reject"
    with pytest.raises(ContentRejected):
        ch.render(message(body="x " * 2000))


def test_escaping_counts_against_the_limit():
    ch = make(FakeLinkedIn(), max_characters=100)
    assert ch.count("(" * 60) == 120
    (text,) = ch.render(message(title="t", body="(a) " * 40)).parts
    assert ch.count(text) <= 100


# ---------------------------------------------------------------- outcomes


def test_duplicate_refusal_means_already_posted():
    dup = httpx.Response(422, json={"message": f"Content is a duplicate of {URN}", "status": 422})
    receipt = make(FakeLinkedIn([dup])).send(post("same"), key="k")
    assert receipt.remote_id == URN and receipt.extra["duplicate"] is True


def test_created_without_urn_is_ambiguous():
    with pytest.raises(AmbiguousDelivery):
        make(FakeLinkedIn([httpx.Response(201)])).send(post("x"), key="k")


def test_urn_in_a_json_body_is_accepted():
    receipt = make(FakeLinkedIn([httpx.Response(201, json={"id": "urn:li:ugcPost:77"})])).send(post("x"), key="k")
    assert receipt.remote_id == "urn:li:ugcPost:77"


ERRORS = [
    (httpx.Response(429, headers={"Retry-After": "30"}), RateLimited, 30.0),
    (httpx.Response(429), RateLimited, None),
    (httpx.Response(401, json={"message": "Invalid access token", "serviceErrorCode": 65600}), AuthError, None),
    (httpx.Response(403, json={"message": "Not enough permissions"}), AuthError, None),
    (httpx.Response(422, json={"message": "ERROR :: /commentary :: length exceeds 3000"}), ContentRejected, None),
    (httpx.Response(400, json={"message": "/commentary :: invalid"}), ContentRejected, None),
    (httpx.Response(400, json={"message": "Invalid author"}), PermanentError, None),
    (httpx.Response(426, json={"message": "Requested version 202001 is not active"}), PermanentError, None),
    (httpx.Response(500, text="oops"), TransientError, None),
    (httpx.Response(502), TransientError, None),
    (httpx.Response(503), TransientError, None),
    (httpx.Response(504), TransientError, None),
    (httpx.Response(302, headers={"Location": "/elsewhere"}), PermanentError, None),
]


@pytest.mark.parametrize("reply,error,wait", ERRORS, ids=[f"{r.status_code}-{e.__name__}" for r, e, _ in ERRORS])
def test_error_classification(reply, error, wait):
    with pytest.raises(error) as info:
        make(FakeLinkedIn([reply])).send(post("x"), key="k")
    assert type(info.value) is error or (error is PermanentError and isinstance(info.value, PermanentError))
    if error is RateLimited:
        assert info.value.retry_after == wait
    if error is ContentRejected or error is AuthError:
        assert isinstance(info.value, PermanentError)
    assert TOKEN not in str(info.value)


def test_transport_failures_map_to_our_errors():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("no", request=request)

    s = LinkedInSettings(base_url=BASE, organization="1", access_token=TOKEN)
    with pytest.raises(AmbiguousDelivery):
        LinkedIn("li", s, http=httpx.Client(transport=httpx.MockTransport(timeout))).send(post("x"), key="k")
    with pytest.raises(TransientError) as info:
        LinkedIn("li", s, http=httpx.Client(transport=httpx.MockTransport(refused))).send(post("x"), key="k")
    assert not isinstance(info.value, AmbiguousDelivery)
