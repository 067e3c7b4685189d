"""In-process request counters behind KATO's JSON ``/metrics`` (Prometheus has the real ones)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GatewayStats:
    requests: int = 0
    errors: int = 0
    total_seconds: float = 0.0
    sessions_created: int = 0
    sessions_deleted: int = 0
    session_operations: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0

    def start(self) -> None:
        """Middleware hook: a request began (``record`` ends it)."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Middleware hook: one finished request."""
        self.in_flight = max(0, self.in_flight - 1)
        self.requests += 1
        self.total_seconds += seconds
        if status >= 500:
            self.errors += 1
        if route.startswith("/sessions"):
            self.session_operations += 1
            if status == 200 and route == "/sessions" and method == "POST":
                self.sessions_created += 1
            elif status == 200 and method == "DELETE":
                self.sessions_deleted += 1

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def average_seconds(self) -> float:
        return self.total_seconds / self.requests if self.requests else 0.0
