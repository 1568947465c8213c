"""Webhooks subscribers brought: ``kind: subscriber_webhooks`` posts each announcement to every
confirmed endpoint of its ``lists`` that wants it (Slack, Teams Workflows, Discord, or a
generic Standard Webhooks receiver signed with the endpoint's own secret).

Why per-item progress, as email has: the fan-out may reach hundreds of endpoints owned by
strangers, some of them dead. Each endpoint is an item (``endpoint:<id>``) marked ``sending``
before its post and ``done``/``refused``/``failed`` after, so a retry posts only to those that
did not take it — never twice to one that did. A post whose outcome is unknown (the connection
died after the body went out) is re-sent only to a generic endpoint, which dedupes on
``webhook-id`` (delivery key + endpoint id); a chat webhook cannot dedupe, so it is not posted
to again (at most once, like every public channel).

Every post carries its endpoint's own unsubscribe link — a last line of a chat message, a
``data.unsubscribe_url`` of a generic event — so each body is made per endpoint.

Every post goes through the network guard (``_outbound``): the URL is resolved and checked
again at send time and the connection made to the checked address. Each failed post counts
against its endpoint; the endpoint source disables it after ``max_failures`` in a row and tells
its owner. A transient failure leaves the delivery to be retried (only the failed endpoints
get it again); a permanent one (404, 410, a URL now pointing inside) is not retried.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, Literal

import httpx
from pydantic import Field

from ..config import ChannelSettings, Duration
from ..errors import AmbiguousDelivery, DeliveryError, PermanentError, TransientError
from ..ledger.endpoints import Endpoint
from ..models import Post, Receipt
from . import _chat, _http, _outbound
from .base import Channel, MemoryProgress, Progress, io_begins
from .ports import EndpointSource
from .registry import register
from .webhook import Webhook, WebhookSettings, sign

log = logging.getLogger(__name__)

Format = Literal["slack", "teams_workflow", "discord", "generic"]
FORMATS: tuple[Format, ...] = ("slack", "teams_workflow", "discord", "generic")
DISCORD_MAX = 2000
ITEM = "endpoint:"


class SubscriberWebhooksSettings(ChannelSettings):
    kind: Literal["subscriber_webhooks"] = "subscriber_webhooks"
    lists: tuple[str, ...] = Field(..., min_length=1)  # subscriber lists whose endpoints get the posts
    formats: tuple[Format, ...] = FORMATS  # formats subscribers may register
    max_failures: int = Field(5, ge=1, le=1000)  # consecutive failed posts that disable an endpoint
    timeout: Duration = 10.0  # per post to one endpoint
    allow_http: bool = False  # tests and labs only: plain http endpoints
    allow_private: bool = False  # tests and labs only: loopback and private addresses

    @property
    def rules(self) -> _outbound.Rules:
        return _outbound.Rules(allow_http=self.allow_http, allow_private=self.allow_private)


def footer(unsubscribe: str | None) -> str:
    """The last line of a chat post to a subscriber's endpoint: how to stop them."""
    return f"\n\nStop these posts: {unsubscribe}" if unsubscribe else ""


def formatted(post: Post, fmt: str, unsubscribe: str | None = None) -> Post:
    """The post as a ``fmt`` webhook must receive it: chat markup escaped (so announcement text
    pings nobody and hides no link), the unsubscribe line last, Discord's length limit kept
    (the text is shortened, never the unsubscribe line)."""
    if fmt == "generic":
        return post
    if fmt == "slack":
        def esc(text: str) -> str:
            return _chat.slack_text(text, mentions=False)
    else:
        esc = _chat.markdown_chat_text
    text = esc(post.text)
    tail = footer(unsubscribe)  # a signed link: letters, digits and -_.:/?= only, nothing to escape
    room = DISCORD_MAX - len(tail)
    if fmt == "discord" and len(text) > room:
        text = text[: room - 1].rstrip() + "…"
    text += tail
    return replace(post, title=esc(post.title), text=text, parts=(text,))


