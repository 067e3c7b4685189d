"""Smoke runs of the end-to-end benchmarks at tiny sizes: the scripts run to the end and write
the JSON shape the docs quote.  No timing is asserted (benchmarks are not tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, out: Path, *argv: str, timeout: float = 150) -> tuple[dict, str]:
    """Run a benchmark in a process group of its own: on a timeout the whole group is
    killed, so no broker, worker or gateway it started outlives the test."""
    proc = subprocess.Popen(
        [sys.executable, f"benchmarks/{script}", "--out", str(out), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{script} timed out after {timeout} s: {stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(out.read_text()), stdout


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_bench_stream_smoke(tmp_path: Path) -> None:
    report, md = _run(
        "bench_stream.py", tmp_path / "s.json",
        "--sizes", "40", "--rounds", "1", "--sat-seconds", "1.5", "--paced-seconds", "1.5",
        "--rate", "5", "--window", "10", "--partitions", "2", "--sessions", "2",
        "--pt-payload", "2000", "--kato-env", "MAX_PREDICTIONS=7",
        "--compare-env", "KATO_STREAM_GC_THRESHOLD=700",
    )  # fmt: skip
    assert report["benchmark"] == "stream" and len(report["git_head"]) == 40
    res = report["results"]
    assert res["preload"]["40"]["learned"] == 40
    assert res["preload"]["40_b"]["learned"] == 40  # worker B learned its own node
    assert set(res["summary"]) == {"passthrough", "passthrough_payload", "kato_40", "kato_40_b"}
    for name in ("kato_40", "kato_40_b"):  # --kato-env reached both workers
        assert 0 < res["summary"][name]["paced"]["observe_predictions_mean"] <= 7
    assert res["summary"]["kato_40_b"]["saturated"]["process_cpu_ms_per_record"] > 0
    assert "| kato worker B (KATO_STREAM_GC_THRESHOLD=700), 40 patterns |" in md
    for target in res["summary"].values():
        for kind in ("saturated", "paced"):
            t = target[kind]
            assert t["received"] > 0 and t["missing"] == 0 and t["throughput"] > 0
            assert 0 < t["latency_ms"]["p50"] <= t["latency_ms"]["p99"]
    assert res["summary"]["kato_40"]["saturated"]["ratio_to_passthrough"] > 0
    assert res["summary"]["kato_40"]["saturated"]["ratio_to_payload_passthrough"] > 0
    sizes = [p["record_bytes"]["mean"] for p in res["phases"]["passthrough_payload"]["saturated"]]
    assert all(x > 2000 for x in sizes)  # the padding reached the records
    assert "| pass-through Faust agent |" in md
    assert "| pass-through, kato-sized output records |" in md
    # the topics were trimmed after the preload and after every phase: each phase's inputs
    # and answers at least (the broker's CPU grows with what it holds: _common.trim_topics)
    assert res["trimmed_records"] > 0
    for kinds in res["phases"].values():
        for phases in kinds.values():
            assert all(p["trimmed_records"] >= 2 * p["received"] for p in phases)
    # the load client matched the kato answers by their headers and decoded a sample only
    for p in res["phases"]["kato_40"]["saturated"]:
        assert 0 < p["decoded"] < p["received"]


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_bench_e2e_tuning_smoke(tmp_path: Path) -> None:
    report, md = _run(
        "bench_e2e_tuning.py", tmp_path / "t.json",
        "--patterns", "40", "--rounds", "1", "--seconds", "1", "--rate", "5",
        "--partitions", "2", "--sessions", "2", "--mem-sessions", "4",
        "--mem-sessions-predict", "2", "--commit-wait", "0.2",
    )  # fmt: skip
    res = {k: v["data"] for k, v in report["results"].items()}
    assert all(len(v["run"]["git_head"]) == 40 for v in report["results"].values())
    recall, maxp = res["recall_threshold_session"], res["max_predictions_session"]
    assert [r["recall_threshold"] for r in recall] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert [r["max_predictions"] for r in maxp] == [5, 20, 100]
    assert res["max_predictions_500_session"]["sent"] > 0
    for row in recall + maxp:
        assert row["received"] > 0 and row["missing"] == 0
        assert row["latency_ms"]["p50"] > 0 and row["record_bytes_mean"] > 0
    modes = {(r["stm_mode"], r["process_predictions"]): r for r in res["stm_mode"]}
    assert set(modes) == {("CLEAR", False), ("ROLLING", False), ("CLEAR", True), ("ROLLING", True)}
    for r in modes.values():
        assert r["values_read"] == r["sessions"] and r["table_value_bytes_mean"]["total"] > 0
    # 2 * mpl + 2 events: CLEAR holds (mpl - 1) / 2 = 2 events, ROLLING mpl - 1 = 4
    assert modes[("CLEAR", False)]["table_value_bytes_mean"]["stm_events"] == 2
    assert modes[("ROLLING", False)]["table_value_bytes_mean"]["stm_events"] == 4
    assert "| `RECALL_THRESHOLD` |" in md and "| `STM_MODE` |" in md


def test_bench_compression_smoke(tmp_path: Path) -> None:
    report, stdout = _run(
        "bench_compression.py",
        tmp_path / "c.json",
        "--patterns",
        "60",
        "--records",
        "4",
        "--repeat",
        "1",
    )
    res = report["results"]
    assert res["records"] == 4 and res["mean_bytes_in"] > 10_000  # records with predictions
    assert set(res["codecs"]) == {"gzip", "lz4", "snappy", "zstd"}
    for name, row in res["codecs"].items():
        assert 0 < row["mean_bytes_out"] < res["mean_bytes_in"], name
        assert row["ratio"] > 1 and row["compress_ms_per_record"] >= 0, name
        assert f"| {name} |" in stdout


def test_bench_worker_cpu_smoke(tmp_path: Path) -> None:
    report, stdout = _run(
        "bench_worker_cpu.py",
        tmp_path / "w.json",
        "--patterns",
        "60",
        "--block",
        "10",
        "--rounds",
        "2",
    )
    res = report["results"]
    assert res["commands_per_variant"] == 20
    rows = res["variants"]
    assert list(rows) == [
        "gc 700, encoded apart",
        "gc 700, shared",
        "gc 20000, encoded apart",
        "gc 20000, shared",
    ]
    # every variant did the same work: the same commands, the same bytes out
    assert len({r["bytes_encoded_per_command"] for r in rows.values()}) == 1
    assert next(iter(rows.values()))["bytes_encoded_per_command"] > 10_000  # with predictions
    assert rows["gc 700, encoded apart"]["vs_first"] == 1.0
    for name, r in rows.items():
        assert r["cpu_ms_per_command"] > 0, name
        assert f"| {name} |" in stdout


@pytest.mark.timeout(180)
def test_bench_worker_cpu_baseline_runs_both_trees_on_the_same_commands(tmp_path: Path) -> None:
    """``--baseline HEAD``: the committed tree (exported, its kernel compiled) and the working
    tree, each in its own process, give byte-identical outputs on the same commands."""
    report, stdout = _run(
        "bench_worker_cpu.py", tmp_path / "b.json",
        "--patterns", "40", "--block", "5", "--rounds", "2", "--baseline", "HEAD",
    )  # fmt: skip
    res = report["results"]
    assert res["commands_per_variant"] == 10 and res["identical_output"] is True
    rows = res["variants"]
    assert list(rows) == ["baseline HEAD", "working tree"]
    assert rows["baseline HEAD"]["vs_baseline"] == 1.0
    assert len({r["bytes_encoded_per_command"] for r in rows.values()}) == 1
    assert rows["working tree"]["bytes_encoded_per_command"] > 10_000  # with predictions
    assert "outputs identical: True" in stdout
    assert len(report["machine"]["rev"]) == 12


def test_bench_worker_cpu_output_digest_sees_every_byte_and_the_order() -> None:
    """What ``--baseline`` compares: a block's records and lists, in order."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_worker_cpu import digest

    a = [(b'{"r":1}', {"predictions": b"[1]"}), (b'{"r":2}', {})]
    assert digest(a) == digest([(b'{"r":1}', {"predictions": b"[1]"}), (b'{"r":2}', {})])
    assert digest(a) != digest(a[::-1])
    assert digest(a) != digest([(b'{"r":1}', {"predictions": b"[2]"}), (b'{"r":2}', {})])
    assert digest(a) != digest([(b'{"r":1}', {"future_potentials": b"[1]"}), (b'{"r":2}', {})])
    assert digest([(b"ab", {})]) != digest([(b"a", {"": b"b"})])


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_bench_learn_sync_smoke(tmp_path: Path) -> None:
    report, _ = _run("bench_learn_sync.py", tmp_path / "l.json", "--learns", "2")
    assert report["benchmark"] == "learn_sync" and report["learns"] == 2
    res = report["results"]
    assert res["wait_learn"]["n"] == 2 and res["nowait_observe"]["n"] == 4
    assert "learn_p50_added_ms" in res


