"""The pure KATO engine: no Kafka, Faust, database or network imports; deterministic."""
