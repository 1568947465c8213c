"""SMS through Twilio's Messages API: one ``POST …/Messages.json`` per recipient and part.

Twilio offers no idempotency key and no way to find a message by anything we chose, and a text
message cannot be taken back. So a request that may have reached Twilio (a timeout after
sending) is never repeated: that recipient is left uncertain, the others still get theirs, and
the attempt then raises ``AmbiguousDelivery`` — which, on a channel that is ``public`` (here:
"must never reach anyone twice") and neither idempotent nor able to look up, ends the delivery
``unknown``. Each recipient-and-part pair is a progress item, so a retry after a rate limit or a
server error continues where the last attempt stopped and never re-sends one that landed.

STOP: Twilio answers error 21610 for a number that replied STOP. That is a permanent refusal
for that recipient only, and it opts the number out in the injected opt-out store (the ledger's
``sms_opt_outs`` in a running system), so no later delivery on any SMS channel messages it.

Length: texts are fitted to ``max_segments`` billed messages (GSM-7 160/153 septets, UCS-2
70/67 code units; see ``_sms``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, model_validator

from ..config import ChannelSettings, Secret, Url
from ..errors import (
    AmbiguousDelivery,
    AuthError,
    ContentRejected,
    DeliveryError,
    PermanentError,
    RateLimited,
    RecipientsRefused,
    TransientError,
)
from ..models import Post, Receipt
from . import _http, _sms
from .base import Channel, Progress
from .ports import OptOuts
from .registry import register

log = logging.getLogger(__name__)

E164 = r"^\+[1-9][0-9]{6,14}$"
#: Twilio error codes that refuse one recipient (the number), not the channel
RECIPIENT_CODES = {
    21211: "invalid 'To' number",
    21214: "'To' number cannot be reached",
    21217: "'To' number does not appear valid",
    21265: "'To' number cannot be a short code",
    21408: "sending to this region is not enabled on the account",
    21612: "cannot route to this number",
    21614: "'To' number is not a mobile number",
    21635: "'To' number is a landline",
}
UNSUBSCRIBED = 21610  # the recipient replied STOP


class MemoryOptOuts:
    """In-process opt-outs for tests and tools without a ledger."""

    def __init__(self) -> None:
        self.numbers: dict[str, str] = {}
        self._lock = threading.Lock()

    def opted_out(self, numbers: Iterable[str]) -> set[str]:
        with self._lock:
            return {n for n in numbers if n in self.numbers}

    def opt_out(self, number: str, *, channel: str, reason: str) -> None:
        with self._lock:
            self.numbers.setdefault(number, reason)


class TwilioSmsSettings(ChannelSettings):
    kind: Literal["twilio_sms"] = "twilio_sms"
    base_url: Url = "https://api.twilio.com"
    account_sid: str = Field(pattern=r"^AC[0-9A-Za-z]{8,64}$")
    auth_token: Secret
    #: the sending number (E.164) — or a Messaging Service, which picks the sender itself
    from_number: str | None = Field(None, pattern=E164)
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9A-Za-z]{8,64}$")
    recipients: list[str] = Field(min_length=1)
    #: fit each text into this many billed messages (then thread or truncate per ``on_too_long``)
    max_segments: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _sender_and_numbers(self) -> TwilioSmsSettings:
        import re

        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("set exactly one of from_number and messaging_service_sid")
        bad = [n for n in self.recipients if not re.match(E164, n)]
        if bad:
            raise ValueError(f"recipients must be E.164 numbers like +15551234567 (not {bad[0]!r})")
        if len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients lists a number twice")
        return self


# ---------------------------------------------------------------- pure request/response shaping


def message_form(to: str, text: str, *, sender: str | None, service: str | None) -> dict[str, str]:
    form = {"To": to, "Body": text}
    if service:
        form["MessagingServiceSid"] = service
    elif sender:
        form["From"] = sender
    return form


class Refused(Exception):
    """One recipient refused (internal to this module: never leaves ``send``)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def classify(response: Any, what: str) -> None:
    """Twilio errors are ``{"code", "message", "more_info", "status"}``. Raises :class:`Refused`
    for a refusal of the recipient, a ``DeliveryError`` for the channel."""
    status = response.status_code
    if 200 <= status < 300:
        return
    found = _http.json_or_none(response)
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    code = data.get("code") if isinstance(data.get("code"), int) else None
    message = str(data.get("message") or "")
    excerpt = _http.short(response)
    if code == UNSUBSCRIBED:
        raise Refused(UNSUBSCRIBED, "the recipient replied STOP (unsubscribed); opted out")
    if code in RECIPIENT_CODES:
        raise Refused(code, f"{RECIPIENT_CODES[code]} (Twilio {code})")
    if status == 429 or code == 20429:
        wait = _http.parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(f"{what}: rate limited (Twilio {code or 429})", retry_after=wait, response=excerpt,
                          status=status)
    if status in (401, 403) or code == 20003:
        raise AuthError(f"{what}: account SID or auth token refused (Twilio {code or status})", response=excerpt,
                        status=status)
    if code == 21617:
        raise ContentRejected(f"{what}: body longer than Twilio's 1600 characters", response=excerpt, status=status)
    if status >= 500 or status in (408, 425):
        raise TransientError(f"{what}: provider error (HTTP {status})", response=excerpt, status=status)
    raise PermanentError(f"{what}: request refused (Twilio {code or status}: {message})", response=excerpt,
                         status=status)


