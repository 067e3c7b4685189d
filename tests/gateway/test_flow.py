"""End to end through a real worker: every session endpoint's answers and its errors."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.usefixtures("worker")


def node() -> str:
    return "gw" + uuid.uuid4().hex[:10]


async def _session(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/sessions", json={"node_id": node(), **body})
    assert r.status_code == 200, r.text
    return r.json()


async def _observe(http: httpx.AsyncClient, sid: str, **obs: Any) -> dict[str, Any]:
    r = await http.post(f"/sessions/{sid}/observe", json=obs)
    assert r.status_code == 200, r.text
    return r.json()


async def test_create_get_delete(http: httpx.AsyncClient) -> None:
    s = await _session(http, ttl_seconds=120, metadata={"who": "me"})
    sid = s["session_id"]
    assert s["ttl_seconds"] == 120 and s["metadata"] == {"who": "me"}
    assert s["session_config"]["max_predictions"] == 100 and s["expires_at"].endswith("Z")
    info = (await http.get(f"/sessions/{sid}")).json()
    assert info["session_id"] == sid and info["node_id"] == s["node_id"]
    assert 118 <= info["ttl_seconds"] <= 120 and info["session_config"] == s["session_config"]
    r = await http.delete(f"/sessions/{sid}")
    assert r.status_code == 200 and r.json() == {"status": "deleted", "session_id": sid}
    assert (await http.get(f"/sessions/{sid}/exists")).json()["exists"] is False
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["a"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"


async def test_invalid_create_config_rolls_back(http: httpx.AsyncClient) -> None:
    s = await _session(http, config={"max_predictions": 5, "recall_threshold": "0.5"})
    assert s["session_config"]["max_predictions"] == 100
    assert s["session_config"]["recall_threshold"] == 0.1


async def test_config_update_and_validation(http: httpx.AsyncClient) -> None:
    sid = (await _session(http))["session_id"]
    r = await http.post(f"/sessions/{sid}/config", json={"config": {"max_predictions": 7}})
    assert r.status_code == 200
    assert r.json() == {"status": "okay", "message": "Configuration updated", "session_id": sid}
    r = await http.post(f"/sessions/{sid}/config", json={"recall_threshold": 0.4})  # raw form
    assert r.status_code == 200
    cfg = (await http.get(f"/sessions/{sid}/config")).json()
    assert cfg["session_id"] == sid
    assert cfg["config"]["max_predictions"] == 7 and cfg["config"]["recall_threshold"] == 0.4
    r = await http.post(
        f"/sessions/{sid}/config", json={"config": {"recall_threshold": 2.0, "max_predictions": 3}}
    )
    assert r.status_code == 400
    assert r.json() == {
        "detail": {
            "error": "Configuration validation failed",
            "validation_errors": {"recall_threshold": "Must be a number between 0.0 and 1.0"},
        }
    }
    assert (await http.get(f"/sessions/{sid}/config")).json()["config"]["max_predictions"] == 7


async def test_learn_empty_stm_is_400(http: httpx.AsyncClient) -> None:
    sid = (await _session(http))["session_id"]
    r = await http.post(f"/sessions/{sid}/learn")
    assert r.status_code == 400 and r.json() == {"detail": "Cannot learn from empty STM"}
    assert "x-session-id" not in r.headers


async def test_observe_learn_predict_pattern(http: httpx.AsyncClient) -> None:
    s = await _session(http)
    sid, nid = s["session_id"], s["node_id"]
    for strings in (["hello"], ["world"], ["foo", "bar"]):
        body = await _observe(http, sid, strings=strings, emotives={"joy": 1}, metadata={"k": 1})
    assert body["stm_length"] == 3 and body["time"] == 3 and body["processor_id"] == nid
    assert body["unique_id"].startswith("obs-") and body["auto_learned_pattern"] is None
    stm = (await http.get(f"/sessions/{sid}/stm")).json()
    assert stm == {"stm": [["hello"], ["world"], ["bar", "foo"]], "session_id": sid, "length": 3}
    r = await http.post(f"/sessions/{sid}/learn")
    name = "PTRN|b9bb56867501bfbe32538a66ea97db3f3d0c6da1"
    assert r.json() == {
        "status": "learned",
        "pattern_name": name,
        "session_id": sid,
        "processor_id": None,
        "message": f"Learned pattern {name} from 0 events",
    }
    await _observe(http, sid, strings=["hello"])
    await _observe(http, sid, strings=["world"])
    preds = (await http.get(f"/sessions/{sid}/predictions", params={"unique_id": "x"})).json()
    assert preds["count"] == 1 and preds["predictions"][0]["name"] == name[5:]
    assert preds["predictions"][0]["future"] == [["bar", "foo"]]
    r = await http.get(f"/pattern/{name}", params={"node_id": nid})
    assert r.json() == {
        "pattern": {
            "status": "okay",
            "pattern": {
                "name": name,
                "pattern_data": [["hello"], ["world"], ["bar", "foo"]],
                "length": 4,
                "frequency": 1,
                "emotives": [{"joy": 1.0}] * 3,
                "metadata": {"k": ["1"]},
            },
        },
        "node_id": f"{nid}_kato",
    }
    # the same through the bare hash and the x-node-id header
    r = await http.get(f"/pattern/{name[5:]}", headers={"x-node-id": nid})
    assert r.json()["pattern"]["status"] == "okay"


async def test_percept_and_cognition_data(http: httpx.AsyncClient) -> None:
    s = await _session(http)
    sid, nid = s["session_id"], s["node_id"]
    await _observe(http, sid, strings=["b", "a"], emotives={"u": 2.0}, metadata={"m": "x"})
    pd = (await http.get(f"/sessions/{sid}/percept-data")).json()
    assert pd["session_id"] == sid and pd["node_id"] == nid
    assert pd["percept_data"]["strings"] == ["a", "b"] and pd["percept_data"]["emotives"] == {
        "u": 2.0
    }
    cd = (await http.get(f"/sessions/{sid}/cognition-data")).json()
    assert cd["cognition_data"]["short_term_memory"] == [["a", "b"]]
    assert cd["cognition_data"]["symbols"] == ["a", "b"] and cd["cognition_data"]["time"] == 1
    assert cd["cognition_data"]["emotives"] == {"u": 2.0}


async def test_clear_stm_clear_all_finalize(http: httpx.AsyncClient) -> None:
    sid = (await _session(http))["session_id"]
    await _observe(http, sid, strings=["a", "b"])
    assert (await http.post(f"/sessions/{sid}/learn")).status_code == 200
    await _observe(http, sid, strings=["a"])
    r = await http.post(f"/sessions/{sid}/clear-stm")
    assert r.json() == {"status": "cleared", "session_id": sid}
    assert (await http.get(f"/sessions/{sid}/stm")).json()["length"] == 0
    fin = (await http.post(f"/sessions/{sid}/finalize-training")).json()
    assert fin["status"] == "completed" and fin["patterns_processed"] == 1
    r = await http.post(f"/sessions/{sid}/clear-all")
    assert r.json() == {"status": "cleared", "session_id": sid, "scope": "all"}
    await _observe(http, sid, strings=["a"])
    assert (await http.get(f"/sessions/{sid}/predictions")).json()["predictions"] == []


async def test_observe_sequence(http: httpx.AsyncClient) -> None:
    sid = (await _session(http))["session_id"]
    r = await http.post(
        f"/sessions/{sid}/observe-sequence",
        json={"observations": [{"strings": ["a"]}, {"strings": ["b"]}], "learn_at_end": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["observations_processed"] == 2
    assert [x["sequence_position"] for x in body["results"]] == [0, 1]
    assert body["final_learned_pattern"] == "PTRN|76d7efca2e96cb5eeddf4e06ac96a0f424630135"
    empty = (await http.post(f"/sessions/{sid}/observe-sequence", json={"observations": []})).json()
    assert empty["observations_processed"] == 0 and empty["results"] == []


async def test_deviation_sort_symbols_and_persistence_honoured(http: httpx.AsyncClient) -> None:
    """DESIGN.md: session sort_symbols and persistence are honoured (KATO ignores them)."""
    s = await _session(http, config={"sort_symbols": False, "persistence": 2})
    sid, nid = s["session_id"], s["node_id"]
    for e in (1.0, 2.0, 3.0):
        await _observe(http, sid, strings=["z", "a"], emotives={"e": e})
        await _observe(http, sid, strings=["m"])
        learned = (await http.post(f"/sessions/{sid}/learn")).json()["pattern_name"]
    assert learned == "PTRN|" + hashlib.sha1(str([["z", "a"], ["m"]]).encode()).hexdigest()
    pat = (await http.get(f"/pattern/{learned}", params={"node_id": nid})).json()["pattern"][
        "pattern"
    ]
    assert pat["frequency"] == 3 and len(pat["emotives"]) == 2


async def test_pattern_read_after_each_learn_sees_it(http: httpx.AsyncClient) -> None:
    """Read-your-writes (docs/gateway.md "Pattern reads"): a GET right after a learn's answer
    shows that learn, a new pattern or a raised frequency alike, although the gateway's copy
    of the long-term memory is filled from the pattern topic."""
    s = await _session(http)
    sid, nid = s["session_id"], s["node_id"]
    for i in range(1, 7):
        await _observe(http, sid, strings=["p"])
        await _observe(http, sid, strings=["q"])
        name = (await http.post(f"/sessions/{sid}/learn")).json()["pattern_name"]
        body = (await http.get(f"/pattern/{name}", params={"node_id": nid})).json()["pattern"]
        assert body["status"] == "okay", body
        assert body["pattern"]["frequency"] == i


async def test_metrics_split_a_command_into_its_stages_on_the_stream(
    http: httpx.AsyncClient,
) -> None:
    """An observe through the gateway is counted once per stage: the broker's acknowledgement
    of its input record, then the wait for its answer; with benchmarks/bench_gateway.py's
    breakdown reading them back as means per op and stage."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.bench_gateway import gateway_breakdown

    def counts(text: str) -> dict[str, float]:
        out = {}
        for line in text.splitlines():
            if line.startswith("kato_gateway_exchange_seconds_count{") and 'op="observe"' in line:
                stage = line.split('stage="')[1].split('"')[0]
                out[stage] = float(line.rsplit(" ", 1)[1])
        return out

    before = counts((await http.get("/metrics/prometheus")).text)
    sid = (await http.post("/sessions", json={"node_id": node()})).json()["session_id"]
    for ev in (["a", "b"], ["c"]):
        r = await http.post(f"/sessions/{sid}/observe", json={"strings": ev})
        assert r.status_code == 200, r.text
    text = (await http.get("/metrics/prometheus")).text
    after = counts(text)
    for stage in ("publish", "answer"):
        assert after[stage] - before.get(stage, 0.0) == 2, (stage, before, after)
    means = gateway_breakdown(text)
    assert set(means["exchange observe"]) == {"publish", "answer"}
    assert all(v > 0 for v in means["exchange observe"].values())
    assert means["request POST"]["/sessions/{session_id}/observe"] > 0
