"""The ledger's tables (SQLAlchemy Core). The same schema runs on SQLite and PostgreSQL.

Times are epoch seconds (double precision): cheap to compare in SQL on both engines and free
of time-zone ambiguity. JSON columns hold small lists and maps only.

``deliveries.once_key`` carries the at-most-once promise: one delivery per (announcement or
update, channel), enforced by a UNIQUE index rather than by every caller remembering to check.
It is one non-null column because a NULL ``update_id`` would make a plain multi-column UNIQUE
useless (NULLs never collide in SQLite or PostgreSQL).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine.default import DefaultExecutionContext

from .ports import once_key as once_key  # the key's one definition: the memory twin uses it too

metadata = MetaData()


def _once_key_default(context: DefaultExecutionContext) -> str:
    """Filled in for any insert that does not give it (an import, a future code path), so no
    insert can slip past the unique index."""
    row = context.get_current_parameters()
    return once_key(row["announcement_id"], row.get("update_id"), row["channel"])


announcements = Table(
    "announcements",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False, default=""),
    Column("url", Text),
    Column("severity", String(20)),
    Column("components", JSON, nullable=False, default=list),
    Column("tags", JSON, nullable=False, default=list),
    Column("channels", JSON, nullable=False, default=list),
    Column("variants", JSON, nullable=False, default=dict),
    Column("status", String(20)),
    Column("publish_at", Float),
    Column("window_starts_at", Float),
    Column("window_ends_at", Float),
    Column("author", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("retracted_at", Float),
    Column("resolved_at", Float),
    # the channels its author's token was limited to (NULL: no limit): fallbacks stay inside them
    Column("allowed_channels", JSON),
    # component → state chosen by the author (NULL: every component follows the severity)
    Column("component_states", JSON),
    # an incident's promised "next update by" (NULL: none promised); the scheduler reminds once
    # it passes, and records in next_update_reminded which promise it reminded of
    Column("next_update_at", Float),
    Column("next_update_reminded", Float),
    Index("ix_announcements_created", "created_at"),
    Index("ix_announcements_next_update", "next_update_at"),
    Index("ix_announcements_kind_status", "kind", "status"),
)

updates = Table(
    "updates",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("announcement_id", String(40), ForeignKey("announcements.id"), nullable=False),
    Column("status", String(20), nullable=False),
    Column("title", Text),
    Column("body", Text, nullable=False, default=""),
    Column("author", String(200)),
    Column("created_at", Float, nullable=False),
    # component → state this update set (NULL: it changed no component's state)
    Column("component_states", JSON),
    Index("ix_updates_announcement", "announcement_id", "created_at"),
)

#: the claimable states as SQL literals: the partial index below and the claims that use it
#: must say it the same way (a bound parameter would not let the planner match the index)
CLAIMABLE_SQL = "state IN ('pending', 'retrying')"

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("announcement_id", String(40), ForeignKey("announcements.id"), nullable=False),
    Column("update_id", String(40), ForeignKey("updates.id")),
    Column("channel", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due_at", Float),
    Column("deadline_at", Float),
    Column("lease_until", Float),
    Column("lease_owner", String(80)),
    # a batch claim's owner until that delivery's send starts (``claims.py``): while it equals
    # ``lease_owner`` the row is leased but nothing of it was sent, and an expired lease gives it
    # back as never attempted. NULL (a single claim, or the send began): the attempt may have gone
    Column("unstarted_by", String(80)),
    Column("enqueued_at", Float),
    Column("maybe_sent", Boolean, nullable=False, default=False),
    Column("remote_id", Text),
    Column("remote_url", Text),
    Column("receipt", JSON),
    Column("last_error", Text),
    Column("fallback_of", String(40)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("settled_at", Float),
    Column("once_key", String(200), nullable=False, default=_once_key_default),
    Index("ix_deliveries_due", "state", "due_at"),
    Index("ix_deliveries_announcement", "announcement_id"),
    Index("ix_deliveries_channel_state", "channel", "state"),
    Index("ux_deliveries_once", "once_key", unique=True),
    # what a drain claims, in the order it claims it: a claim reads only the batch it takes,
    # however long the channel's backlog (``claims.py`` names the states as literals to match)
    Index("ix_deliveries_claimable", "channel", "due_at", "id",
          sqlite_where=text(CLAIMABLE_SQL), postgresql_where=text(CLAIMABLE_SQL)),
)

delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), ForeignKey("deliveries.id"), nullable=False),
    Column("at", Float, nullable=False),
    Column("from_state", String(16)),
    Column("to_state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=False, default=""),
    Column("response", Text),
    Index("ix_delivery_events_delivery", "delivery_id", "id"),
    Index("ix_delivery_events_at", "at"),
)

delivery_items = Table(
    "delivery_items",
    metadata,
    Column("delivery_id", String(40), ForeignKey("deliveries.id"), primary_key=True),
    Column("item", String(320), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("detail", Text),
    Column("at", Float, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("target_id", String(40)),
    Column("response", JSON),
    Column("created_at", Float, nullable=False),
    Index("ix_idempotency_created", "created_at"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("hash", String(100), nullable=False, unique=True),
    Column("kinds", JSON, nullable=False, default=list),
    Column("channels", JSON, nullable=False, default=list),
    Column("admin", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(80)),
    Column("details", JSON),
    Index("ix_audit_at", "at"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("list", String(100), nullable=False),
    Column("address", String(320), nullable=False),
    Column("name", Text),
    Column("components", JSON, nullable=False, default=list),
    Column("state", String(16), nullable=False),  # pending | confirmed | opted_out | unsubscribed | bounced
    Column("marketing", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("confirmed_at", Float),
    Column("unsubscribed_at", Float),
    Column("requested_at", Float),  # when the current (pending) request began; its links sign it
    Column("confirm_sent_at", Float),  # the last confirmation mail: one per address per interval
    Index("ux_subscribers_list_address", "list", "address", unique=True),
    Index("ix_subscribers_address", "address"),
)

#: webhooks subscribers brought (Slack, Teams Workflows, Discord, signed generic): see
#: ``ledger/endpoints.py``. ``url`` is a credential (a chat webhook URL posts as its owner).
subscriber_endpoints = Table(
    "subscriber_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("list", String(100), nullable=False),
    Column("format", String(16), nullable=False),  # slack | teams_workflow | discord | generic
    Column("url", Text, nullable=False),
    Column("url_key", String(64), nullable=False),  # sha256 of the URL: one row per (list, URL)
    Column("owner", String(320)),  # an address told when the endpoint is disabled (optional)
    Column("components", JSON, nullable=False, default=list),
    Column("state", String(16), nullable=False),  # pending | confirmed | disabled | unsubscribed
    Column("code_hash", String(64)),  # sha256 of the challenge code in flight (pending only)
    Column("created_at", Float, nullable=False),
    Column("requested_at", Float, nullable=False),  # the current request; the signing secret derives from it
    Column("challenge_sent_at", Float),
    Column("confirmed_at", Float),
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed posts
    Column("last_error", Text),
    Column("disabled_at", Float),
    Column("notice", String(16)),  # how the owner heard of the disabling: mailed | failed | none
    Index("ux_subscriber_endpoints_list_url", "list", "url_key", unique=True),
    Index("ix_subscriber_endpoints_list_state", "list", "state"),
)

#: numbers that replied STOP to an SMS channel (see ``ledger/opt_outs.py``)
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("number", String(32), primary_key=True),  # E.164, as configured
    Column("channel", String(100), nullable=False),  # the channel that learnt it
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False),
)

alert_drafts = Table(
    "alert_drafts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("receiver", String(64), nullable=False),
    Column("source", String(20), nullable=False),
    Column("group_key", String(64), nullable=False),  # sha256 of the sender's group key
    #: the group key while the group is live (draft, published, or just resolved): a UNIQUE index on
    #: it keeps one draft per alert group; NULL once the group is over (NULLs never collide)
    Column("open_key", String(140)),
    Column("state", String(16), nullable=False),  # draft | published | expired | discarded | closed
    Column("mode", String(10), nullable=False),  # draft | publish (the rule's choice)
    Column("firing", Boolean, nullable=False, default=True),
    Column("flaps", Integer, nullable=False, default=0),
    Column("fields", JSON, nullable=False),  # the announcement it proposes (kind, title, body, ...)
    Column("resolve_body", Text, nullable=False, default=""),
    Column("resolve_proposed", Boolean, nullable=False, default=False),
    Column("alert", JSON, nullable=False),  # the latest source alert (for the reviewer)
    Column("seen", JSON, nullable=False, default=list),  # recent sender event ids (replays)
    Column("announcement_id", String(40)),
    Column("resolve_update_id", String(40)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("published_by", String(200)),
    Index("ux_alert_drafts_open", "open_key", unique=True),
    Index("ix_alert_drafts_state", "state", "updated_at"),
)

web_sessions = Table(  # see ledger/sessions.py
    "web_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("secret_hash", String(80), nullable=False),  # sha256 of the browser's secret; never the secret
    Column("token_name", String(200), nullable=False),  # the API token it was exchanged for
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # absolute end
    Column("revoked_at", Float),  # sign-out, or its token was revoked
    Index("ux_web_sessions_secret", "secret_hash", unique=True),
    Index("ix_web_sessions_token", "token_name"),
)

#: the last readiness check of each channel (``ledger/readiness.py``)
channel_readiness = Table(
    "channel_readiness",
    metadata,
    Column("channel", String(100), primary_key=True),
    Column("ready", Boolean, nullable=False),
    Column("detail", Text, nullable=False, default=""),  # redacted: never a credential
    Column("checked_at", Float, nullable=False),
    Column("since", Float, nullable=False),  # when it last changed between ready and not ready
    Column("expires_at", Float),  # the credential's expiry, when known
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)
