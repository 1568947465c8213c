"""The first post of a maintenance announcement states its window on every channel kind, within
that channel's length rule, and a signature check accepts it (issue 13, item 14)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broadcaster import lifecycle, render
from broadcaster.channels import _statussite
from broadcaster.channels.cachet import incident_json
from broadcaster.models import Announcement, Message, Update, Window
from broadcaster.signing import textmatch
from broadcaster.signing.canonical import announcement_document
from tests.unit.test_render_safety import SETTINGS, channel

START = datetime(2026, 11, 30, 4, 30, tzinfo=UTC).timestamp()
END = datetime(2026, 11, 30, 6, 0, tzinfo=UTC).timestamp()
SHOWN = "30 Nov 2026, 04:30\u201306:00 UTC"
LONG_BODY = " ".join(["The database moves to new hardware; writes pause for a few minutes."] * 12)


def maintenance(body: str = "Writes pause briefly.", start: float = START, end: float = END) -> Announcement:
    return Announcement(id="ann_w", kind="maintenance", title="Database upgrade", body=body,
                        window=Window(start, end), created_at=START - 86_400)


@pytest.mark.parametrize(
    "start, end, text",
    [
        (START, END, SHOWN),
        (datetime(2026, 11, 30, 22, 0, tzinfo=UTC).timestamp(), datetime(2026, 12, 1, 2, 0, tzinfo=UTC).timestamp(),
         "30 Nov 2026, 22:00 \u2013 1 Dec 2026, 02:00 UTC"),
        (datetime(2027, 1, 5, 9, 0, tzinfo=UTC).timestamp(), datetime(2027, 1, 5, 9, 45, tzinfo=UTC).timestamp(),
         "5 Jan 2027, 09:00\u201309:45 UTC"),
    ],
)
def test_window_text_table(start, end, text):
    assert render.window_text(start, end) == text


@pytest.mark.parametrize("label", sorted(SETTINGS))
@pytest.mark.parametrize("body", ["Writes pause briefly.", LONG_BODY])
def test_every_channel_states_the_window_in_its_first_post(label, body):
    ch = channel(label)
    post = ch.render(Message(maintenance(body)))
    first = post.parts[0] if post.parts else post.text
    assert SHOWN in first, (label, first)
    if post.html is not None:
        assert f"<strong>When:</strong> {SHOWN}" in post.html
    if ch.max_length is not None:  # within the channel's length rule
        assert all(ch.count(p) <= ch.max_length for p in post.parts)
    if label == "cachet":  # Cachet shows the Markdown it is sent
        assert SHOWN in incident_json(post, "k", 3, True, False)["message"]
    update = Update(id="u1", announcement_id="ann_w", status="in_progress", body=lifecycle.step_body(
        maintenance(), "in_progress"))
    later = ch.render(Message(maintenance(body), update=update))
    assert "When:" not in later.text  # updates say what changed, not the window again


def test_only_maintenance_first_posts_carry_a_window_line():
    incident = Announcement(id="a", kind="incident", title="t", window=Window(START, END))
    assert render.window_line(Message(incident)) is None
    assert render.window_line(Message(Announcement(id="b", kind="maintenance", title="t"))) is None


def test_a_signed_maintenance_post_verifies_with_its_window_line():
    ann = maintenance()
    text = render.plain_text(ann.title, ann.body, Message(ann))
    assert SHOWN in text
    docs = [announcement_document(ann)]
    assert textmatch.match_text(text, docs).ok
    assert not textmatch.match_text(text.replace("04:30", "05:30"), docs).ok


def test_the_status_site_shows_the_window_of_a_maintenance():
    post = _statussite.status_post("site", Message(maintenance()))
    assert SHOWN in post.text and SHOWN in post.html and SHOWN in post.meta["body"]


def test_automatic_steps_use_the_same_readable_times():
    assert lifecycle.step_body(maintenance(), "cancelled") == f"The maintenance planned for {SHOWN} has been cancelled."
    assert lifecycle.step_body(maintenance(), "in_progress") == (
        "The maintenance has started. It is planned to end at 06:00 UTC on 30 Nov 2026.")
