"""Prometheus metrics of the endpoint (GET /metrics), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("hyperrec_recommend_requests", "Recommend requests by serving path", ["served_by"], registry=self.registry)
        self.degraded = Counter(
            "hyperrec_recommend_degraded", "Recommend answers that fell back from the current model", registry=self.registry
        )
        self.latency = Histogram(
            "hyperrec_recommend_latency_seconds", "Recommend latency inside the ingress", buckets=LATENCY_BUCKETS_S, registry=self.registry
        )
        self.events = Counter("hyperrec_events", "Events received", ["outcome"], registry=self.registry)
        self.bad_requests = Counter("hyperrec_bad_requests", "Requests rejected with a 4xx", ["path"], registry=self.registry)
        # Monitors (hyperrec/serve/monitors.py)
        self.event_lag = Histogram(
            "hyperrec_event_lag_seconds", "Arrival time minus event time of accepted events", buckets=LAG_BUCKETS_S, registry=self.registry
        )
        self.unknown_item_events = Counter(
            "hyperrec_unknown_item_events", "Accepted events about items the served version does not know", registry=self.registry
        )
        drift = "of the served ranker's live candidates against the bundle's reference"
        self.drift_psi = Gauge("hyperrec_drift_psi", f"PSI {drift}", ["version", "column"], registry=self.registry)
        self.drift_ks = Gauge("hyperrec_drift_ks", f"Kolmogorov-Smirnov statistic {drift}", ["version", "column"], registry=self.registry)
        self.degraded_share = Gauge(
            "hyperrec_degraded_share", "Share of the version's last answers not served by its ranker", ["version"], registry=self.registry
        )
        self.online_exposures = Gauge(
            "hyperrec_online_exposures",
            "Answers of the version in its online-quality window (old enough to count)",
            ["version"],
            registry=self.registry,
        )
        self.online_ctr = Gauge(
            "hyperrec_online_ctr",
            "Share of the version's recent answers with a click or add-to-cart on a shown item",
            ["version"],
            registry=self.registry,
        )
        self.online_conversion = Gauge(
            "hyperrec_online_conversion",
            "Share of the version's recent answers with a purchase of a shown item",
            ["version"],
            registry=self.registry,
        )
        self.canary_outcomes = Counter(
            "hyperrec_canary_outcomes", "Canaries ended by the monitors", ["version", "outcome"], registry=self.registry
        )
        self.rollbacks = Counter(
            "hyperrec_rollbacks", "Automatic rollbacks to the last-good version", ["from_version"], registry=self.registry
        )
        self.audit_dropped = Counter(
            "hyperrec_audit_dropped", "Decision records not written to the audit log (queue full, disk error)", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
