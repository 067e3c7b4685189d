"""kato-stream: KATO's explainable sequence-pattern engine as a Kafka-native stream processor."""

__version__ = "0.1.0"