@register
class SubscriberWebhooks(Channel[SubscriberWebhooksSettings]):
    kind = "subscriber_webhooks"
    Settings = SubscriberWebhooksSettings
    public = False  # subscribers' own endpoints, guarded per endpoint by progress
    idempotent = False
    _shapes: dict[str, Webhook]

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._shapes = {}

    def _shape(self, fmt: str) -> Webhook:
        """A webhook adapter of ``fmt`` used for its payloads and answer rules only (it never sends)."""
        cache = self._shapes
        if fmt not in cache:
            settings = WebhookSettings.model_validate({"url": "https://endpoint.invalid/", "format": fmt})
            cache[fmt] = Webhook(self.name, settings, clock=self.clock)
        return cache[fmt]

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = _http.make_client(self.settings.timeout)
        return self._http

    def source(self) -> EndpointSource:
        src = self.endpoints
        if src is None:
            raise PermanentError(f"{self.name}: no endpoint source (the runtime provides it)")
        return src

    # -- one endpoint

    def post_to(self, endpoint: Endpoint, body: bytes, msg_id: str, *, secret: str | None) -> httpx.Response:
        """POST ``body`` to ``endpoint`` through the guard; raises DeliveryError by its answer."""
        headers = {"Content-Type": "application/json"}
        if endpoint.format == "generic":
            ts = int(self.clock())
            headers.update({"webhook-id": msg_id, "webhook-timestamp": str(ts)})
            if secret:
                headers["webhook-signature"] = sign(secret, msg_id, ts, body)
        url = endpoint.url
        if endpoint.format == "discord":
            url += ("&" if "?" in url else "?") + "wait=true"
        what = f"{self.name} (endpoint {endpoint.id}, {endpoint.format})"
        io_begins()
        resp = _outbound.pinned_post(self._client(), url, self.settings.rules, content=body, headers=headers,
                                     what=what, resolver=self.resolver or _outbound.system_resolver)
        self._shape(endpoint.format)._classify(resp, what)
        return resp

    def body(self, post: Post, key: str, fmt: str, unsubscribe: str | None = None) -> bytes:
        payload = self._shape(fmt).payload(formatted(post, fmt, unsubscribe), key)
        if fmt == "generic" and unsubscribe:
            payload["data"]["unsubscribe_url"] = unsubscribe
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    # -- the fan-out

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        progress = progress if progress is not None else MemoryProgress()
        src = self.source()
        st = self.settings
        everyone = {ITEM + e.id: e for e in src.targets(st.lists, post, st.formats)}
        before = progress.states()
        sent = 0
        for item, endpoint in everyone.items():
            state = before.get(item, ("",))[0]
            if state in ("done", "refused"):
                continue
            if state == "sending" and endpoint.format != "generic":
                progress.mark([item], "refused", "uncertain: an earlier post may have landed; a chat webhook "
                                                 "cannot deduplicate, so it is not posted again")
                continue
            if src.current([endpoint.id]).get(endpoint.id) != "confirmed":
                progress.mark([item], "refused", "endpoint disabled")
                continue
            body = self.body(post, key, endpoint.format, src.unsubscribe_url(endpoint))
            secret = src.secret(endpoint) if endpoint.format == "generic" else None
            progress.mark([item], "sending")
            try:
                self.post_to(endpoint, body, f"msg_{key}_{endpoint.id}", secret=secret)
            except AmbiguousDelivery as exc:
                src.failed(endpoint, str(exc), st.max_failures)  # stays "sending"
                continue
            except PermanentError as exc:
                progress.mark([item], "refused", str(exc)[:200])
                src.failed(endpoint, str(exc), st.max_failures)
                continue
            except DeliveryError as exc:
                progress.mark([item], "failed", str(exc)[:200])
                src.failed(endpoint, str(exc), st.max_failures)
                continue
            progress.mark([item], "done")
            src.succeeded(endpoint)
            sent += 1
        return self._settle(key, everyone, progress.states(), sent)

    def _settle(self, key: str, everyone: dict[str, Endpoint], states: dict[str, tuple[str, str | None]],
                sent: int) -> Receipt:
        def count(state: str) -> int:
            return sum(1 for i in everyone if states.get(i, ("",))[0] == state)

        done, refused, unsure = count("done"), count("refused"), count("sending")
        pending = len(everyone) - done - refused - unsure
        counts = f"{done} endpoints took it, {refused} refused or skipped, {pending} to retry, {unsure} uncertain"
        if unsure:
            raise AmbiguousDelivery(f"{self.name}: {counts}")
        if pending:
            # only these are tried again; each failure counts towards disabling its endpoint
            raise TransientError(f"{self.name}: {counts}")
        return Receipt(remote_id=f"msg_{key}", extra={"endpoints": len(everyone), "sent": sent, "done": done,
                                                      "refused": refused})

    def check(self) -> str:
        return "subscriber endpoints are checked when registered and on every post"

