"""An update whose thread is gone: the post it replies to was deleted on the network (by hand,
by a moderator), so the provider refuses the reply with 404. The update still matters more than
the thread — it is posted on its own, and the delivery's events say so.

Only the first part of an update replies to the earlier thread; later parts reply to parts we
just posted. A 404 means nothing was created, so posting again without the reply is safe; each
adapter keeps its own key rule for that second request (Mastodon: a key of its own; Bluesky: the
same record key, which an earlier attempt's record would hold).
"""

from __future__ import annotations

from ..errors import DeliveryError, PermanentError

#: ``Receipt.extra`` key: why the post went out unthreaded (the engine adds it to the event)
UNTHREADED = "unthreaded"


def parent_gone(exc: DeliveryError) -> bool:
    """The provider refused the reply because its target does not exist (any more)."""
    return isinstance(exc, PermanentError) and exc.status == 404


def note(channel: str, parent: str) -> str:
    return (f"the post it replies to ({parent}) is gone on {channel} (HTTP 404): "
            "posted on its own, without the thread")
