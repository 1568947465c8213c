"""Every status site written again now — after a key is revoked, readers must not wait for the
next announcement to learn it.

Its own module because it sits above both halves it joins: the status-site channel
(:mod:`broadcaster.channels.statuspage`) publishes the trust files :mod:`broadcaster.official`
builds, and ``official`` knows nothing of the channel.
"""

from __future__ import annotations

from .channels.statuspage import Statuspage
from .config import Settings
from .official import site_files


def republish(settings: Settings) -> list[str]:
    """Write every enabled status site again — pages, key list, signature files — and copy it to
    its mirrors; the names of the sites written. Raises the channel's DeliveryError when a site
    or a mirror cannot be written."""
    done = []
    for name, ch in settings.channels.items():
        if getattr(ch, "kind", None) != "statuspage" or not ch.enabled:
            continue
        site = Statuspage(name, ch, trust_files=lambda state: site_files(settings, state))
        with site.locked() as state:
            site.save_and_publish(state)
        done.append(name)
    return done
