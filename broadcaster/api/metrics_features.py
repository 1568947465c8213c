"""``/metrics`` families of the alert-to-announcement features, read at scrape time: posts
waiting for approval, and each channel's last readiness check (``readiness.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from ..runtime import Runtime

log = logging.getLogger(__name__)


class FeatureCollector:
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._approvals()
        except Exception as exc:  # noqa: BLE001 - a scrape must never fail
            log.warning("metrics: approvals unavailable (%s)", type(exc).__name__)
        try:
            yield from self._readiness()
        except Exception as exc:  # noqa: BLE001 - nor because of the other family
            log.warning("metrics: readiness unavailable (%s)", type(exc).__name__)

    def _approvals(self) -> Iterator[Metric]:
        from ..ledger.approvals import ApprovalStore

        store = ApprovalStore(self.rt.ledger)
        fam = GaugeMetricFamily("broadcaster_approvals_pending", "Posts waiting for a second person's approval")
        fam.add_metric([], len(store.held_ids(limit=10000)))
        yield fam
        now = time.time()
        late = [now - (h.announcement.publish_at or h.announcement.created_at) for h in store.pending(limit=200)]
        oldest = GaugeMetricFamily("broadcaster_approvals_overdue_seconds",
                                   "How long the longest-waiting post has been past its time without approval")
        oldest.add_metric([], max([x for x in late if x > 0], default=0.0))
        yield oldest

    def _readiness(self) -> Iterator[Metric]:
        try:
            from .. import readiness
        except ImportError:  # written for another part; the API works without it
            return
        yield from readiness.metric_families(self.rt)
