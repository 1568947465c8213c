"""Prometheus metrics for ``GET /metrics``.

Two sources. This process counts what it sees (announcements accepted, request latency). The
delivery picture — states, backlog, retries, delivery latency, breakers — is read from the
ledger and Redis at scrape time, because workers on other machines do the delivering and the
ledger is the one place that knows it all. Every app gets its own registry, so tests and
several apps in one process never collide.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .. import parts
from ..models import DeliveryState
from ..runtime import Runtime
from ..scheduler import HEARTBEAT_KEY as SCHEDULER_HEARTBEAT

log = logging.getLogger(__name__)

BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}
#: seconds from due to delivered
LATENCY_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class ApiMetrics:
    def __init__(self, runtime: Runtime):
        self.registry = CollectorRegistry(auto_describe=True)
        self._accepted = Counter("broadcaster_announcements_accepted", "Announcements accepted by this API process",
                                 ["kind"], registry=self.registry)
        self.requests = Counter("broadcaster_api_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("broadcaster_api_request_duration_seconds", "Time to answer an HTTP request",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(LedgerCollector(runtime))
        from .metrics_features import FeatureCollector  # approvals, channel readiness

        self.registry.register(FeatureCollector(runtime))

    def accepted(self, kind: str) -> None:
        self._accepted.labels(kind).inc()


class LedgerCollector:
    """Reads the delivery picture at scrape time; a dead ledger shows as ``broadcaster_ledger_up 0``."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime

    def describe(self):
        return []

    def collect(self):
        up = GaugeMetricFamily("broadcaster_ledger_up", "1 when the ledger answered this scrape")
        try:
            families = list(self._from_ledger())
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the ledger cannot
            log.warning("metrics: ledger unavailable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        yield self._breakers()
        yield self._scheduler()
        yield from self._parts()

    def _parts(self):
        """Under ``broadcaster up``: each process it runs, up or not, and how often it was restarted."""
        running = parts.read()
        if not running:
            return
        up = GaugeMetricFamily("broadcaster_part_up", "Under `broadcaster up`: 1 when the process runs, "
                               "0 while it waits to be restarted or was left out", labels=["part"])
        restarts = CounterMetricFamily("broadcaster_part_restarts", "Under `broadcaster up`: restarts of the "
                                       "process since up began", labels=["part"])
        for name, p in sorted(running.items()):
            up.add_metric([name], 1 if p.state == parts.RUNNING else 0)
            restarts.add_metric([name], p.restarts)
        yield up
        yield restarts

    def _scheduler(self):
        fam = GaugeMetricFamily("broadcaster_scheduler_last_tick_timestamp_seconds",
                                "When a scheduler last finished a sweep (Unix time; 0 = never or unknown)")
        try:
            raw = self.rt.redis.get(SCHEDULER_HEARTBEAT) if self.rt.redis is not None else None
            fam.add_metric([], float(raw or 0))
        except Exception:  # noqa: BLE001 - no heartbeat readable counts as none
            fam.add_metric([], 0.0)
        return fam

    def _from_ledger(self):
        ledger = self.rt.ledger
        counts = ledger.count_by_state()
        states = GaugeMetricFamily("broadcaster_deliveries", "Deliveries per state (delivered, failed, unknown, ...)",
                                   labels=["state"])
        for s in DeliveryState:
            states.add_metric([s.value], counts.get(s.value, 0))
        yield states
        stats = ledger.channel_stats()
        backlog = GaugeMetricFamily("broadcaster_channel_backlog", "Deliveries pending, sending or retrying",
                                    labels=["channel"])
        oldest = GaugeMetricFamily("broadcaster_channel_oldest_due_age_seconds",
                                   "Age of the oldest due delivery still waiting", labels=["channel"])
        now = self.rt.clock()
        for name in self.rt.settings.channels:
            row = stats.get(name, {})
            backlog.add_metric([name], row.get("backlog", 0))
            due = row.get("oldest_due")
            oldest.add_metric([name], max(0.0, now - due) if due else 0.0)
        yield backlog
        yield oldest
        yield self._retries()
        yield self._latency()

    def _retries(self) -> CounterMetricFamily:
        fam = CounterMetricFamily("broadcaster_delivery_retries", "Attempts that ended in a retry", labels=["channel"])
        rows = self.rt.ledger.stats.retries_per_channel()
        for name in self.rt.settings.channels:
            fam.add_metric([name], rows.get(name, 0))
        return fam

    def _latency(self) -> HistogramMetricFamily:
        """Cumulative histogram of due → delivered per channel, straight from the ledger."""
        fam = HistogramMetricFamily("broadcaster_delivery_latency_seconds", "From due to delivered, per channel",
                                    labels=["channel"])
        for h in self.rt.ledger.stats.delivery_latency(LATENCY_BUCKETS):
            buckets = [(str(float(b)), c) for b, c in zip(LATENCY_BUCKETS, h.at_most, strict=True)]
            buckets.append(("+Inf", h.count))
            fam.add_metric([h.channel], buckets, h.total_seconds)
        return fam

    def _breakers(self):
        fam = GaugeMetricFamily("broadcaster_channel_breaker_state",
                                "Circuit breaker: 0 closed, 1 half-open, 2 open, -1 unknown", labels=["channel"])
        for name in self.rt.settings.channels:
            try:
                st = self.rt.breaker.state(name, self.rt.settings.policy_for(name).breaker.cooldown).state
                fam.add_metric([name], BREAKER_VALUE.get(st, -1))
            except Exception:  # noqa: BLE001 - an unreadable breaker shows as -1 (unknown)
                fam.add_metric([name], -1)
        return fam



class MetricsMiddleware:
    """Times every HTTP request, labelled by route template (not the raw path: bounded labels)."""

    def __init__(self, app, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            label = route_label(scope)
            method = method_label(scope.get("method", ""))
            self.metrics.latency.labels(method, label).observe(time.perf_counter() - start)
            self.metrics.requests.labels(method, label, status_label(status["code"])).inc()


#: every label value comes from a fixed set, so no client can grow the exposition: an unknown
#: method, status or path each fold into one value
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset({200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410,
                      413, 415, 422, 429, 500, 501, 502, 503, 504})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(code: object) -> str:
    """The status code when it is a common one, else its class (``4xx``), else ``other``."""
    if isinstance(code, int) and code in STATUSES:
        return str(code)
    if isinstance(code, int) and 100 <= code <= 599:
        return f"{code // 100}xx"
    return "other"


def route_label(scope) -> str:
    """The matched route's template with its prefix (``/api/v1/announcements/{ann_id}``)."""
    ctx = (scope.get("fastapi") or {}).get("effective_route_context")  # FastAPI ≥ 0.16x keeps the full path here
    path = getattr(ctx, "path", None)
    if path is None:
        path = getattr(scope.get("route"), "path", None)
    if not isinstance(path, str):
        return "static" if scope.get("path", "").startswith("/static") else "unmatched"
    return path
