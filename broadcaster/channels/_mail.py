"""Pure pieces of the email channel: stable Message-IDs, one message per recipient, and the
reading of SMTP replies.

Why deterministic Message-IDs: a retry re-sends an address whose outcome was unknown with the
*same* id, so mail clients that dedupe on it show one message, and an update can point its
``In-Reply-To`` at the original without storing one id per recipient.
"""

from __future__ import annotations

import email.policy
import email.quoprimime
import email.utils
import hashlib
import html
import re
import secrets
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
) -> Mail:
    root, parent = thread_keys(post.reply_to)
    headers: list[tuple[str, str]] = [("Message-ID", message_id(key, to, domain))]
    if parent:
        parent_id = message_id(parent, to, domain)
        refs = [message_id(root, to, domain)] if root and root != parent else []
        headers += [("In-Reply-To", parent_id), ("References", " ".join([*refs, parent_id]))]
    if one_click(unsubscribe_url):
        headers += [
            ("List-Unsubscribe", f"<{unsubscribe_url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
    footer_url = unsubscribe_url or None  # every mail to a subscriber says how to stop it
    return Mail(
        to=to,
        subject=post.title,
        text=text_part(post, footer_url),
        html=html_part(post, footer_url),
        headers=tuple(headers),
    )


def one_click(unsubscribe_url: str | None) -> bool:
    """Whether a mail carries the RFC 8058 one-click headers: every mail to a subscriber does
    (the link's own scope decides what it stops: a promotion's stops promotions, any other
    leaves the list), provided the link is https — the RFC requires it and providers ignore
    anything else. Static recipients have no link, so nothing to unsubscribe from."""
    return unsubscribe_url is not None and unsubscribe_url.startswith("https://")


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


# ---------------------------------------------------------------- a mailing, serialized once


#: an address that is its own envelope address and needs no encoding in a header
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$")
#: printable ASCII, single spaces between words: a header value written as it is
_PLAIN_VALUE = re.compile(r"^[!-~]+(?: [!-~]+)*$")
_LEADING_DOT = re.compile(rb"(?m)^\.")
#: RFC 5322 2.1.1: lines SHOULD be at most 78 characters, MUST be at most 998
_FOLD_AT, _LINE_MAX = 78, 998


def envelope_address(to: str) -> str:
    """The SMTP envelope (RCPT TO) address of a header address."""
    if _PLAIN_ADDRESS.match(to):
        return to
    return email.utils.parseaddr(to)[1]


def plain_envelope(address: str) -> bool:
    """Whether an envelope address can be written into an SMTP command as it is: ASCII letters,
    digits and the RFC 5321 atom characters only (no space, CR or LF, no quoting needed)."""
    return bool(_PLAIN_ADDRESS.fullmatch(address))


def header_line(name: str, value: str) -> bytes:
    """One header field, folded, CRLF-terminated, as :data:`POLICY` writes it.

    Plain ASCII values (addresses, Message-IDs, URLs) are written directly, folded at spaces;
    anything else — non-ASCII text, odd addresses — goes through the email package's header
    registry (RFC 2047 encoding, address parsing). A single token longer than 78 characters (a
    long List-Unsubscribe URL) stays on one line up to the hard limit of 998 rather than being
    encoded, which would break the URL for mail clients."""
    if _PLAIN_VALUE.match(value) and (name.lower() != "to" or _PLAIN_ADDRESS.match(value)):
        if len(name) + 2 + len(value) <= _FOLD_AT:
            return f"{name}: {value}\r\n".encode("ascii")
        lines, line = [], f"{name}:"
        for word in value.split(" "):
            if len(line) + 1 + len(word) > _FOLD_AT and line != f"{name}:":
                lines.append(line)
                line = ""
            line += " " + word
        lines.append(line)
        if all(len(x) <= _LINE_MAX for x in lines):
            return ("\r\n".join(lines) + "\r\n").encode("ascii")
    return POLICY.fold_binary(*POLICY.header_store_parse(name, value))


def _qp_body(text: str) -> bytes:
    """A text part's quoted-printable payload, exactly as ``set_content(..., cte="quoted-printable")``
    encodes it, with CRLF line ends and leading dots doubled for SMTP."""
    lines = text.encode("utf-8").splitlines()
    data = email.quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), POLICY.max_line_length or 76)
    return _LEADING_DOT.sub(b"..", data.encode("ascii").replace(b"\n", b"\r\n"))


