"""The official-channel list: built from the config, valid JSON matching it, no private
destination leaked, the human page with rel="me", and the trust files the status site publishes."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from types import SimpleNamespace

from broadcaster import official, signing
from broadcaster.config import load_settings
from broadcaster.models import Announcement, Message

SLACK_SECRET = "T000/B000/verysecretslackpath"

CONFIG = {
    "public_url": "https://broadcaster.example.com",
    "channels": {
        "mastodon-main": {"kind": "mastodon", "base_url": "https://mastodon.social", "access_token": "t1"},
        "bluesky-main": {"kind": "bluesky", "handle": "status.example.com", "app_password": "p"},
        "x-main": {"kind": "x", "access_token": "t2", "username": "examplestatus"},
        "facebook-page": {"kind": "facebook", "page_id": "4242", "access_token": "t3"},
        "linkedin-page": {"kind": "linkedin", "organization": "1337", "access_token": "t4"},
        "email-customers": {"kind": "email", "from_address": "Example Status <status@example.com>",
                            "smtp": {"host": "smtp.example.com"}, "recipients": ["a@example.net"]},
        "status": {"kind": "statuspage", "output_dir": "/tmp/site", "site_url": "https://status.example.com"},
        "ops-slack": {"kind": "webhook", "format": "slack", "url": f"https://hooks.slack.com/services/{SLACK_SECRET}"},
        "old-x": {"kind": "x", "access_token": "t5", "username": "oldhandle", "enabled": False},
    },
}


def settings():
    return load_settings(json.loads(json.dumps(CONFIG)), env={})


def by_name(doc):
    return {c["name"]: c for c in doc["channels"] if "name" in c}


def test_the_list_matches_the_config():
    doc = official.channel_list(settings(), now=1_700_000_000)
    assert official.validate_channel_list(json.loads(json.dumps(doc))) == []
    got = by_name(doc)
    assert set(got) == {"mastodon-main", "bluesky-main", "x-main", "facebook-page", "linkedin-page",
                        "email-customers", "status"}
    assert got["bluesky-main"]["url"] == "https://bsky.app/profile/status.example.com"
    assert got["bluesky-main"]["handle"] == "@status.example.com"
    assert got["x-main"]["url"] == "https://x.com/examplestatus"
    assert got["facebook-page"]["url"] == "https://www.facebook.com/4242"
    assert got["linkedin-page"]["url"] == "https://www.linkedin.com/company/1337/"
    assert got["email-customers"]["from"] == "status@example.com"
    assert got["email-customers"]["from_name"] == "Example Status"
    assert got["status"]["url"] == "https://status.example.com/"
    assert got["mastodon-main"]["instance"] == "https://mastodon.social"
    assert doc["generated_at"] == "2023-11-14T22:13:20.000Z"


def test_private_and_disabled_channels_and_secrets_are_never_listed():
    files = official.site_files(settings())
    blob = b"".join(files.values()).decode()
    assert SLACK_SECRET not in blob and "ops-slack" not in blob and "oldhandle" not in blob
    for token in ("t1", "t2", "t3", "t4", "t5"):
        assert f'"{token}"' not in blob


def test_overrides_hide_relabel_and_add_places():
    s = SimpleNamespace(
        channels=settings().channels, public_url=None,
        official={"organization": "Example Inc",
                  "channels": {"mastodon-main": {"handle": "@status@mastodon.social", "label": "Mastodon (main)"},
                               "facebook-page": {"hide": True}},
                  "extra": [{"label": "Phone line", "kind": "phone", "handle": "+1 555 0100"}]})
    doc = official.channel_list(s)
    got = by_name(doc)
    assert "facebook-page" not in got
    assert got["mastodon-main"]["url"] == "https://mastodon.social/@status"
    assert got["mastodon-main"]["label"] == "Mastodon (main)"
    assert doc["organization"] == "Example Inc"
    assert doc["channels"][-1] == {"kind": "phone", "label": "Phone line", "handle": "+1 555 0100"}
    assert official.validate_channel_list(doc) == []


def test_validation_finds_problems():
    assert official.validate_channel_list({"version": 1, "channels": [{"kind": "x"}]})
    assert official.validate_channel_list({"version": 1, "channels": [{"kind": "x", "label": "X", "url": "javascript:1"}]})
    assert official.validate_channel_list({"version": 1, "channels": [{"kind": "email", "label": "E", "from": "nobody"}]})
    assert official.validate_channel_list([]) == ["not a version-1 channel list with a 'channels' array"]


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs))


def test_where_we_post_page_has_rel_me_profile_links_and_is_escaped():
    s = SimpleNamespace(channels=settings().channels, public_url=None,
                        official={"channels": {"x-main": {"label": "<script>alert(1)</script>"}}})
    page = official.site_files(s)[official.WHERE_PAGE].decode()
    parser = Links()
    parser.feed(page)
    rel_me = {a["href"] for a in parser.links if a.get("rel") == "me"}
    assert {"https://x.com/examplestatus", "https://bsky.app/profile/status.example.com",
            "https://www.linkedin.com/company/1337/"} <= rel_me
    assert "https://status.example.com/" not in rel_me  # our own site is not a profile
    assert "<script>alert" not in page and "status@example.com" in page


def test_site_files_publish_keys_verify_page_and_signatures(tmp_path):
    ring = signing.Keyring(tmp_path / "keys")
    ring.create("k1")
    s = SimpleNamespace(channels=settings().channels, public_url=None,
                        signing=signing.SigningConfig(key_dir=str(ring.dir)))
    ann = Announcement(id="ann_1", kind="incident", title="Down", body="Looking.", created_at=1.0)
    state = official.remember_signature({"incidents": {}}, signing.sign_message(s, Message(ann)))
    official.remember_signature(state, signing.sign_message(s, Message(ann)))  # idempotent
    files = official.site_files(s, state)
    keys = signing.keys_from_json(json.loads(files[official.KEYS_PATH]))
    assert set(keys) == {"k1"} and "PRIVATE" not in files[official.KEYS_PATH].decode()
    sigs = json.loads(files[f"{official.SIGNATURES_DIR}/ann_1.json"])
    [entry] = sigs["entries"]
    assert signing.verify_record(entry, keys).ok
    assert b"crypto.subtle" in files[signing.VERIFY_PAGE]
    json.loads(files[official.CHANNELS_PATH])


def test_without_signing_no_key_files_and_odd_ids_are_not_paths():
    s = SimpleNamespace(channels=settings().channels, public_url=None)
    state = {"signatures": {"../../etc": {"x": {"canonical": "{}"}}}}
    files = official.site_files(s, state)
    assert official.KEYS_PATH not in files and not any("etc" in f for f in files)
    assert set(files) == {official.CHANNELS_PATH, official.WHERE_PAGE}
