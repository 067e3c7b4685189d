"""``kato-stream dev``: the whole embedded stack in one command.

Starts the broker and Redis (``EmbeddedStack``), creates the topics with their partition
counts, runs one worker and the KATO-compatible gateway as child processes (so each owns
its event loop and can be killed alone), then streams a small sample data set through the
input topic and prints the prediction records as they arrive.  A worker or gateway that
exits is started again with backoff (``supervise``).  Ctrl-C, SIGTERM (or
``--exit-after-sample``) stops everything: children get SIGTERM, then SIGKILL after a grace
period; if this process is killed outright, they get SIGKILL from the kernel (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from kato_stream.kafka import client_options
from kato_stream.redact import redact_url
from kato_stream.settings import Settings

SAMPLE_SEQUENCES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("hello",), ("world",), ("bar", "foo")),
    (("hello",), ("there",), ("foo",)),
    (("wake",), ("coffee",), ("work",), ("lunch",)),
    (("wake",), ("run",), ("shower",), ("work",)),
)
SAMPLE_PROBES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("hello",), ("world",)),
    (("wake",), ("coffee",)),
    (("wake",), ("shower",)),
)


def sample_envelopes(node: str, session: str) -> list[dict[str, Any]]:
    """Learn the sample sequences, then observe each probe (clearing the STM between)."""
    out: list[dict[str, Any]] = []

    def cmd(op: str, payload: dict[str, Any] | None = None) -> None:
        out.append(
            {
                "op": op,
                "session_id": session,
                "node_id": node,
                "msg_id": f"dev-{len(out)}",
                "payload": payload or {},
            }
        )

    for seq in SAMPLE_SEQUENCES:
        for event in seq:
            cmd("observe", {"strings": list(event)})
        cmd("learn")
    for probe in SAMPLE_PROBES:
        cmd("clear_stm")
        for event in probe:
            cmd("observe", {"strings": list(event)})
    return out


def describe(record: dict[str, Any]) -> str:
    """One readable line for a prediction record."""
    op = record.get("op")
    if record.get("status") != "ok":
        err = record.get("error") or {}
        return f"{op:<10} REJECTED {err.get('code')}: {err.get('message')}"
    line = f"{op:<10} stm_length={record.get('stm_length')}"
    learned = record.get("learned_patterns") or []
    if learned:
        line += f" learned={learned[0][:17]}..."
    preds = record.get("predictions") or []
    if preds:
        top = preds[0]
        line += (
            f" predictions={len(preds)} top: future={top.get('future')}"
            f" similarity={top.get('similarity'):.3f} potential={top.get('potential'):.3f}"
        )
    return line


class Child:
    """A child process that is stopped with SIGTERM, then SIGKILL after ``grace`` seconds,
    and that the kernel kills if this process dies first (it must not run on unsupervised)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        from kato_stream.embedded.process import DIE_WITH_PARENT

        self.name = name
        self.argv = list(argv)
        self.env = env
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            start_new_session=True,
            preexec_fn=DIE_WITH_PARENT,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def respawn(self) -> Child:
        """The same command started again (after it exited)."""
        return Child(self.name, self.argv, self.env)

    def stop(self, grace: float = 10.0) -> None:
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


RESTART_BACKOFF_MAX = 30.0  # longest pause before a crashed child is started again
RESTART_RESET_AFTER = 60.0  # a child that ran this long starts its backoff afresh


def restart_delay(failures: int) -> float:
    """Seconds before the ``failures``-th consecutive restart: 1, 2, 4, ... up to 30."""
    return float(min(RESTART_BACKOFF_MAX, 2 ** max(0, failures - 1)))


async def supervise(children: list[Child], poll: float = 0.5) -> None:
    """Keep ``children`` running until cancelled: one that exits (a worker that took itself
    down after a failure, or was killed) is started again with backoff, and says so.  A
    restarted worker resumes from its group's committed offsets."""
    failures = {c.name: 0 for c in children}
    while True:
        for i, c in enumerate(children):
            if c.running():
                continue
            ran = time.monotonic() - c.started
            failures[c.name] = 1 if ran >= RESTART_RESET_AFTER else failures[c.name] + 1
            delay = restart_delay(failures[c.name])
            print(
                f"{c.name} exited with code {c.proc.returncode} after {ran:.0f} s: "
                f"restarting it in {delay:.0f} s (restart {failures[c.name]} in a row)",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)
            children[i] = c.respawn()
            print(f"{c.name} restarted (pid {children[i].proc.pid})", file=sys.stderr, flush=True)
        await asyncio.sleep(poll)


