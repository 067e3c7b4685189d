"""Operator tools that talk to Kafka directly: archive, replay (backfill) and the load generator.

They depend on aiokafka and orjson only (not on Faust or the stores), so they run against any
broker, including a production cluster, from a laptop.
"""
