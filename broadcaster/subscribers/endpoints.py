"""Endpoints subscribers bring: a Slack, Teams Workflows, Discord or signed generic webhook
registered for chosen components of a list, confirmed by a challenge delivered to it.

The rules, as for addresses:

* Registration is public (``POST /api/v1/subscribe/endpoint``) and answers the same for a new,
  a pending and a confirmed URL; it never changes a registration someone already made (a
  pending one keeps its choices until its code confirms it, a confirmed one is left alone).
  A disabled endpoint, or a pending one whose request expired, starts over.
* The URL passes the network guard (``channels/_outbound``): https only, and no name that
  resolves to loopback, private, link-local (metadata) or other non-public addresses — at
  registration and again on every post.
* The challenge: a message carrying a one-time code is posted *to the endpoint itself*, in
  the background (at most one per endpoint per ``subscribers.confirm_resend_after``). Only
  someone who can read what arrives there can post the code back
  (``POST /api/v1/subscribe/endpoint/confirm``): that proves the endpoint is theirs and wants
  the posts. A new code makes older ones worthless; codes expire with
  ``subscribers.confirm_within``.
* A generic endpoint's signing secret is shown once, in the answer to the confirmation (never
  in the public registration answer, which must not differ between callers). It is derived
  from ``subscribers.secret_key`` and the request, so it is not stored anywhere; changing the
  secret key changes every endpoint's secret.
* Failures: each failed post counts; ``max_failures`` in a row (the channel's setting)
  disable the endpoint, and its owner is mailed (when an ``owner`` address was given; else the
  admin listing shows ``notice: none``). An admin may enable it again; its owner may register
  it again (a new challenge).
* Unsubscribing: the challenge and every post carry a signed link
  (``/api/v1/unsubscribe/endpoint?token=…``, never expiring, like a mail's). Opening it shows a
  page with one button — chat apps fetch links to preview them, so a GET changes nothing — and
  its POST stops the posts at once (state ``unsubscribed``; a pending request is cancelled).
  Only the owner registering the URL again brings it back; an administrator cannot.
* Which announcements: the audience rule of email (``audience.py``) — an announcement naming
  components reaches the endpoints of those components (critical incidents reach all); one
  naming none reaches every endpoint. Promotions never go to endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from ..channels import _outbound
from ..channels.subscriber_webhooks import FORMATS, SubscriberWebhooks, SubscriberWebhooksSettings
from ..config import Settings
from ..errors import InvalidRequest, NotFound
from ..ledger import Ledger
from ..ledger.endpoints import STATES, Endpoint, EndpointRequest, EndpointStore
from ..models import Post
from . import audience, confirmation, links
from .consent import check_address, check_list, known_components

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

CONFIRM_PATH = "/api/v1/subscribe/endpoint/confirm"
#: ``GET CONFIRM_PATH?code=…`` opens a page whose button confirms (the challenge links to it)
#: what a subscriber may call a format; ``teams`` is a Teams Workflows webhook
ALIASES = {"teams": "teams_workflow"}
#: challenges waiting beyond this are dropped (the owner may ask again): a flood must not grow memory
MAX_QUEUED = 200

__all__ = ["ALIASES", "CONFIRM_PATH", "STATES", "Endpoint", "Source", "check_endpoint", "confirm", "endpoint_lists",
           "flush", "list_endpoints", "register", "secret_for", "set_state", "unsubscribe", "unsubscribe_target",
           "unsubscribe_url"]


# ---------------------------------------------------------------- settings


def serving(settings: Settings, list_name: str) -> tuple[str, SubscriberWebhooksSettings] | None:
    """The enabled ``subscriber_webhooks`` channel that serves ``list_name`` (the first one)."""
    for name, ch in settings.channels.items():
        if isinstance(ch, SubscriberWebhooksSettings) and ch.enabled and list_name in ch.lists:
            return name, ch
    return None


def endpoint_lists(settings: Settings) -> set[str]:
    """Lists that accept endpoints: those an enabled ``subscriber_webhooks`` channel serves."""
    return {lst for ch in settings.channels.values()
            if isinstance(ch, SubscriberWebhooksSettings) and ch.enabled for lst in ch.lists}


def check_endpoint(fmt: str, url: str, allowed: Sequence[str], rules: _outbound.Rules,
                   resolver: _outbound.Resolver = _outbound.system_resolver) -> tuple[str, str]:
    """``(format, url)`` of a registration, or InvalidRequest naming ``endpoint.format`` or ``endpoint.url``."""
    fmt = ALIASES.get(fmt, fmt)
    if fmt not in FORMATS or fmt not in allowed:
        names = ", ".join(sorted({*allowed, *(a for a, f in ALIASES.items() if f in allowed)}))
        raise InvalidRequest(f"endpoint.format: one of {names}", field="endpoint.format")
    try:
        _outbound.target(url, rules, resolver)
    except _outbound.Refused as exc:
        raise InvalidRequest(f"endpoint.url: {exc}", field="endpoint.url") from None
    except LookupError as exc:
        raise InvalidRequest(f"endpoint.url: {exc}", field="endpoint.url") from None
    return fmt, url


def secret_for(settings: Settings | None, endpoint: Endpoint) -> str:
    """The endpoint's Standard Webhooks secret (``whsec_…``), derived — never stored."""
    mac = hmac.new(links.secret(settings), f"endpoint-secret|{endpoint.id}|{endpoint.requested_at!r}".encode(),
                   hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(mac).decode()


def unsubscribe_url(settings: Settings, endpoint: Endpoint) -> str:
    """The endpoint's one-click unsubscribe link (the page's button stops every post to it)."""
    return links.link(settings.public_url, links.ENDPOINT_UNSUBSCRIBE_PATH,
                      links.endpoint_unsubscribe_token(settings, endpoint.id))


def confirm_page_url(settings: Settings, code: str) -> str:
    return f"{settings.public_url.rstrip('/')}{CONFIRM_PATH}?code={code}"


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


# ---------------------------------------------------------------- registration and the challenge


def register(runtime: Runtime, list_name: str, fmt: str, url: str, *, components: Iterable[str] | None = None,
             owner: str | None = None) -> Endpoint:
    """Record the registration (see the module's rules) and, while it is pending and no
    challenge went out within the interval, queue one. The caller must not tell anyone what
    came back."""
    settings = runtime.settings
    list_name = check_list(list_name)
    served = serving(settings, list_name)
    if served is None:
        raise InvalidRequest("list: no such list takes endpoints", field="list")
    channel_name, ch = served
    resolver = runtime.ports.resolver or _outbound.system_resolver
    fmt, url = check_endpoint(fmt, url, ch.formats, ch.rules, resolver)
    owner = check_address(owner) if owner else None
    req = EndpointRequest(list=list_name, format=fmt, url=url, url_key=hashlib.sha256(url.encode()).hexdigest(),
                          owner=owner, components=known_components(components, settings))
    links.secret(settings)  # refuse before writing anything if secrets cannot be derived
    cfg = links.settings_of(settings)
    store = EndpointStore(runtime.ledger)
    now = runtime.ledger.clock()
    ep = store.request(req, stale_before=now - cfg.confirm_within)
    code = secrets.token_hex(16)  # hex: no character chat markup would escape
    claimed = store.claim_challenge(ep.id, _code_hash(code), not_since=now - cfg.confirm_resend_after)
    if ep.state == "pending" and claimed is not None:
        _challenger(runtime).submit(runtime, channel_name, ep, code, claimed)
    return ep


def challenge_body(channel: SubscriberWebhooks, ep: Endpoint, code: str, confirm_url: str, *,
                   confirm_page: str | None = None, unsubscribe: str | None = None) -> bytes:
    """What the challenge posts: a short chat message, or a generic ``endpoint.challenge`` event.
    Both say how to confirm (a page with a button, or the code posted back) and how to cancel."""
    if ep.format == "generic":
        data = {"list": ep.list, "code": code, "confirm_url": confirm_url, "components": list(ep.components)}
        if confirm_page:
            data["confirm_page"] = confirm_page
        if unsubscribe:
            data["unsubscribe_url"] = unsubscribe
        return json.dumps({"type": "endpoint.challenge", "timestamp": int(channel.clock()), "data": data},
                          separators=(",", ":")).encode()
    about = f" about {', '.join(ep.components)}" if ep.components else ""
    how = f"open {confirm_page} and press the button, or " if confirm_page else ""
    text = (f"Someone asked to post the announcements of {ep.list}{about} here. To confirm, {how}post this code "
            f"to {confirm_url} as JSON {{\"code\": \"{code}\"}}. If it was not you, ignore this message: "
            "nothing more is posted without the code.")
    if unsubscribe:
        text += f" To cancel the request (and stop any later posts): {unsubscribe}"
    post = Post(channel=channel.name, kind="notice", title=f"Confirm announcements of {ep.list}", text=text,
                parts=(text,))
    return channel.body(post, f"challenge-{ep.id}", ep.format)


class Challenger:
    """One background thread per runtime posts challenges, so the registration answer waits
    for no stranger's server (and costs the same whatever the URL's state)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="endpoint-challenges")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, runtime: Runtime, channel_name: str, ep: Endpoint, code: str, claimed: float) -> None:
        store = EndpointStore(runtime.ledger)
        with self._lock:
            if len(self._pending) >= MAX_QUEUED:
                log.warning("endpoint challenges: %d waiting; dropped one (the owner may ask again)", MAX_QUEUED)
                store.release_challenge(ep.id, claimed)
                return
            fut = self._pool.submit(self._send, runtime, channel_name, ep, code, claimed)
            self._pending.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[None]) -> None:
        with self._lock:
            self._pending.discard(fut)

    @staticmethod
    def _send(runtime: Runtime, channel_name: str, ep: Endpoint, code: str, claimed: float) -> None:
        ledger = runtime.ledger
        try:
            channel = runtime.channel(channel_name)
            if not isinstance(channel, SubscriberWebhooks):
                raise TypeError(f"{channel_name} is not a subscriber_webhooks channel")
            settings = runtime.settings
            confirm_url = settings.public_url.rstrip("/") + CONFIRM_PATH
            body = challenge_body(channel, ep, code, confirm_url, confirm_page=confirm_page_url(settings, code),
                                  unsubscribe=unsubscribe_url(settings, ep))
            channel.post_to(ep, body, f"msg_challenge_{ep.id}_{claimed!r}", secret=None)
        except Exception as exc:  # noqa: BLE001 - any failure: record it, let the owner ask again
            log.warning("challenge to endpoint %s failed: %s", ep.id, type(exc).__name__)
            try:
                EndpointStore(ledger).release_challenge(ep.id, claimed)
                ledger.audit("public", "endpoint.challenge_failed", ep.id, {"error": str(exc)[:200]})
            except Exception:
                log.exception("could not record the failed challenge")
            return
        try:
            ledger.audit("public", "endpoint.challenge_sent", ep.id, {})
        except Exception:
            log.exception("could not record the challenge")

    def flush(self, timeout: float) -> bool:
        with self._lock:
            pending = list(self._pending)
        _done, not_done = wait(pending, timeout)
        return not not_done


_challengers: weakref.WeakKeyDictionary[Runtime, Challenger] = weakref.WeakKeyDictionary()
_challengers_lock = threading.Lock()


def _challenger(runtime: Runtime) -> Challenger:
    with _challengers_lock:
        c = _challengers.get(runtime)
        if c is None:
            c = _challengers[runtime] = Challenger()
        return c


def flush(runtime: Runtime, timeout: float = 30.0) -> bool:
    """Wait until every queued challenge was tried (tests; the CLI before it exits)."""
    return _challenger(runtime).flush(timeout)


def confirm(ledger: Ledger, settings: Settings | None, code: str) -> tuple[Endpoint, str | None]:
    """The owner posted the challenge's code back: pending → confirmed. Returns the endpoint and,
    for a generic one, its signing secret — shown this once."""
    if not isinstance(code, str) or not 8 <= len(code) <= 200:
        raise InvalidRequest("code: give the code the challenge carried", field="code")
    cfg = links.settings_of(settings)
    ep = EndpointStore(ledger).confirm(_code_hash(code.strip()), requested_after=ledger.clock() - cfg.confirm_within)
    if ep is None:
        raise InvalidRequest("code: not valid (mistyped, already used, replaced by a newer one, or expired); "
                             "register the endpoint again for a new one", field="code")
    return ep, secret_for(settings, ep) if ep.format == "generic" else None


def pending_by_code(ledger: Ledger, settings: Settings | None, code: str) -> Endpoint:
    """The pending endpoint a challenge code would confirm, unchanged (what the page shows)."""
    if not isinstance(code, str) or not 8 <= len(code) <= 200:
        raise InvalidRequest("code: give the code the challenge carried", field="code")
    cfg = links.settings_of(settings)
    ep = EndpointStore(ledger).pending_by_code(_code_hash(code.strip()),
                                               requested_after=ledger.clock() - cfg.confirm_within)
    if ep is None:
        raise InvalidRequest("code: not valid (mistyped, already used, replaced by a newer one, or expired); "
                             "register the endpoint again for a new one", field="code")
    return ep


def unsubscribe_target(ledger: Ledger, settings: Settings | None, token: str) -> Endpoint:
    """The endpoint an unsubscribe link is for, unchanged (what its page shows)."""
    endpoint_id = links.read_endpoint_unsubscribe_token(settings, token)
    try:
        return EndpointStore(ledger).get(endpoint_id)
    except NotFound:
        raise InvalidRequest("this link is not valid any more", field="token") from None


def unsubscribe(ledger: Ledger, settings: Settings | None, token: str) -> Endpoint:
    """Apply an endpoint's unsubscribe link: nothing more is posted to it. Repeating it is harmless."""
    endpoint_id = links.read_endpoint_unsubscribe_token(settings, token)
    ep = EndpointStore(ledger).unsubscribe(endpoint_id)
    if ep is None:
        raise InvalidRequest("this link is not valid any more", field="token")
    return ep


# ---------------------------------------------------------------- the channel's source


class Source:
    """What ``subscriber_webhooks`` channels read and report, bound to a runtime."""

    def __init__(self, runtime: Runtime, notify: Callable[[str, str, str], None] | None = None):
        self.runtime = runtime
        self.store = EndpointStore(runtime.ledger)
        self._notify = notify

    def targets(self, lists: Sequence[str], post: Post, formats: Sequence[str]) -> list[Endpoint]:
        settings = self.runtime.settings
        facts = audience.facts_of(self.runtime.deliveries, post)  # break-glass: its twin
        if facts.kind in links.settings_of(settings).promotion_kinds:
            return []
        wanted = {c.casefold() for c in facts.components}
        out = []
        for ep in self.store.confirmed(list(dict.fromkeys(lists)), formats):
            mine = {c.casefold() for c in ep.components}
            if mine and wanted and not facts.critical and not (mine & wanted):
                continue
            out.append(ep)
        return out

    def current(self, endpoint_ids: Sequence[str]) -> dict[str, str]:
        return self.store.states(endpoint_ids)

    def secret(self, endpoint: Endpoint) -> str:
        return secret_for(self.runtime.settings, endpoint)

    def unsubscribe_url(self, endpoint: Endpoint) -> str:
        return unsubscribe_url(self.runtime.settings, endpoint)

    def succeeded(self, endpoint: Endpoint) -> None:
        self.store.succeeded(endpoint.id)

    def failed(self, endpoint: Endpoint, error: str, max_failures: int) -> None:
        disabled = self.store.failed(endpoint.id, error, max_failures=max_failures)
        if disabled is not None:
            self.tell_owner(disabled)

    def tell_owner(self, ep: Endpoint) -> None:
        """The endpoint was disabled: mail its owner (if one was given); the listing shows how it went."""
        if not ep.owner:
            self.store.set_notice(ep.id, "none")
            return
        subject = f"Announcements of {ep.list} to your endpoint have stopped"
        text = (f"Posts of the announcements of {ep.list} to your {ep.format} endpoint ({_masked(ep)}) failed "
                f"{ep.failures} times in a row, so it was disabled and gets nothing more.\n\n"
                f"The last error: {ep.last_error or 'unknown'}\n\n"
                "Once the endpoint works again, register it again (a new confirmation code will be posted to it), "
                "or ask the operator to enable it.")
        try:
            send = self._notify or confirmation.resolve_sender(self.runtime)
            send(ep.owner, subject, text)
        except Exception as exc:  # noqa: BLE001 - the disabling stands; the listing says the notice failed
            log.warning("could not tell the owner of endpoint %s: %s", ep.id, type(exc).__name__)
            self.store.set_notice(ep.id, "failed")
            return
        self.store.set_notice(ep.id, "mailed")


def _masked(ep: Endpoint) -> str:
    return ep.to_dict()["url"]


# ---------------------------------------------------------------- administrators


def list_endpoints(ledger: Ledger, *, list_name: str | None = None, state: str | None = None,
                   after: str | None = None, limit: int = 100) -> list[Endpoint]:
    if state is not None and state not in STATES:
        raise InvalidRequest(f"state: one of {', '.join(STATES)}", field="state")
    return EndpointStore(ledger).page(list_name=list_name, state=state, after=after, limit=limit)


def set_state(ledger: Ledger, endpoint_id: str, *, enabled: bool, actor: str) -> Endpoint:
    """An admin enables a disabled endpoint (its run of failures starts at 0) or disables one."""
    try:
        return EndpointStore(ledger).set_state(endpoint_id, "confirmed" if enabled else "disabled", actor=actor)
    except NotFound:
        raise NotFound("no such endpoint") from None
