"""What readers see on every channel kind: a link shows its real target, emphasis never lands
inside a URL, and chat control sequences in author text stay text (issue 13, item 12)."""

from __future__ import annotations

import json

import httpx
import pytest

from broadcaster import render
from broadcaster.channels import _chat, _statussite, registry
from broadcaster.channels.cachet import incident_json
from broadcaster.channels.registry import channel_class
from broadcaster.models import Announcement, Message

DECEPTIVE = "Log in at [https://bank.example](https://evil.example/login) now."
URLS = "See https://x.example/a_b_c and https://x.example/_d_ and https://x.example/*e*/f and https://x.example/__init__"
WHOLE_URLS = ("https://x.example/a_b_c", "https://x.example/_d_", "https://x.example/*e*/f", "https://x.example/__init__")

#: every built-in channel kind, configured as in the demo (no I/O happens while rendering)
SETTINGS = {
    "mastodon": {"base_url": "https://m.example", "access_token": "t", "read_instance_limits": False},
    "bluesky": {"handle": "status.example.com", "app_password": "p"},
    "x": {"access_token": "t"},
    "facebook": {"page_id": "1", "access_token": "t"},
    "linkedin": {"organization": "2414183", "access_token": "t"},
    "email": {"transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 25, "security": "none"},
              "from_address": "status@example.com", "recipients": ["a@example.com"]},
    "webhook-generic": {"url": "https://hooks.example/x"},
    "webhook-slack": {"url": "https://hooks.example/slack", "format": "slack"},
    "webhook-discord": {"url": "https://hooks.example/discord", "format": "discord"},
    "webhook-teams": {"url": "https://hooks.example/teams", "format": "teams"},
    "webhook-workflow": {"url": "https://flows.example/workflows/1/triggers/manual/paths/invoke?sig=s",
                         "format": "teams_workflow"},
    "statuspage": {"output_dir": "/nonexistent/site"},
    "atlassian_statuspage": {"page_id": "p", "api_key": "k"},
    "cachet": {"base_url": "https://cachet.example", "token": "t"},
    "apprise": {"urls": ["json://127.0.0.1/"]},
    "telegram": {"bot_token": "1:abc", "chat_id": "@status"},
    "google_chat": {"url": "https://chat.example/v1/spaces/S/messages?key=k&token=t"},
    "mattermost": {"url": "https://mattermost.example/hooks/abc"},
    "subscriber_webhooks": {"lists": ["ops"]},
    "twilio_sms": {"account_sid": "AC0123456789", "auth_token": "t", "from_number": "+15550100000",
                   "recipients": ["+15550100001"], "max_segments": 10},
    "matrix": {"homeserver": "https://matrix.example", "access_token": "t", "room_id": "!r:matrix.example"},
}


def test_the_table_covers_every_channel_kind():
    assert {label.split("-")[0] for label in SETTINGS} == set(registry.kinds())


def test_matrix_events_notify_nobody_named_in_the_text():
    from broadcaster.channels.matrix import event_body

    assert event_body("@room look", None, msgtype="m.notice", root=None, reply_to=None)["m.mentions"] == {}


def channel(label: str, **extra):
    kind = label.split("-")[0]
    cls = channel_class(kind)
    if cls is None:
        pytest.skip(f"{kind} is not available here")
    settings = cls.Settings(kind=kind, **{**SETTINGS[label], **extra})
    return cls(label, settings, http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))))


def message(body: str, title: str = "Heads up") -> Message:
    return Message(Announcement(id="a1", kind="notice", title=title, body=body))


def everything_shown(post) -> str:
    """All text a reader of ``post`` can see, in the provider's own payload where it has one."""
    shown = [post.title, post.text, *post.parts, post.html or "", json.dumps(post.meta.get("body") or "")]
    return "\n".join(shown)


@pytest.mark.parametrize("label", sorted(SETTINGS))
def test_a_link_labelled_with_another_url_shows_its_real_target(label):
    post = channel(label).render(message(DECEPTIVE))
    shown = everything_shown(post)
    assert "evil.example" in shown
    assert "bank.example" not in shown
    if label == "cachet":  # Cachet renders the Markdown itself: the label must be the target too
        sent = incident_json(post, "k", 3, True, False)["message"]
        assert "[https://evil.example/login](https://evil.example/login)" in sent


