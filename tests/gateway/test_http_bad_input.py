"""Bad input is answered promptly with a 4xx in KATO's error shapes, never a 500 or 504.

Each case of issue 12 item 5, through the gateway and a real worker: ids, TTLs and values
the stream cannot carry are refused before anything is published (422 in FastAPI's shape,
413 ``{"detail": ...}`` for size); what only the worker can judge (a session state or
pattern too large for the broker) comes back as its rejection, mapped to 413; an answer the
worker had to shrink is rebuilt where it can be, else a 413; and a rejection that cannot
name its ``msg_id`` still reaches the request that caused it (matched by input offset).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from kato_stream.gateway.client import (
    EnvelopeTooLarge,
    PayloadNotEncodable,
    StreamClient,
)
from kato_stream.gateway.errors import from_rejection
from kato_stream.gateway.models import MAX_SEQUENCE, MAX_TTL
from kato_stream.gateway.service import Gateway, Reply, truncated_response
from kato_stream.stream.envelope import MAX_ID

LIMIT = 1_048_576  # Settings.max_message_bytes (default, as the fixtures run it)


def node() -> str:
    return "gwbad" + uuid.uuid4().hex[:10]


async def _session(http: httpx.AsyncClient, **body: Any) -> str:
    r = await http.post("/sessions", json={"node_id": node(), **body})
    assert r.status_code == 200, r.text
    return str(r.json()["session_id"])


async def _alive(http: httpx.AsyncClient) -> None:
    """The worker still answers (a rejected command must not take it down)."""
    sid = await _session(http)
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["alive"]})
    assert r.status_code == 200, r.text


def _one_error(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    [err] = r.json()["detail"]
    return dict(err)


# -- no worker needed: refused before anything is published ----------------------------


async def test_create_negative_ttl_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions", json={"node_id": node(), "ttl_seconds": -5})
    assert r.json() == {
        "detail": [
            {
                "type": "greater_than_equal",
                "loc": ["body", "ttl_seconds"],
                "msg": "Input should be greater than or equal to 0",
                "input": -5,
                "ctx": {"ge": 0},
            }
        ]
    }
    assert r.status_code == 422


async def test_create_huge_ttl_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions", json={"node_id": node(), "ttl_seconds": 99999999999999})
    err = _one_error(r)
    assert err["type"] == "less_than_equal" and err["ctx"] == {"le": MAX_TTL}


async def test_create_nan_ttl_is_422_not_500(http: httpx.AsyncClient) -> None:
    """Python's JSON parser accepts NaN; FastAPI would fail to echo it back (a 500)."""
    r = await http.post(
        "/sessions",
        content=b'{"node_id": "n", "ttl_seconds": NaN}',
        headers={"content-type": "application/json"},
    )
    err = _one_error(r)
    assert err["loc"] == ["body", "ttl_seconds"] and err["input"] is None


async def test_create_empty_node_id_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions", json={"node_id": ""})
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {
                "type": "string_too_short",
                "loc": ["body", "node_id"],
                "msg": "String should have at least 1 character",
                "input": "",
                "ctx": {"min_length": 1},
            }
        ]
    }


