"""aiosmtpd handlers that offer PIPELINING (RFC 2920), as Postfix and most relays do: aiosmtpd
reads pipelined commands one after another either way, but does not list the extension, and the
email channel pipelines only when the server lists it."""

from __future__ import annotations


class OffersPipelining:
    """Mix into an aiosmtpd handler; ``pipelining = False`` on an instance leaves EHLO as it was."""

    pipelining = True

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # what aiosmtpd does itself when no handler hook answers EHLO
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]
