"""``kato-stream archive``: dump a topic range to JSON Lines, and read such files back.

One line per record, keeping its coordinates so that a replay of the archive gives every
command the same stable identity as a replay from the topic itself::

    {"topic": "kato.observations", "partition": 0, "offset": 17, "timestamp": 1700000000000,
     "key": "s1", "value": {"op": "observe", ...}}

``value`` is the parsed JSON when the record holds JSON (readable, greppable); other bytes are
kept exactly as ``value_b64`` (and a non-UTF-8 key as ``key_b64``), headers as ``[name, b64]``.
Files of bare envelopes (one command per line, the ``kato-stream publish`` format) are read
too: their identity is ``file:<name>:0:<line number>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from kato_stream.kafka import client_options
from kato_stream.tools.common import SourceRecord, dumps, progress
from kato_stream.tools.source import (
    PartitionRange,
    add_range_arguments,
    range_spec,
    ranges_total,
    read_range,
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def record_to_line(rec: SourceRecord) -> bytes:
    """One archive line (no newline) for ``rec``."""
    doc: dict[str, Any] = {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "timestamp": rec.timestamp,
    }
    if rec.key is None:
        doc["key"] = None
    else:
        try:
            doc["key"] = rec.key.decode("utf-8")
        except UnicodeDecodeError:
            doc["key_b64"] = _b64(rec.key)
    if rec.value is None:
        doc["value"] = None
    else:
        try:
            doc["value"] = orjson.loads(rec.value)
        except orjson.JSONDecodeError:
            doc["value_b64"] = _b64(rec.value)
    if rec.headers:
        doc["headers"] = [[k, _b64(v)] for k, v in rec.headers]
    return dumps(doc)


def line_to_record(line: bytes, *, source_name: str, line_no: int) -> SourceRecord:
    """Parse one archive line, or one bare envelope line (``line_no`` is 1-based)."""
    doc = orjson.loads(line)
    if isinstance(doc, dict) and "partition" in doc and "offset" in doc and "topic" in doc:
        if "key_b64" in doc:
            key: bytes | None = base64.b64decode(doc["key_b64"])
        else:
            key = None if doc.get("key") is None else str(doc["key"]).encode("utf-8")
        if "value_b64" in doc:
            value: bytes | None = base64.b64decode(doc["value_b64"])
        else:
            value = None if doc.get("value") is None else dumps(doc["value"])
        headers = tuple((str(k), base64.b64decode(v)) for k, v in doc.get("headers") or ())
        return SourceRecord(
            topic=str(doc["topic"]),
            partition=int(doc["partition"]),
            offset=int(doc["offset"]),
            timestamp=doc.get("timestamp"),
            key=key,
            value=value,
            headers=headers,
        )
    # A bare envelope: its key is its session id (what `kato-stream publish` does).
    sid = doc.get("session_id") if isinstance(doc, dict) else None
    return SourceRecord(
        topic=f"file:{source_name}",
        partition=0,
        offset=line_no,
        timestamp=None,
        key=sid.encode("utf-8") if isinstance(sid, str) else None,
        value=dumps(doc),
    )


def read_archive(path: str) -> Iterator[SourceRecord]:
    """Every record of an archive file (``-`` = stdin), in file order; blank lines skipped."""
    fh: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    name = "stdin" if path == "-" else Path(path).name
    try:
        for i, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            try:
                yield line_to_record(line, source_name=name, line_no=i)
            except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{name}:{i}: not an archive line: {exc}") from None
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


async def archive(
    bootstrap: str,
    spec: Any,
    out: IO[bytes],
    *,
    show_progress: bool = False,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the records of ``spec`` (a RangeSpec) to ``out``; returns the summary
    (``kafka_options``: :func:`kato_stream.kafka.client_options`)."""
    t0 = time.monotonic()
    n = 0
    bar = progress(None, f"archive {spec.topic}", show_progress)
    ranges: list[PartitionRange] = []

    def resolved(rs: list[PartitionRange]) -> None:
        ranges.extend(rs)
        bar.total = ranges_total(rs)
        bar.refresh()

    try:
        async with contextlib.aclosing(
            read_range(bootstrap, spec, on_resolved=resolved, kafka_options=kafka_options)
        ) as records:
            async for rec in records:
                out.write(record_to_line(rec) + b"\n")
                n += 1
                bar.update(1)
    finally:
        bar.close()
    out.flush()
    return {
        "topic": spec.topic,
        "ranges": {str(r.partition): [r.start, r.end] for r in ranges},
        "written": n,
        "duration_s": round(time.monotonic() - t0, 3),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help="Kafka bootstrap (default: KATO_STREAM_KAFKA_BOOTSTRAP)")
    add_range_arguments(p, topic_help="topic to dump (default: <prefix>.observations)")
    p.add_argument("-o", "--output", default="-", help="JSONL file to write (default: stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stderr")


def run(args: argparse.Namespace) -> int:
    from kato_stream.settings import Settings

    s = Settings.from_env()
    spec = range_spec(args, args.topic or s.topic("observations"))
    bootstrap = args.bootstrap or s.kafka_bootstrap
    to_stdout = args.output == "-"
    out: IO[bytes] = sys.stdout.buffer if to_stdout else open(args.output, "wb")  # noqa: SIM115
    try:
        summary = asyncio.run(
            archive(
                bootstrap,
                spec,
                out,
                show_progress=not args.no_progress,
                kafka_options=client_options(s),
            )
        )
    except (ValueError, TimeoutError, OSError) as exc:
        print(f"archive failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not to_stdout:
            out.close()
    if args.json:
        print(orjson.dumps(summary).decode(), file=sys.stderr)
    else:
        print(
            f"archived {summary['written']} record(s) of {summary['topic']} "
            f"in {summary['duration_s']:.2f}s; ranges {summary['ranges']}",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kato-stream archive", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
