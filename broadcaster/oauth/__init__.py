"""OAuth token refresh: keep a channel's access token valid without a person in the loop.

Where a provider hands out a way to renew the credential — X's OAuth 2.0 refresh tokens (which
rotate), LinkedIn's programmatic refresh tokens, a Facebook Page token re-derived from a
long-lived user token, Matrix refresh tokens (which rotate) — a channel configured with a
``refresh:`` section gets one :class:`~.credential.Credential` per process. It hands the adapter
the token to use, renews it ahead of expiry (``refresh.margin``), on the scheduler's schedule
(:mod:`.hook`) and after the provider refused a token as expired, and keeps the result where the
operator chose (:mod:`.store`: a 0600 file written atomically, or a secret-store command) —
never in the ledger, and never in a log line, repr or error.

Two processes never renew one credential at once (:mod:`.lock`: a Redis lock), and a new token
set is written to the store before anything uses it, so a refresh token that rotates is never
lost to a crash after the provider issued its successor.

    settings.py    the ``refresh:`` section of each kind, and its ``store:``
    tokens.py      TokenSet: what a renewal yields (masked repr), its JSON form
    store.py       where token sets live: file, command, memory twin
    lock.py        one renewal at a time: Redis lock, in-process twin
    providers.py   each provider's token endpoint: request shapes, answers, refusals
    credential.py  Credential: current token, renew when due or refused, write before use
    hook.py        the scheduler hook that renews ahead of expiry
"""