@pytest.mark.timeout(180)
def test_bench_gateway_render_smoke(tmp_path: Path) -> None:
    report, _ = _run(
        "bench_gateway_render.py", tmp_path / "r.json",
        "--patterns", "60", "--queries", "3", "--rounds", "2",
    )  # fmt: skip
    assert report["benchmark"] == "gateway_render" and report["answers"] == 3
    assert report["body_bytes_mean"] > 0 and report["predictions_mean"] > 0
    assert set(report["ms_p50"]) == {"starlette", "orjson"} and report["ratio_p50"] > 0


@pytest.mark.parametrize(
    ("profile", "thread", "busy", "shares"),
    [
        (
            "worker_saturated_1000_86b46f3",
            "MainThread",
            2165,
            [" 33.5% predict (predictions.py)", " 15.7% _columns (kernel_path.py)"],
        ),
        (  # the samples of the thread holding the GIL (py-spy --gil): CPU, not GIL waits
            "worker_saturated_1000_gil_bb12dea",
            "",
            1621,
            [" 54.6% predict (predictions.py)", " 26.3% _columns (kernel_path.py)"],
        ),
        (
            "worker_saturated_1000_bb12dea",
            "MainThread",
            3131,
            [
                " 41.1% predict (predictions.py)",
                " 14.1% _SelectorSocketTransport.write (selector_events.py)",
            ],
        ),
    ],
)
def test_pyspy_summary_reads_the_committed_worker_profile(
    profile: str, thread: str, busy: int, shares: list[str]
) -> None:
    """The shares benchmarks/README.md quotes come from this command on the committed profile."""
    r = subprocess.run(
        [
            sys.executable, "benchmarks/pyspy_summary.py",
            f"benchmarks/results/profiles/{profile}.collapsed",
            "--thread", thread, "--top", "60",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"busy samples: {busy}"
    for share in shares:
        assert share in lines


def test_strace_summary_reads_the_committed_worker_trace() -> None:
    """The sendto figures benchmarks/README.md quotes come from this command on the trace."""
    r = subprocess.run(
        [
            sys.executable, "benchmarks/strace_summary.py",
            "benchmarks/results/profiles/worker_saturated_1000_sendto_bb12dea.strace",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "total: 1325 calls, 0.415 s"
    assert "| 17145 | 10 | 329 | 0.157 | 129 | 201150 |" in lines  # produce requests
    assert "| 17180 | 9 | 299 | 0.155 | 113 | 473 |" in lines  # the consumer thread's fetches


@pytest.mark.stack
@pytest.mark.timeout(180)
def test_bench_gateway_compare_smoke(tmp_path: Path) -> None:
    """The A/B the reply-window and trim figures come from: both variants run, B's settings
    recorded and applied (B keeps its topics untrimmed)."""
    report, _ = _run(
        "bench_gateway.py", tmp_path / "g.json",
        "--patterns", "5", "--queries", "2", "--rounds", "1",
        "--compare-env", "KATO_STREAM_REPLY_FETCH_BACKOFF_SECONDS=0,KATO_BENCH_TRIM=0",
    )  # fmt: skip
    assert report["benchmark"] == "gateway"
    assert report["variants"] == {
        "A": {},
        "B": {"KATO_STREAM_REPLY_FETCH_BACKOFF_SECONDS": "0", "KATO_BENCH_TRIM": "0"},
    }
    res = report["results"]
    for v in ("A", "B"):
        (run,) = res["rounds"][v]
        assert run["http_observe"]["n"] > 0 and run["topic_observe"]["n"] > 0
        assert "exchange observe" in run["gateway_time_mean_ms"]
    assert res["rounds"]["A"][0]["trimmed_records"] >= 2 * 5  # the preload's, at least
    assert res["rounds"]["B"][0]["trimmed_records"] == 0
    assert set(res["b_over_a_p50"]) == {
        "http_observe", "topic_observe", "http_predictions", "topic_predictions",
    }  # fmt: skip


@pytest.mark.stack
@pytest.mark.timeout(120)
def test_bench_broker_store_smoke(tmp_path: Path) -> None:
    """The embedded broker's CPU against what it holds: the records it wrote are the ones
    it deletes, and every figure the docs quote is in the report."""
    report, _ = _run(
        "bench_broker_store.py", tmp_path / "b.json",
        "--records", "20", "--size", "1000", "--wait", "0.2",
        "--retention-ms", "1000", "--retention-timeout", "30",
    )  # fmt: skip
    assert report["benchmark"] == "broker_store" and report["config"]["records"] == 20
    res = report["results"]
    assert res["deleted_records"] == 20
    for key in ("idle_empty_cpu_s", "held_cpu_s", "deleted_cpu_s", "held_write_s"):
        assert res[key] >= 0
    assert res["held_file_bytes"] >= 0
    exp = res["retention_expired_after_s"]
    assert exp is None or 0 <= exp <= 30
