"""The one-command embedded stack: noida-db (Kafka, and Redis when no redis-server is
installed), redis-server, and the directories of embedded chdb and Qdrant local mode."""

from kato_stream.embedded.broker import wait_kafka
from kato_stream.embedded.launcher import EmbeddedStack, EmbeddedStackError
from kato_stream.embedded.ports import free_port

__all__ = ["EmbeddedStack", "EmbeddedStackError", "free_port", "wait_kafka"]