def parse_message(response: Any, what: str) -> str:
    data = _http.json_or_none(response)
    if not isinstance(data, dict) or not data.get("sid"):
        raise AmbiguousDelivery(f"{what}: success status without a message sid", response=_http.short(response))
    return str(data["sid"])


def item(number: str, part: int) -> str:
    return f"sms:{number}:{part}"


@register
class TwilioSms(Channel[TwilioSmsSettings]):
    kind = "twilio_sms"
    Settings = TwilioSmsSettings
    idempotent = False
    can_lookup = False
    can_retract = False  # a text message cannot be taken back
    #: not a public feed, but a phone must never get the same text twice: ambiguous ends ``unknown``
    public = True

    @property
    def max_length(self) -> int:  # type: ignore[override]
        return self.settings.max_segments

    def count(self, text: str) -> int:
        return _sms.segment_count(text)

    @property
    def opt_outs(self) -> OptOuts:
        if self.opt_out_store is None:  # no ledger (tests, tools): remember for this process only
            self.opt_out_store = MemoryOptOuts()
        return self.opt_out_store

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url.rstrip('/')}/2010-04-01/Accounts/{self.settings.account_sid}{path}"

    def _auth(self) -> tuple[str, str]:
        return self.settings.account_sid, self.settings.auth_token.reveal()

    # -- one pass over recipients and parts

    def send(self, post: Post, *, key: str, progress: Progress | None = None) -> Receipt:
        parts = post.parts or (post.text,)
        recipients = list(self.settings.recipients)
        states = progress.states() if progress is not None else {}
        opted = self.opt_outs.opted_out(recipients)
        sids: list[str] = []
        refused: dict[str, str] = {}
        uncertain: list[str] = []
        first_doubt = ""

        def mark(it: str, state: str, detail: str | None = None) -> None:
            if progress is not None:
                progress.mark([it], state, detail)

        for i, text in enumerate(parts):
            for number in recipients:
                it = item(number, i)
                state, detail = states.get(it, ("", None))
                if state == "done":
                    sids.append(detail or "")
                    continue
                if state == "refused":
                    refused[number] = detail or "refused"
                    continue
                if state == "sending":  # an earlier attempt may have sent it: never again
                    uncertain.append(number)
                    continue
                if number in opted or number in refused:
                    reason = refused.get(number) or "opted out (replied STOP)"
                    refused[number] = reason
                    mark(it, "refused", reason)
                    continue
                mark(it, "sending")
                what = f"{self.name} (to …{number[-4:]}, part {i + 1}/{len(parts)})"
                try:
                    sid = self._create(number, text, what)
                except Refused as exc:
                    refused[number] = exc.reason
                    mark(it, "refused", exc.reason)
                    if exc.code == UNSUBSCRIBED:
                        self._remember_opt_out(number, exc.reason)
                        opted.add(number)
                    continue
                except AmbiguousDelivery as exc:
                    uncertain.append(number)  # stays "sending"
                    first_doubt = first_doubt or str(exc)
                    continue
                except DeliveryError:
                    mark(it, "failed")  # the answer says it was not sent: a retry may send it
                    raise
                mark(it, "done", sid)
                sids.append(sid)
        counts = f"{len(sids)} sent, {len(refused)} refused, {len(uncertain)} uncertain"
        if uncertain:
            raise AmbiguousDelivery(f"{self.name}: {len(uncertain)} message(s) may have been sent and are not re-sent "
                                    f"(SMS has no idempotency); {counts}" + (f"; {first_doubt}" if first_doubt else ""))
        if not sids and refused:
            raise RecipientsRefused(f"{self.name}: every recipient was refused ({len(refused)})", refused=refused)
        return Receipt(remote_id=sids[0] if sids else None,
                       extra={"sent": len(sids), "refused": len(refused), "segments": [self.count(p) for p in parts]})

    def _remember_opt_out(self, number: str, reason: str) -> None:
        """Record a STOP. If the store cannot be written now (ledger down), the attempt goes on:
        this number's item is already ``refused``, and Twilio keeps refusing it until START."""
        try:
            self.opt_outs.opt_out(number, channel=self.name, reason=reason)
        except Exception as exc:  # noqa: BLE001 - any failure: never turn a delivered batch into "maybe sent"
            log.warning("%s: could not record the opt-out of …%s (%s); Twilio still refuses it", self.name,
                        number[-4:], type(exc).__name__)

    def _create(self, number: str, text: str, what: str) -> str:
        form = message_form(number, text, sender=self.settings.from_number, service=self.settings.messaging_service_sid)
        resp = _http.request(self.http, "POST", self._url("/Messages.json"), data=form, auth=self._auth(), what=what)
        classify(resp, what)
        return parse_message(resp, what)

    # -- the rest of the contract

    def check(self) -> str:
        what = f"{self.name} (account)"
        resp = _http.request(self.http, "GET", self._url(".json"), auth=self._auth(), what=what)
        try:
            classify(resp, what)
        except Refused as exc:  # not expected on this endpoint
            raise PermanentError(f"{what}: {exc.reason}") from None
        data = _http.json_or_none(resp) or {}
        return (f"account {data.get('friendly_name') or self.settings.account_sid} ({data.get('status') or '?'}), "
                f"{len(self.settings.recipients)} recipient(s)")
