"""The server's Prometheus metrics (prometheus-client), in a registry of their own per app."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # the *_created series double the exposition and no dashboard reads them

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ServeMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    batch_size: Histogram
    batch_seconds: Histogram
    texts: Counter
    abstentions: Counter
    errors: Counter
    model_version: Gauge
    swaps: Counter
    in_flight: Gauge

    @classmethod
    def create(cls) -> ServeMetrics:
        r = CollectorRegistry()
        by_endpoint = ["endpoint", "status"]
        return cls(
            registry=r,
            requests=Counter("keepfit_requests", "HTTP requests by endpoint and status", by_endpoint, registry=r),
            latency=Histogram(
                "keepfit_request_latency_seconds", "Request latency by endpoint", ["endpoint"],
                buckets=_LATENCY_BUCKETS, registry=r,
            ),
            batch_size=Histogram("keepfit_batch_size", "Texts per forward pass", buckets=_BATCH_BUCKETS, registry=r),
            batch_seconds=Histogram(
                "keepfit_batch_seconds", "Seconds per forward pass and log write", buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            texts=Counter("keepfit_texts", "Texts answered, by model version", ["version"], registry=r),
            abstentions=Counter("keepfit_abstentions", "Texts the model abstained on", ["version"], registry=r),
            errors=Counter(
                "keepfit_errors", "Errors by kind (bad_request, not_ready, load, internal)", ["kind"], registry=r
            ),
            model_version=Gauge("keepfit_model_version", "The registry version serving now", registry=r),
            swaps=Counter("keepfit_model_swaps", "Hot swaps to another version", registry=r),
            in_flight=Gauge("keepfit_in_flight_requests", "Requests queued or being answered", registry=r),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