async def _wait_http(url: str, timeout: float, child: Child) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if not child.running():
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url, timeout=2.0)).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s")


async def stream_sample(settings: Settings, timeout: float) -> int:
    """Publish the sample, print each record; returns the number of records answered."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from kato_stream.stream import codecs

    node, session = "dev-node", f"dev-{uuid.uuid4().hex[:8]}"
    envelopes = sample_envelopes(node, session)
    kafka_options = client_options(settings)
    consumer = AIOKafkaConsumer(
        settings.topic("predictions"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        **kafka_options,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_options)
    await consumer.start()
    await producer.start()
    try:
        # make sure the consumer holds its positions before anything is published
        await consumer.getmany(timeout_ms=500)
        for env in envelopes:
            await producer.send_and_wait(
                settings.topic("observations"), codecs.dumps(env), key=session.encode()
            )
        print(f"published {len(envelopes)} commands for session {session}", flush=True)
        seen = 0
        deadline = time.monotonic() + timeout
        while seen < len(envelopes) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for rec in records:
                    doc = codecs.loads(rec.value)
                    if doc.get("session_id") != session:
                        continue
                    seen += 1
                    print(f"[{doc.get('msg_id')}] {describe(doc)}", flush=True)
        return seen
    finally:
        await producer.stop()
        await consumer.stop()


async def scrape_commands(url: str) -> float:
    """Sum of ``kato_commands_total`` on a worker's ``/metrics`` (Prometheus text)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as client:
        text = (await client.get(url, timeout=5.0)).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "kato_commands":
            total += sum(x.value for x in family.samples if x.name == "kato_commands_total")
    return total


async def run_dev(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    sample: bool = True,
    exit_after_sample: bool = False,
    timeout: float = 120.0,
) -> int:
    """Run the embedded stack, a worker and the gateway until Ctrl-C or SIGTERM; 0 on
    success."""
    from kato_stream.embedded.launcher import EmbeddedStack
    from kato_stream.topics import create_topics, topic_specs

    # SIGTERM (a supervisor, `timeout`, `kill`) stops like Ctrl-C: this task is cancelled and
    # the finally below stops the children and the stack (the default action would leave them).
    main = asyncio.current_task()
    terminated = asyncio.Event()

    def on_term() -> None:
        terminated.set()
        if main is not None:
            main.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
    stack = EmbeddedStack.from_settings(settings)
    await stack.start()
    children: list[Child] = []
    try:
        s = stack.settings(settings)
        await create_topics(
            s.kafka_bootstrap,
            topic_specs(s),
            replication_factor=s.replication_factor,
            kafka_options=client_options(s),
        )
        print(f"kafka      {s.kafka_bootstrap}", flush=True)
        print(f"redis      {redact_url(s.redis_url)} ({stack.redis_backend})", flush=True)
        env = {**os.environ, **s.to_env()}
        py = sys.executable
        children.append(Child("worker", [py, "-m", "kato_stream.cli", "worker"], env))
        if port:
            gw = [py, "-m", "kato_stream.cli", "gateway", "--host", host, "--port", str(port)]
            children.append(Child("gateway", gw, env))
            await _wait_http(f"http://{host}:{port}/health", timeout, children[-1])
            print(f"gateway    http://{host}:{port} (KATO REST API)", flush=True)
        if sample:
            answered = await stream_sample(s, timeout)
            expected = len(sample_envelopes("n", "s"))
            print(f"sample: {answered}/{expected} commands answered", flush=True)
            if answered != expected:
                return 1
            if s.web_port > 0:
                url = f"http://127.0.0.1:{s.web_port}/metrics"
                print(f"metrics    {url}: kato_commands_total={await scrape_commands(url):.0f}")
        if exit_after_sample:
            return 0
        print("ready: press Ctrl-C to stop", flush=True)
        await supervise(children)
        return 1  # not reached: supervise() returns only when cancelled
    except asyncio.CancelledError:
        if not terminated.is_set():
            raise
        print("stopping (SIGTERM)", file=sys.stderr, flush=True)
        return 0
    finally:
        for c in children:
            c.stop()
        await stack.stop()
