"""Prometheus metrics of one app (its own collector registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """Requests, latency, patients scored, requests refused, audit rows written (and how many per group commit)
    and vital-sign alerts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("precimed_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("precimed_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.predictions = Counter("precimed_patients_scored_total", "patients scored", ["model", "version", "kind"],
                                   registry=self.registry)
        self.rejected = Counter("precimed_requests_rejected_total", "requests refused", ["reason"],
                                registry=self.registry)
        self.audit_rows = Counter("precimed_audit_records_total", "audit rows written by this process",
                                  registry=self.registry)
        self.commit_batch = Histogram("precimed_audit_commit_batch_units", "audited writes committed together in "
                                      "one transaction by the group-commit writer", registry=self.registry,
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.alerts = Counter("precimed_vitals_alerts_total", "early-warning events raised", ["event"],
                              registry=self.registry)
