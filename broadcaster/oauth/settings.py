"""The ``refresh:`` section a channel of a kind with a renewal flow may carry, and its ``store:``.

One model per kind, so a missing key is reported with its exact path
(``channels.x-main.refresh.client_id: required key is missing``). The configured
``refresh_token`` (and ``access_token`` of the channel) only *seed* the store: once a renewal
has written a token set, the store is what is used — until the operator configures a different
refresh token (a new authorization), which then seeds it again.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from ..config import Duration, Secret, Strict, Url


class TokenStoreSettings(Strict):
    """Where renewed tokens are kept: ``file`` or a ``read``/``write`` command pair."""

    #: a JSON file, written atomically with mode 0600 (its directory is created 0700)
    file: str | None = None
    #: prints the stored JSON document on stdout (nothing, or exit 0 with no output: none yet);
    #: ``{channel}`` in an argument is replaced by the channel name
    read: tuple[str, ...] = ()
    #: reads the JSON document on stdin and stores it; exit 0 means stored
    write: tuple[str, ...] = ()
    #: how long either command may take
    timeout: Duration = Field(20.0, gt=0)

    @model_validator(mode="after")
    def _one_place(self) -> TokenStoreSettings:
        commands = bool(self.read) or bool(self.write)
        if self.file and commands:
            raise ValueError("give either file or read/write commands, not both")
        if not self.file and not commands:
            raise ValueError("give file (a path) or read and write (commands of a secret store)")
        if commands and not (self.read and self.write):
            raise ValueError("a command store needs both read and write")
        if self.file is not None and not self.file.strip():
            raise ValueError("file must be a path")
        return self


class RefreshSettings(Strict):
    """Fields every kind's ``refresh:`` section has."""

    store: TokenStoreSettings
    #: the first refresh credential; later ones come from the store
    refresh_token: Secret | None = None
    #: the provider's token endpoint (each kind knows its default)
    token_url: Url | None = None
    #: renew when less than this is left; default: a quarter of the token's lifetime
    margin: Duration | None = None


class XRefresh(RefreshSettings):
    """X OAuth 2.0 (Authorization Code with PKCE, scope ``offline.access``)."""

    client_id: str = Field(min_length=1)
    #: only for a confidential client (sent as HTTP Basic); a public client has none
    client_secret: Secret | None = None


class LinkedInRefresh(RefreshSettings):
    """LinkedIn programmatic refresh tokens (apps approved for them)."""

    client_id: str = Field(min_length=1)
    client_secret: Secret


class FacebookRefresh(RefreshSettings):
    """A Page token re-derived from a Page admin's user token; ``refresh_token`` is that user
    token (a short-lived one is exchanged for a long-lived one first)."""

    client_id: str = Field(min_length=1)  # the app id
    client_secret: Secret  # the app secret


class MatrixRefresh(RefreshSettings):
    """Matrix refresh tokens (client-server API v1.3+: a login with ``refresh_token: true``)."""
