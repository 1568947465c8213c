"""Pure pieces of the email channel: stable Message-IDs, one message per recipient, and the
reading of SMTP replies.

Why deterministic Message-IDs: a retry re-sends an address whose outcome was unknown with the
*same* id, so mail clients that dedupe on it show one message, and an update can point its
``In-Reply-To`` at the original without storing one id per recipient.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import html
import re
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from ..models import Post, Receipt

#: RFC 5322 with CRLF line ends, as SMTP wants it on the wire
POLICY = email.policy.SMTP

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def valid_address(address: str) -> bool:
    return bool(_ADDRESS.match(address or ""))


def normalize(address: str) -> str:
    """The progress item for an address: trimmed and lower-cased, so duplicates collapse."""
    return address.strip().lower()


def domain_of(from_address: str) -> str:
    _, addr = email.utils.parseaddr(from_address)
    return addr.rpartition("@")[2].lower() or "localhost"


def message_id(key: str, recipient: str, domain: str) -> str:
    """The same ``<...@domain>`` for the same (delivery key, recipient), on every attempt."""
    digest = hashlib.sha256(f"{key}\x00{normalize(recipient)}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def thread_keys(reply_to: Receipt | None) -> tuple[str | None, str | None]:
    """(root key, parent key) of the thread an update answers, from the earlier receipt."""
    if reply_to is None:
        return None, None
    parent = reply_to.extra.get("message_id_key")
    if not parent:
        return None, None
    return reply_to.extra.get("root_key") or parent, parent


@dataclass(frozen=True)
class Mail:
    """One message to one recipient, before it is shaped for SMTP or an HTTP API."""

    to: str
    subject: str
    text: str
    html: str
    headers: tuple[tuple[str, str], ...]


def build(
    post: Post,
    *,
    key: str,
    to: str,
    domain: str,
    unsubscribe_url: str | None,
    marketing: bool,
) -> Mail:
    root, parent = thread_keys(post.reply_to)
    headers: list[tuple[str, str]] = [("Message-ID", message_id(key, to, domain))]
    if parent:
        parent_id = message_id(parent, to, domain)
        refs = [message_id(root, to, domain)] if root and root != parent else []
        headers += [("In-Reply-To", parent_id), ("References", " ".join(refs + [parent_id]))]
    one_click = marketing and bool(unsubscribe_url) and unsubscribe_url.startswith("https://")
    if one_click:
        headers += [
            ("List-Unsubscribe", f"<{unsubscribe_url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    footer_url = unsubscribe_url if marketing and unsubscribe_url else None
    return Mail(
        to=to,
        subject=post.title,
        text=text_part(post, footer_url),
        html=html_part(post, footer_url),
        headers=tuple(headers),
    )


def text_part(post: Post, unsubscribe_url: str | None) -> str:
    text = post.text
    if unsubscribe_url:
        text += f"\n\n--\nUnsubscribe: {unsubscribe_url}"
    return text + "\n"


def html_part(post: Post, unsubscribe_url: str | None) -> str:
    """A small HTML document; ``post.html`` is already escaped by ``render.markdown_to_html``."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html><head><meta charset="utf-8"><title>' + e(post.title) + "</title></head><body>",
        "<h1>" + e(post.title) + "</h1>",
        post.html or "<p>" + e(post.text) + "</p>",
    ]
    if post.url:
        parts.append(f'<p><a href="{e(post.url, quote=True)}">{e(post.url)}</a></p>')
    if unsubscribe_url:
        parts.append(f'<hr><p><a href="{e(unsubscribe_url, quote=True)}">Unsubscribe</a></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def to_mime(mail: Mail, *, from_address: str, reply_to: str | None, date: float) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = from_address
    msg["To"] = mail.to
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.formatdate(date, usegmt=True)
    for name, value in mail.headers:
        msg[name] = value
    msg["MIME-Version"] = "1.0"
    # quoted-printable keeps the message 7-bit clean for servers without 8BITMIME
    msg.set_content(mail.text, cte="quoted-printable")
    msg.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    return msg


def smtp_payload(msg: EmailMessage) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ending in ``CRLF.CRLF``."""
    data = msg.as_bytes(policy=POLICY)
    data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def to_postmark(mail: Mail, *, from_address: str, reply_to: str | None, stream: str, tag: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "From": from_address,
        "To": mail.to,
        "Subject": mail.subject,
        "TextBody": mail.text,
        "HtmlBody": mail.html,
        "MessageStream": stream,
        "Headers": [{"Name": n, "Value": v} for n, v in mail.headers],
    }
    if reply_to:
        body["ReplyTo"] = reply_to
    if tag:
        body["Tag"] = tag
    return body


# ---------------------------------------------------------------- SMTP replies

DONE, REFUSED, DEFERRED = "done", "refused", "deferred"


def reply_outcome(code: int) -> str:
    """2yz accepted; 4yz try again later; 5yz (and anything odd) refused for good."""
    if 200 <= code < 300:
        return DONE
    if 400 <= code < 500:
        return DEFERRED
    return REFUSED


def reply_text(code: int, text: bytes | str | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join((text or '').split())}"[:200]