@pytest.mark.parametrize("label", sorted(SETTINGS))
def test_emphasis_is_never_inserted_inside_urls(label):
    post = channel(label).render(message(URLS))
    for url in WHOLE_URLS:
        assert url in post.text or url in post.meta.get("body", ""), (label, post.text)
        assert f'<a href="{url}">{url}</a>' in (post.html or ""), (label, post.html)
    assert "<em>" not in (post.html or "") and "<strong>" not in (post.html or "")


@pytest.mark.parametrize(
    "md, text, html",
    [
        (DECEPTIVE, "Log in at https://evil.example/login now.",
         '<p>Log in at <a href="https://evil.example/login">https://evil.example/login</a> now.</p>'),
        ("[bank.example/help](https://bank.example/help)", "bank.example/help (https://bank.example/help)",
         '<p><a href="https://bank.example/help">bank.example/help</a></p>'),
        ("[the notes](https://docs.bank.example/n)", "the notes (https://docs.bank.example/n)",
         '<p><a href="https://docs.bank.example/n">the notes</a></p>'),
        ("[www.bank.example](https://bank.example.evil.example/)", "https://bank.example.evil.example/",
         '<p><a href="https://bank.example.evil.example/">https://bank.example.evil.example/</a></p>'),
        ("**Read [the *notes*](https://x.example/__init__)** now", "Read the notes (https://x.example/__init__) now",
         '<p><strong>Read <a href="https://x.example/__init__">the <em>notes</em></a></strong> now</p>'),
        ("[*see* https://x.example/_a_](https://x.example/_a_)", "see https://x.example/_a_ (https://x.example/_a_)",
         '<p><a href="https://x.example/_a_"><em>see</em> https://x.example/_a_</a></p>'),
        ("x __y__ https://a.example/__init__.py", "x y https://a.example/__init__.py",
         '<p>x <strong>y</strong> <a href="https://a.example/__init__.py">https://a.example/__init__.py</a></p>'),
        ("\ue0000\ue001 placeholders typed by the author stay text",
         "\ufffd0\ufffd placeholders typed by the author stay text",
         "<p>\ufffd0\ufffd placeholders typed by the author stay text</p>"),
    ],
)
def test_markdown_table(md, text, html):
    assert render.markdown_to_text(md) == text
    assert render.markdown_to_html(md) == html


CONTROL = "Ping <!channel> <!here> <@U024BE7LH> and <https://evil.example|https://bank.example> & co"


def test_slack_escapes_control_sequences_in_author_text():
    ch = channel("webhook-slack")
    post = ch.render(message(CONTROL, title="<!everyone> title"))
    text = ch.payload(post, "k")["text"]
    for seq in ("<!channel>", "<!here>", "<@U024BE7LH>", "<https://evil.example|", "<!everyone>"):
        assert seq not in text
    assert "&lt;!channel&gt;" in text and "&amp; co" in text and "&lt;!everyone&gt; title" in text


def test_slack_lets_explicit_mentions_through_only_when_the_channel_allows_them():
    ch = channel("webhook-slack", mentions=True)
    text = ch.payload(ch.render(message(CONTROL)), "k")["text"]
    assert "<!channel>" in text and "<!here>" in text and "<@U024BE7LH>" in text
    assert "<https://evil.example|" not in text  # a disguised link is never a mention
    assert "&amp; co" in text


def test_discord_pings_nobody_and_shows_masked_links_as_text():
    ch = channel("webhook-discord")
    body = ch.payload(ch.render(message("@everyone look: [https://bank.example](<https://evil.example>)")), "k")
    assert body["allowed_mentions"] == {"parse": []}
    assert "](" not in body["content"]
    allowed = channel("webhook-discord", mentions=True)
    assert allowed.payload(allowed.render(message("@here")), "k")["allowed_mentions"]["parse"] == [
        "everyone", "users", "roles"]


@pytest.mark.parametrize("label", ["webhook-teams", "webhook-workflow"])
def test_teams_card_shows_masked_links_as_text(label):
    ch = channel(label)
    card = ch.payload(ch.render(message("see [https://bank.example]( https://evil.example)", title="[t](x)")), "k")
    texts = [b["text"] for b in card["attachments"][0]["content"]["body"]]
    assert all("](" not in t for t in texts)


@pytest.mark.parametrize("text, escaped", [
    ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
    ("<!subteam^S123|@ops>", "&lt;!subteam^S123|@ops&gt;"),
])
def test_slack_escape_table(text, escaped):
    assert _chat.slack_text(text, mentions=False) == escaped


def test_status_site_pages_show_the_real_target():
    post = _statussite.status_post("site", message(DECEPTIVE))
    assert "bank.example" not in post.meta["body"] and "bank.example" not in post.html
