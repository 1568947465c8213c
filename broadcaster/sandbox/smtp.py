"""SMTP sink (aiosmtpd) recording into the shared state as provider ``smtp``.

Faults with a ``recipient`` answer that address's RCPT (``4xx`` → 450, ``5xx`` → 550, or
``status``), so a mailing can be partly accepted. Faults without one are taken once per
transaction at MAIL: ``down`` → 421, ``429`` → 451 4.7.1, ``bad_token`` → 530, ``4xx``/``5xx``
answer DATA (451/554), ``slow`` delays DATA, ``accept_then_drop`` stores the message and
closes the connection before the final reply — the e-mail ambiguous case.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from .faults import Fault
from .state import SandboxState

NAME = "smtp"


def _reply(fault: Fault, default: int, text: str) -> str:
    return f"{fault.status or default} {text}"


def _readable(msg: email.message.EmailMessage) -> str:
    """Subject and plain-text part: what a reader sees, the same for every copy of one mail
    (the MIME boundaries and Date of two copies differ)."""
    body = ""
    try:
        part = msg.get_body(preferencelist=("plain",))
        if part is not None:
            body = str(part.get_content())
    except (LookupError, ValueError):
        body = ""
    return f"{msg.get('Subject') or ''}\n{body}"


class SinkHandler:
    def __init__(self, state: SandboxState):
        self.state = state

    def _log(self, verb: str, target: str, status: int, body: bytes = b"", headers=(),
             outcome: str | None = None) -> None:
        rec = self.state.record(NAME, verb, target, "", headers, body)
        rec["status"], rec["outcome"] = status, outcome

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        faults = self.state.faults.take(NAME, "MAIL", create=True)
        envelope.sandbox_faults = faults
        envelope.sandbox_refused = {}
        for fault in faults:
            answer = {
                "down": "421 4.3.2 Service not available, closing transmission channel",
                "429": "451 4.7.1 Rate limited, try again later",
                "bad_token": "530 5.7.0 Authentication required",
                "revoked_token": "530 5.7.0 Authentication required",
            }.get(fault.mode)
            if answer:
                self._log("MAIL", address, int(answer[:3]), outcome=f"fault:{fault.mode}")
                return answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for fault in self.state.faults.take(NAME, "RCPT", recipient=address):
            if fault.mode == "slow":
                await asyncio.sleep(fault.seconds or 0)
                continue
            if fault.mode == "5xx":
                answer = _reply(fault, 550, "5.1.1 Mailbox unavailable")
            else:
                answer = _reply(fault, 450, "4.2.1 Mailbox busy, try again later")
            envelope.sandbox_refused[address] = answer
            self._log("RCPT", address, int(answer[:3]), outcome=f"fault:{fault.mode}")
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        faults = getattr(envelope, "sandbox_faults", [])
        for fault in faults:
            if fault.mode == "slow":
                await asyncio.sleep(fault.seconds or 0)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        headers = [(k, str(v)) for k, v in msg.items()]
        for fault in faults:
            if fault.mode in ("4xx", "5xx"):
                answer = _reply(fault, 554 if fault.mode == "5xx" else 451, "Transaction failed (sandbox fault)")
                self._log("DATA", ",".join(envelope.rcpt_tos), int(answer[:3]), envelope.content, headers,
                          f"fault:{fault.mode}")
                return answer
        message_id = str(msg.get("Message-ID") or f"<sandbox-{self.state.next_id()}@sandbox>")
        drop = any(f.mode == "accept_then_drop" for f in faults)
        self._log("DATA", ",".join(envelope.rcpt_tos), 250, envelope.content, headers,
                  "accepted_then_dropped" if drop else None)
        self.state.add_post(NAME, id=message_id, text=str(msg.get("Subject") or ""), key=message_id,
                            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                            refused=dict(getattr(envelope, "sandbox_refused", {})), headers=dict(headers),
                            content_text=_readable(msg),
                            body=(envelope.content or b"").decode("utf-8", "replace")[:64_000])
        if drop and server.transport is not None:
            server.transport.close()
            await asyncio.sleep(0.05)  # aiosmtpd cancels this handler on connection_lost
        return "250 2.0.0 Message accepted for delivery"


class SmtpSink:
    """The aiosmtpd controller; AUTH is offered without TLS and accepts any credentials
    unless a ``bad_token`` fault is active."""

    def __init__(self, state: SandboxState, host: str = "127.0.0.1", port: int = 8025):
        self.state, self.host, self.port = state, host, port
        self.controller: Controller | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data: Any) -> AuthResult:
        faults = self.state.faults.take(NAME, "AUTH", modes={"bad_token", "revoked_token"})
        return AuthResult(success=not any(f.mode in ("bad_token", "revoked_token") for f in faults))

    def start(self) -> SmtpSink:
        self.controller = Controller(SinkHandler(self.state), hostname=self.host, port=self.port,
                                     authenticator=self._authenticate, auth_require_tls=False, auth_required=False)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
