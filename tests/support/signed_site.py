"""A configured system on disk whose status site carries signed announcements: the channels of
every kind, a signing keyring, the statuspage channel writing a real output directory, and the
``broadcaster`` CLI pointed at it (tests of ``broadcaster verify`` and the verify page)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from broadcaster import official, signing
from broadcaster.channels import _mail, channel_class
from broadcaster.config import read_settings
from broadcaster.models import Announcement, Message, Receipt, Update

NOW = 1_700_000_000.0
ANN_ID = "ann_18c2f0a1b2c_3f9a1c2e"
SITE = "https://status.example.com"
PAGE = f"{SITE}/verify.html"
BODY = ("Since 09:12 UTC some people cannot sign in; the error says *session expired*. We are looking at the "
        "login service and its database. Your data is safe: nothing was lost and no password was exposed.\n\n"
        "- EU customers: affected\n- US customers: some\n\nWe will post again within 30 minutes, or sooner "
        "when we know more. Details on [our status page](https://status.example.com/i/1). If you were signed out "
        "in the middle of an order, the order is kept: sign in again once this is resolved and it will be there.")

CHANNELS = {
    "mastodon-main": {"kind": "mastodon", "base_url": "https://mastodon.example", "access_token": "t",
                      "read_instance_limits": False, "max_characters": 1000},
    "bluesky-main": {"kind": "bluesky", "handle": "status.example.com", "app_password": "p"},
    "x-main": {"kind": "x", "access_token": "t"},
    "facebook-page": {"kind": "facebook", "page_id": "1000001", "access_token": "t"},
    "linkedin-page": {"kind": "linkedin", "organization": "2414183", "access_token": "t"},
    "ops-slack": {"kind": "webhook", "format": "slack", "url": "https://hooks.example/slack"},
    "ops-discord": {"kind": "webhook", "format": "discord", "url": "https://hooks.example/discord"},
    "ops-teams": {"kind": "webhook", "format": "teams", "url": "https://hooks.example/teams"},
    "ops-webhook": {"kind": "webhook", "format": "generic", "url": "https://hooks.example/generic"},
    "oncall-email": {"kind": "email", "transport": "smtp", "smtp": {"host": "127.0.0.1", "port": 8025},
                     "from_address": "status@example.com", "recipients": ["oncall@example.com"]},
    "atlassian-status": {"kind": "atlassian_statuspage", "page_id": "abcd", "api_key": "k"},
    "cachet-status": {"kind": "cachet", "base_url": "https://cachet.example", "token": "t"},
    "chat-misc": {"kind": "apprise", "urls": ["json://localhost/"]},
}
STATUS_KINDS = ("statuspage", "atlassian_statuspage", "cachet")


def announcement(**kw) -> Announcement:
    base = dict(id=ANN_ID, kind="incident", title="Login errors", body=BODY, url="https://status.example.com/i/1",
                severity="major", components=("API",), created_at=NOW,
                variants={"x-main": {"title": "Logins failing"}}, channels=(*CHANNELS, "status-site"))
    base.update(kw)
    return Announcement(**base)


UPDATE = Update(id="upd_1", announcement_id=ANN_ID, status="identified", created_at=NOW + 600,
                body="The session store ran out of memory; we are moving it to a larger machine.")


# ---------------------------------------------------------------- a configured system on disk


class Setup:
    def __init__(self, tmp: Path, *, signing_on: bool = True, with_site: bool = True):
        self.tmp = tmp
        self.out = tmp / "site"
        channels = dict(CHANNELS)
        if with_site:
            channels["status-site"] = {"kind": "statuspage", "output_dir": str(self.out), "site_url": SITE,
                                       "components": ["API"]}
        data = {"ledger": f"sqlite:///{tmp}/ledger.db", "public_url": "https://broadcaster.example",
                "channels": channels}
        if signing_on:
            data["signing"] = {"key_dir": str(tmp / "keys")}
        self.path = tmp / f"broadcaster{'' if signing_on else '-readonly'}.yaml"
        self.path.write_text(yaml.safe_dump(data))
        self.settings = read_settings(self.path, env={})

    def channel(self, name: str, **io):
        cfg = self.settings.channels[name]
        return channel_class(cfg.kind)(name, cfg, clock=lambda: NOW, **io)

    def message(self, ann: Announcement | None = None, update: Update | None = None, thread=()) -> Message:
        ann = ann or announcement()
        return Message(announcement=ann, update=update, thread=thread,
                       verify_link=signing.verification_suffix(self.settings, ann.id, ann.channels))

    def site(self):
        return self.channel("status-site", trust_files=lambda state: official.site_files(self.settings, state))

    def publish(self, message: Message, key: str) -> Receipt:
        """What the engine does for a status page delivery: render, sign, send."""
        site = self.site()
        post = site.render(message)
        post = replace(post, meta={**post.meta, "signature": signing.sign_message(self.settings, message)})
        return site.send(post, key=key)

    def publish_both(self) -> tuple[Receipt, Receipt]:
        first = self.publish(self.message(), "dlv_1")
        second = self.publish(self.message(update=UPDATE, thread=(first,)), "dlv_2")
        return first, second

    def create_ledger(self) -> None:
        """An empty ledger at the configured URL: it holds none of the announcements this setup
        publishes straight to the site, so it vouches for none of them after a revoke."""
        from broadcaster.ledger import Ledger

        Ledger.open(self.settings.ledger).close()

    def signature_file(self) -> dict:
        return json.loads((self.out / f".well-known/broadcaster/signatures/{ANN_ID}.json").read_text())

    def keys_file(self) -> dict:
        return json.loads((self.out / ".well-known/broadcaster/keys.json").read_text())


def cli(setup: Setup | None, *args: str, input: str | None = None):
    from click.testing import CliRunner

    import broadcaster.cli.keys  # noqa: F401 - registers its commands on `main`
    from broadcaster.cli import main

    env = {"BROADCASTER_CONFIG": str(setup.path) if setup else ""}
    return CliRunner().invoke(main, list(args), input=input, env=env)


def verify_text(setup: Setup, text: str):
    ids = [] if signing.id_from_text(text) else ["--id", ANN_ID]
    return cli(setup, "verify", "--text", "-", *ids, input=text)


def reader_copy(channel, message: Message) -> str:
    """What a reader copies from the post this channel makes: every part of a thread one after
    the other; from a status page the title, the text and the link; from an e-mail its text."""
    post = channel.render(message)
    if channel.kind in STATUS_KINDS:  # the page shows the link apart, unless the text has it already
        link = None if message.update or (post.url and post.url in post.text) else post.url
        return "\n\n".join(p for p in (post.title, post.text, link) if p)
    if channel.kind == "email":
        return _mail.text_part(post, None)
    return "\n".join(post.parts or (post.text,))


ALL_CHANNELS = [*CHANNELS, "status-site"]


def x_thread(system: Setup) -> list[str]:
    return list(system.channel("x-main").render(system.message()).parts)


def mastodon_text(system: Setup, update: bool = False) -> str:
    msg = system.message(update=UPDATE, thread=(Receipt("r"),)) if update else system.message()
    return "\n".join(system.channel("mastodon-main").render(msg).parts)
