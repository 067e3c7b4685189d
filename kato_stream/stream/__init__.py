"""The Kafka stream processor: Faust app, agents, session table, shared LTM, DLQ, persistence."""