async def test_create_overlong_node_id_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/sessions", json={"node_id": "n" * (MAX_ID + 1)})
    err = _one_error(r)
    assert err["type"] == "string_too_long" and err["loc"] == ["body", "node_id"]
    assert err["ctx"] == {"max_length": MAX_ID}


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"big": 2**70}},
        {"config": {"max_pattern_length": 2**70}},
    ],
    ids=["metadata-int-over-64-bits", "config-int-over-64-bits"],
)
async def test_create_unencodable_value_is_422(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    r = await http.post("/sessions", json={"node_id": node(), **body})
    err = _one_error(r)
    assert err["type"] == "value_error" and err["loc"] == ["body", next(iter(body))]
    assert "64-bit" in err["msg"]


async def test_create_too_deep_metadata_is_422(http: httpx.AsyncClient) -> None:
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    r = await http.post(
        "/sessions",
        content=b'{"node_id": "' + node().encode() + b'", "metadata": ' + deep + b"}",
        headers={"content-type": "application/json"},
    )
    err = _one_error(r)
    assert err["loc"] == ["body", "metadata"] and "Recursion" in err["msg"]


@pytest.mark.parametrize(
    ("ttl", "kind"),
    [
        (99999999999999, "less_than_equal"),
        (-1, "greater_than_equal"),
        (0, "greater_than_equal"),
        (2**70, "less_than_equal"),
    ],
)
async def test_extend_out_of_range_ttl_is_422(
    http: httpx.AsyncClient, gateway: Gateway, ttl: int, kind: str
) -> None:
    sid = (await gateway.sessions.create("n-extend", ttl_seconds=60)).session_id
    r = await http.post(f"/sessions/{sid}/extend?ttl_seconds={ttl}")
    err = _one_error(r)
    assert err["type"] == kind and err["loc"] == ["query", "ttl_seconds"]
    assert await gateway.sessions.get(sid) is not None  # untouched


@pytest.mark.parametrize("suffix", ["", "/stm", "/observe", "/exists"])
async def test_overlong_session_id_is_422(http: httpx.AsyncClient, suffix: str) -> None:
    sid = "s" * (MAX_ID + 1)
    method = "POST" if suffix == "/observe" else "GET"
    r = await http.request(method, f"/sessions/{sid}{suffix}", json={})
    err = _one_error(r)
    assert err["type"] == "string_too_long" and err["loc"] == ["path", "session_id"]
    assert r.headers["x-trace-id"]


async def test_body_over_the_envelope_limit_is_413(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    """10 MB, declared by Content-Length: refused before the route reads a byte."""
    sid = (await gateway.sessions.create("n-big")).session_id
    body = orjson.dumps({"strings": ["a" * 10_000_000]})
    for path in ("observe", "learn", "config"):
        r = await http.post(
            f"/sessions/{sid}/{path}", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert r.json() == {
            "detail": f"Request body is {len(body)} bytes, the limit is {LIMIT} bytes "
            "(KATO_STREAM_MAX_MESSAGE_BYTES)"
        }
    r = await http.post("/sessions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_chunked_body_over_the_limit_is_413(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    """No Content-Length: counted as it arrives."""
    sid = (await gateway.sessions.create("n-big")).session_id

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b" " * 100_000
        yield b"{}"

    r = await http.post(
        f"/sessions/{sid}/observe", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json() == {
        "detail": f"Request body is over the limit of {LIMIT} bytes (KATO_STREAM_MAX_MESSAGE_BYTES)"
    }


async def test_nan_in_an_invalid_body_is_422_not_500(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    sid = (await gateway.sessions.create("n-nan")).session_id
    r = await http.post(
        f"/sessions/{sid}/observe",
        content=b'{"strings": [NaN]}',
        headers={"content-type": "application/json"},
    )
    assert r.json() == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "strings", 0],
                "msg": "Input should be a valid string",
                "input": None,
            }
        ]
    }


async def test_observe_unencodable_metadata_is_422(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    sid = (await gateway.sessions.create("n-enc")).session_id
    r = await http.post(f"/sessions/{sid}/observe", json={"metadata": {"x": -(2**70)}})
    err = _one_error(r)
    assert err["loc"] == ["body", "metadata"]


async def test_lone_surrogate_is_422(http: httpx.AsyncClient, gateway: Gateway) -> None:
    """Valid JSON, but not UTF-8 once decoded: nothing can carry it to the worker."""
    sid = (await gateway.sessions.create("n-sur")).session_id
    r = await http.post(
        f"/sessions/{sid}/observe",
        content=b'{"strings": ["\\ud800"]}',
        headers={"content-type": "application/json"},
    )
    err = _one_error(r)
    assert err["type"] == "value_error" and "surrogates" in err["msg"]


async def test_config_update_unencodable_is_422(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sid = (await gateway.sessions.create("n-cfg")).session_id
    r = await http.post(f"/sessions/{sid}/config", json={"config": {"persistence": 2**64}})
    err = _one_error(r)
    assert err["loc"] == ["body"] and err["type"] == "value_error"


async def test_overlong_sequence_unique_id_is_422(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    sid = (await gateway.sessions.create("n-uid")).session_id
    r = await http.post(
        f"/sessions/{sid}/observe-sequence",
        json={"observations": [{"strings": ["a"], "unique_id": "u" * (MAX_ID + 1)}]},
    )
    err = _one_error(r)
    assert err["loc"] == ["body", "observations", 0, "unique_id"]
    assert err["type"] == "string_too_long"


async def test_sequence_over_the_cap_is_422(http: httpx.AsyncClient, gateway: Gateway) -> None:
    sid = (await gateway.sessions.create("n-seq")).session_id
    items = [{"strings": [str(i)]} for i in range(MAX_SEQUENCE + 1)]
    r = await http.post(f"/sessions/{sid}/observe-sequence", json={"observations": items})
    err = _one_error(r)
    assert err["type"] == "too_long" and err["loc"] == ["body", "observations"]
    assert err["ctx"]["max_length"] == MAX_SEQUENCE


# -- through the worker -----------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_sequence_at_the_cap_is_answered(http: httpx.AsyncClient) -> None:
    """The longest sequence allowed, learning after each observation: answered (in a few
    seconds), its answer within the output limit."""
    sid = await _session(http)
    items = [{"strings": [f"a{i}", f"b{i}"], "emotives": {"e": 0.5}} for i in range(MAX_SEQUENCE)]
    r = await http.post(
        f"/sessions/{sid}/observe-sequence",
        json={"observations": items, "learn_after_each": True},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["observations_processed"] == MAX_SEQUENCE
    assert len(body["auto_learned_patterns"]) == MAX_SEQUENCE


@pytest.mark.usefixtures("worker")
async def test_observe_with_a_2mb_string_is_413(http: httpx.AsyncClient) -> None:
    sid = await _session(http)
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["x" * 2_000_000]})
    assert r.status_code == 413 and "limit is" in r.json()["detail"]
    assert (await http.get(f"/sessions/{sid}/stm")).json()["length"] == 0


@pytest.mark.usefixtures("worker")
async def test_envelope_over_the_limit_is_413_before_publishing(
    http: httpx.AsyncClient,
) -> None:
    """A body under the limit whose envelope is over it (integers become floats)."""
    sid = await _session(http)
    body = {"vectors": [[1] * 400_000]}
    assert len(orjson.dumps(body)) < LIMIT
    r = await http.post(f"/sessions/{sid}/observe", json=body)
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert detail.startswith("The observe command would be ") and f"at most {LIMIT}" in detail
    assert (await http.get(f"/sessions/{sid}/stm")).json()["length"] == 0


@pytest.mark.usefixtures("worker")
async def test_observe_whose_state_is_too_large_is_413_and_stm_stays(
    http: httpx.AsyncClient,
) -> None:
    """900 KB observed twice over in the state (STM and percept data): the worker refuses
    it (STATE_TOO_LARGE) and applies nothing, so GET /stm afterwards still answers."""
    sid = await _session(http)
    assert (await http.post(f"/sessions/{sid}/observe", json={"strings": ["a"]})).is_success
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": ["b" * 900_000]})
    assert r.status_code == 413, r.text
    assert "state" in r.json()["detail"]  # the worker's STATE_TOO_LARGE message
    r = await http.get(f"/sessions/{sid}/stm")
    assert r.status_code == 200 and r.json()["stm"] == [["a"]]


@pytest.mark.usefixtures("worker")
async def test_sequence_learning_a_pattern_too_large_is_413(http: httpx.AsyncClient) -> None:
    """The STM stays small enough between observations; the learned pattern does not."""
    sid = await _session(http)
    items = [{"strings": [c * 505_000]} for c in "ab"]
    r = await http.post(
        f"/sessions/{sid}/observe-sequence", json={"observations": items, "learn_at_end": True}
    )
    assert r.status_code == 413, r.text
    assert "pattern" in r.json()["detail"]  # the worker's PATTERN_TOO_LARGE message
    assert (await http.get(f"/sessions/{sid}/stm")).json()["length"] == 0
    await _alive(http)


@pytest.mark.usefixtures("worker")
async def test_too_large_answers(http: httpx.AsyncClient) -> None:
    """Predictions on a learned 50,000-symbol pattern make every answer carrying them
    larger than the worker publishes (status 'truncated'): the observe's answer is rebuilt,
    GET /stm and /predictions say the answer is too large."""
    sid = await _session(http)
    symbols = [f"s{i}" for i in range(50_000)]
    assert (await http.post(f"/sessions/{sid}/observe", json={"strings": symbols})).is_success
    assert (await http.post(f"/sessions/{sid}/learn")).is_success
    r = await http.post(f"/sessions/{sid}/observe", json={"strings": symbols})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unique_id"].startswith("obs-")
    assert {k: v for k, v in body.items() if k != "unique_id"} == {
        "status": "okay",
        "session_id": sid,
        "processor_id": body["processor_id"],
        "stm_length": 1,
        "time": 2,
        "auto_learned_pattern": None,
    }
    for path, op in (("stm", "get"), ("predictions", "predict")):
        r = await http.get(f"/sessions/{sid}/{path}")
        assert r.status_code == 413, r.text
        assert r.json()["detail"].startswith(f"The answer to {op} is too large to return (")
    r = await http.post(f"/sessions/{sid}/clear-stm")  # still usable
    assert r.status_code == 200
    assert (await http.get(f"/sessions/{sid}/stm")).json()["length"] == 0


@pytest.mark.usefixtures("worker")
async def test_rejected_large_observe_is_prompt_and_worker_survives(
    http: httpx.AsyncClient,
) -> None:
    """A rejected command close to the envelope limit: its dead letter must still fit."""
    sid = await _session(http)
    body = {"strings": ["a" * 800_000], "vectors": [[1.0], [1.0, 2.0]]}
    r = await http.post(f"/sessions/{sid}/observe", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["type"] == "vector_length_mismatch"
    await _alive(http)


@pytest.mark.usefixtures("worker")
async def test_rejected_large_config_is_prompt_and_worker_survives(
    http: httpx.AsyncClient,
) -> None:
    sid = await _session(http)
    r = await http.post(
        f"/sessions/{sid}/config",
        json={"config": {"recall_threshold": 5, "note": "x" * 800_000}},
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["validation_errors"] == {
        "recall_threshold": "Must be a number between 0.0 and 1.0"
    }
    await _alive(http)


@pytest.mark.usefixtures("worker")
async def test_rejection_without_msg_id_is_matched_by_offset(gateway: Gateway) -> None:
    """The worker cannot name a msg_id it cannot read (here: not a string); its rejection
    names the input record instead, and that is enough to answer the request."""
    assert gateway.stream is not None
    sid = (await gateway.sessions.create("n-src")).session_id
    value = orjson.dumps(
        {"op": "observe", "session_id": sid, "node_id": "n-src", "msg_id": 7, "payload": {}}
    )
    rec = await gateway.stream.exchange(value, sid.encode(), None, timeout=15)
    assert rec["status"] == "rejected" and rec["msg_id"] is None
    assert rec["error"]["code"] == "WRONG_TYPE"


@pytest.mark.usefixtures("worker")
async def test_overlong_msg_id_rejection_is_413_not_504(gateway: Gateway) -> None:
    """The worker leaves an overlong msg_id out of its rejection (OVERSIZED)."""
    sid = (await gateway.sessions.create("n-mid")).session_id
    with pytest.raises(Reply) as exc:
        await gateway.command("observe", sid, "n-mid", {}, msg_id="m" * (MAX_ID + 1))
    assert exc.value.response.status_code == 413
    assert b"msg_id" in exc.value.response.body


# -- units: the client's and the error mapping's rules ----------------------------------


def test_client_refuses_what_the_worker_would() -> None:
    client = StreamClient("unused:9092", "in", "out", max_bytes=2048)
    env = {"op": "observe", "session_id": "s", "node_id": "n", "msg_id": "m"}
    with pytest.raises(EnvelopeTooLarge) as exc:
        client.encode({**env, "payload": {"strings": ["x" * 2048]}})
    assert exc.value.limit == 2048 and exc.value.size > 2048
    with pytest.raises(PayloadNotEncodable):
        client.encode({**env, "payload": {"metadata": {"x": 2**64}}})
    assert orjson.loads(client.encode({**env, "payload": {}}))["op"] == "observe"


class _AnsweringProducer:
    """Delivers the worker's answer before ``send_and_wait`` returns (a fast worker)."""

    def __init__(self, client: StreamClient, answer: dict[str, Any] | None) -> None:
        self.client, self.answer = client, answer

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> SimpleNamespace:
        if self.answer is not None:
            self.client._deliver(orjson.dumps(self.answer))
        await asyncio.sleep(0)
        return SimpleNamespace(partition=1, offset=41)


def _rejection(**over: Any) -> dict[str, Any]:
    return {
        "msg_id": None,
        "session_id": None,
        "status": "rejected",
        "error": {"code": "MALFORMED_JSON", "message": "bad"},
        "source": {"topic": "in", "partition": 1, "offset": 41},
        **over,
    }


async def test_client_matches_an_early_rejection_by_offset() -> None:
    client = StreamClient("unused:9092", "in", "out", timeout=2)
    client._producer = _AnsweringProducer(client, _rejection())  # type: ignore[assignment]
    rec = await client.exchange(b"{}", b"k", "mine")
    assert rec["error"]["code"] == "MALFORMED_JSON"
    assert not client._orphans and not client._by_source and not client._pending


@pytest.mark.parametrize(
    "other",
    [
        {"source": {"topic": "in", "partition": 0, "offset": 41}},  # another partition
        {"source": {"topic": "elsewhere", "partition": 1, "offset": 41}},
        {"msg_id": "someone-else"},  # names a request of another replica
        {"status": "ok"},
    ],
)
async def test_client_ignores_records_not_answering_it(other: dict[str, Any]) -> None:
    client = StreamClient("unused:9092", "in", "out", timeout=0.3)
    client._producer = _AnsweringProducer(client, _rejection(**other))  # type: ignore[assignment]
    with pytest.raises(Exception, match="no record for"):
        await client.exchange(b"{}", b"k", "mine")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("OVERSIZED", 413),
        ("STATE_TOO_LARGE", 413),
        ("PATTERN_TOO_LARGE", 413),
        ("OUTPUT_TOO_LARGE", 413),
        ("WRONG_TYPE", 400),
        ("MISSING_FIELD", 400),
        ("UNKNOWN_OP", 400),
        ("KEY_MISMATCH", 400),
        ("NODE_MISMATCH", 400),
        ("DUPLICATE", 409),
    ],
)
def test_rejection_codes_map_to_4xx(code: str, status: int) -> None:
    r = from_rejection({"code": code, "message": f"{code} says why"}, "sid")
    assert r.status_code == status
    assert orjson.loads(r.body) == {"detail": f"{code} says why"}


def test_unknown_rejection_code_stays_500() -> None:
    assert from_rejection({"code": "SOMETHING_NEW"}, "sid").status_code == 500


def _truncated(op: str, **over: Any) -> dict[str, Any]:
    return {
        "op": op,
        "msg_id": "obs-1",
        "session_id": "sid",
        "node_id": "n",
        "status": "truncated",
        "error": {
            "code": "OUTPUT_TOO_LARGE",
            "message": "output record is 2000000 bytes, limit is 1000000",
            "details": {"size": 2000000, "limit": 1000000},
        },
        "response": None,
        "stm_length": 3,
        "time": 5,
        "learned_patterns": [],
        **over,
    }


def test_truncated_answers() -> None:
    assert truncated_response("observe", _truncated("observe", learned_patterns=["PTRN|x"])) == {
        "status": "okay",
        "session_id": "sid",
        "processor_id": "n",
        "stm_length": 3,
        "time": 5,
        "unique_id": "obs-1",
        "auto_learned_pattern": "PTRN|x",
    }
    assert truncated_response("configure", _truncated("configure")) == {
        "status": "okay",
        "message": "Configuration updated",
        "session_id": "sid",
    }
    with pytest.raises(Reply) as exc:
        truncated_response("get", _truncated("get"))
    assert exc.value.response.status_code == 413
    assert orjson.loads(exc.value.response.body) == {
        "detail": "The answer to get is too large to return (2000000 bytes, limit 1000000)"
    }
    with pytest.raises(Reply) as exc:
        truncated_response("observe_sequence", _truncated("observe_sequence"))
    assert orjson.loads(exc.value.response.body)["detail"].endswith("; the command was applied")
