"""KATO-LM's levels as a node chain in the stream: learn real text at 4 scales, then unravel.

Level 0 learns chunks of ``--chunk`` tokens (15, as KATO-LM); each learned pattern's name goes
up (``forward_to``) as an observe of level 1, which learns sequences of ``--chunk`` level-0
names, and so on up to level 3.  The worker does the forwarding: this script only publishes
the opens and the tokens to ``kato.observations``, then reads the answers on
``kato.predictions`` and asks the worker to ``unravel`` a top-level pattern back into words.

The corpus defaults to the license texts Debian's ``base-files`` package ships
(``/usr/share/common-licenses``, about 260 KB of English prose); any text files will do.

With ``./run.sh dev`` running in another terminal::

    .venv/bin/python examples/hierarchy.py --limit 20000

docs/hierarchy.md explains the chain; benchmarks/bench_hierarchy.py measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kato_stream.core.hierarchy import level_session_id  # noqa: E402
from kato_stream.kafka import client_options  # noqa: E402
from kato_stream.settings import Settings  # noqa: E402

DEFAULT_CORPUS = Path("/usr/share/common-licenses")
_WORD = re.compile(r"[a-z0-9']+")


def corpus_files(paths: Iterable[Path]) -> list[Path]:
    """Regular files under ``paths`` (symlinks to files already listed are skipped)."""
    out: list[Path] = []
    for p in paths:
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        out += [f for f in files if f.is_file() and not f.is_symlink()]
    return out


def tokens(path: Path) -> Iterator[str]:
    """Lower-case words of a text file, in order."""
    yield from _WORD.findall(path.read_text(encoding="utf-8", errors="replace").lower())


def envelope(op: str, session: str, node: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps({"op": op, "session_id": session, "node_id": node, "payload": payload})


def chain_opens(
    doc: str, nodes: list[str], chunk: int, predictions: bool = False
) -> list[tuple[bytes, bytes]]:
    """``open`` of the document's session on every level: ``max_pattern_length`` = ``chunk``,
    ``forward_to`` the next level (the top level forwards nowhere).  Training needs no
    predictions: without ``predictions``, ``process_predictions: false`` (a KATO config key)
    skips them, several times faster."""
    out = []
    sid = doc
    for i, node in enumerate(nodes):
        config: dict[str, Any] = {"max_pattern_length": chunk}
        if not predictions:
            config["process_predictions"] = False
        if i + 1 < len(nodes):
            config["forward_to"] = nodes[i + 1]
        out.append((sid.encode(), envelope("open", sid, node, {"config": config})))
        if i + 1 < len(nodes):
            sid = level_session_id(sid, nodes[i + 1])
    return out


def observes(doc: str, node: str, words: Iterable[str]) -> Iterator[tuple[bytes, bytes]]:
    for w in words:
        yield doc.encode(), envelope("observe", doc, node, {"strings": [w]})


async def run(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    s = Settings.from_env()
    opts = client_options(s)
    tag = uuid.uuid4().hex[:6]
    nodes = [f"lm{i}-{tag}" for i in range(args.levels)]
    files = corpus_files(args.corpus)
    if not files:
        print(f"no text files under {', '.join(map(str, args.corpus))}", file=sys.stderr)
        return 2

    out_topic = s.topic("predictions")
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=None, **opts)
    await consumer.start()
    parts = [TopicPartition(out_topic, p) for p in consumer.partitions_for_topic(out_topic) or []]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)  # only the answers to what this run sends
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=5, **opts)
    await producer.start()
    sent = 0
    t0 = time.monotonic()
    try:
        budget = args.limit
        for i, f in enumerate(files):
            doc = f"doc{i}-{tag}"
            words = list(tokens(f))[: max(0, budget)]
            budget -= len(words)
            records = chain_opens(doc, nodes, args.chunk, args.predictions)
            records += list(observes(doc, nodes[0], words))
            for key, value in records:
                await producer.send(s.topic("observations"), value, key=key)
            sent += len(records)
            print(f"{f.name}: {len(words)} tokens", flush=True)
            if budget <= 0:
                break
        await producer.flush()
        learned: dict[str, list[str]] = {n: [] for n in nodes}
        answered = 0
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < args.quiet:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    rec = orjson.loads(r.value)
                    if rec.get("node_id") not in learned:
                        continue
                    answered += 1
                    learned[rec["node_id"]] += rec["learned_patterns"]
                    quiet_since = time.monotonic()
        seconds = time.monotonic() - t0
        print(f"\n{answered} answers to {sent} records sent (+ forwards) in {seconds:.1f} s")
        for level, node in enumerate(nodes):
            print(f"level {level} ({node}): {len(learned[node])} patterns learned")
        top = next((nodes[i] for i in reversed(range(len(nodes))) if learned[nodes[i]]), None)
        if top is None:
            print("no pattern learned yet: send more text (--limit)")
            return 0
        k = nodes.index(top)
        name = learned[top][0]
        down = list(reversed(nodes[:k]))
        await producer.send_and_wait(
            s.topic("observations"),
            envelope("unravel", f"reader-{tag}", top, {"pattern": name, "down": down}),
            key=f"reader-{tag}".encode(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    rec = orjson.loads(r.value)
                    if rec.get("op") == "unravel" and rec["session_id"] == f"reader-{tag}":
                        words = [e[0] for e in rec["response"]["events"]]
                        print(f"\n{name} (level {k}) unravels into {len(words)} words:")
                        print("  " + " ".join(words[:60]) + (" ..." if len(words) > 60 else ""))
                        return 0
        print("no answer to unravel within 30 s", file=sys.stderr)
        return 1
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", nargs="*", type=Path, default=[DEFAULT_CORPUS])
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--chunk", type=int, default=15, help="max_pattern_length of every level")
    p.add_argument("--limit", type=int, default=20_000, help="tokens to send at most")
    p.add_argument("--quiet", type=float, default=5.0, help="seconds without an answer = done")
    p.add_argument(
        "--predictions", action="store_true", help="predict on every observe while training"
    )
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