class Template:
    """One mailing (one post, one delivery key) to many recipients, built once.

    The common headers (From, Reply-To, Subject, Date) and the MIME skeleton (multipart/
    alternative, part headers, boundary) are produced once by the email package; the text and
    HTML parts are encoded once too, unless an unsubscribe footer (mail to a subscriber) makes them
    differ per address.
    :meth:`payload` then only writes the per-recipient headers — To, Message-ID, In-Reply-To/
    References, List-Unsubscribe — and splices the pieces. The bytes are those ``smtp_payload(
    to_mime(build(...)))`` produces for the same recipient (tests compare both)."""

    def __init__(self, post: Post, *, key: str, domain: str, from_address: str, reply_to: str | None,
                 date: float):
        self.post, self.key, self.domain = post, key, domain
        self.root, self.parent = thread_keys(post.reply_to)
        common = [("Reply-To", reply_to)] if reply_to else []
        common += [("Subject", post.title), ("Date", email.utils.formatdate(date, usegmt=True))]
        # through the email package, as to_mime sets them (validates CR/LF, encodes non-ASCII)
        self.from_line = POLICY.fold_binary(*POLICY.header_store_parse("From", from_address))
        self.common = b"".join(POLICY.fold_binary(*POLICY.header_store_parse(n, v)) for n, v in common)
        mark = "x" + secrets.token_hex(12)
        skeleton = EmailMessage(policy=POLICY)
        skeleton["MIME-Version"] = "1.0"
        skeleton.set_content(f"{mark}T\n", cte="quoted-printable")
        skeleton.add_alternative(f"{mark}H\n", subtype="html", cte="quoted-printable")
        raw = _LEADING_DOT.sub(b"..", skeleton.as_bytes(policy=POLICY))
        head, _, rest = raw.partition(f"{mark}T\r\n".encode())
        middle, _, tail = rest.partition(f"{mark}H\r\n".encode())
        if not middle or not tail.endswith(b"\r\n"):
            raise ValueError("unexpected MIME skeleton")
        self.skeleton = (head, middle, tail + b".\r\n")
        self._plain: tuple[bytes, bytes] | None = None

    def headers(self, to: str, unsubscribe_url: str | None) -> list[tuple[str, str]]:
        """The per-recipient headers after Date, as :func:`build` gives them."""
        mid = message_id(self.key, to, self.domain)
        out = [("Message-ID", mid)]
        if self.parent:
            parent_id = message_id(self.parent, to, self.domain)
            refs = [message_id(self.root, to, self.domain)] if self.root and self.root != self.parent else []
            out += [("In-Reply-To", parent_id), ("References", " ".join([*refs, parent_id]))]
        if one_click(unsubscribe_url):
            out += [("List-Unsubscribe", f"<{unsubscribe_url}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        return out

    def bodies(self, unsubscribe_url: str | None) -> tuple[bytes, bytes]:
        footer = unsubscribe_url or None
        if footer is None and self._plain is not None:
            return self._plain
        out = (_qp_body(text_part(self.post, footer)), _qp_body(html_part(self.post, footer)))
        if footer is None:
            self._plain = out
        return out

    def payload(self, to: str, unsubscribe_url: str | None = None) -> bytes:
        """The DATA payload for ``to``: CRLF line ends, leading dots doubled, ending ``CRLF.CRLF``."""
        text, html_ = self.bodies(unsubscribe_url)
        head, middle, tail = self.skeleton
        parts = [self.from_line, header_line("To", to), self.common]
        parts += [header_line(n, v) for n, v in self.headers(to, unsubscribe_url)]
        parts += [head, text, middle, html_, tail]
        return b"".join(parts)

    def mail(self, to: str, unsubscribe_url: str | None = None) -> Mail:
        """The same message as a :class:`Mail`, for HTTP APIs."""
        return build(self.post, key=self.key, to=to, domain=self.domain, unsubscribe_url=unsubscribe_url)


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
