"""KATO-compatible REST gateway: KATO's HTTP API in front of the stream processor."""
