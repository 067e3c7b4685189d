"""The engine: one command in, one deterministic result out (docs/contracts.md §1).

``Engine.handle`` applies one command of one session to that session's state, the
node's knowledge base and vector index, and returns the KATO-shaped response plus
the predictions on the resulting STM.  It reads no clock, draws no random number and
generates no uuid: identifiers derive from the command's ``msg_id``/``source``, so a
replayed stream reproduces every byte.

KATO semantics are followed exactly (event building, time, accumulators, auto-learn
with its quirks, the minimum-pattern rule, ...) except for the deliberate deviations
of DESIGN.md, each marked "Deviation" below and listed in docs/deviations.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kato_stream.core.config import (
    STM_MODES,
    EngineDefaults,
    SessionConfig,
    apply_create,
    validate_update,
)
from kato_stream.core.errors import CommandError, EmptySTMError, ObservationError
from kato_stream.core.knowledge import (
    KnowledgeBase,
    LearnEvent,
    Precomputed,
    average_emotives,
)
from kato_stream.core.naming import pattern_name, prefixed, sum_vectors, vector_name
from kato_stream.core.observation import Observation, parse_observation
from kato_stream.core.predictions import PredictionResult, PredictParams, predict
from kato_stream.core.predictor.encoded import EncodedPredictions, own
from kato_stream.core.session import SessionState
from kato_stream.core.vectors import VectorIndex

#: ``predict``'s signature; the stream layer may pass a caching wrapper (it must return
#: exactly what ``predict`` would).
Predictor = Callable[[KnowledgeBase, Sequence[Sequence[str]], PredictParams], PredictionResult]

OPS = (
    "open",
    "observe",
    "observe_sequence",
    "learn",
    "clear_stm",
    "clear_all",
    "configure",
    "predict",
    "get",
    "finalize_training",
    "close",
)


@dataclass(frozen=True)
class Command:
    """One input command.  ``source`` is ``"topic:partition:offset"`` of the input record.

    ``msg_id`` (client id) or else ``source`` is the command's identity: it names the
    learns and observations it causes, which is what makes redelivery harmless.
    """

    op: str
    session_id: str
    node_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    msg_id: str | None = None
    source: str = ""

    @property
    def key(self) -> str:
        """Identity of the command's effects: ``"{session}/{msg_id}"`` or the source.

        Client ids are only unique per session, so they are scoped by it; two sessions
        of one node that reuse a msg id still learn twice.
        """
        return f"{self.session_id}/{self.msg_id}" if self.msg_id else self.source


@dataclass
class CommandResult:
    """What one command produced (fields per docs/contracts.md §1)."""

    state: SessionState | None
    response: dict[str, Any]
    predictions: Sequence[dict[str, Any]]
    future_potentials: Sequence[dict[str, Any]]
    learned: list[LearnEvent]
    cleared: str | None
    recall_threshold: float


def collapse_metadata(dicts: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """KATO's learn-time metadata: per key the sorted distinct ``str()`` of every value."""
    out: dict[str, set[str]] = {}
    for d in dicts:
        for k, v in d.items():
            out.setdefault(k, set()).add(str(v))
    return {k: sorted(v) for k, v in out.items()}


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class _Ctx:
    """Mutable per-command context: the working state and what happened to it."""

    def __init__(
        self,
        engine: Engine,
        cmd: Command,
        state: SessionState,
        kb: KnowledgeBase,
        vectors: VectorIndex,
        recall_floor: float | None = None,
    ) -> None:
        self.engine = engine
        self.recall_floor = recall_floor
        self.cmd = cmd
        self.st = state
        self.kb = kb
        self.vectors = vectors
        self.learned: list[LearnEvent] = []
        self.cleared: str | None = None
        self.learn_count = 0
        self.in_sequence = False
        self.fp_updates = 0  # makes future_potentials_id unique within the command
        # Result predictions already known for (kb.version, stm) — avoids computing twice.
        self.cached: tuple[int, list[list[str]], PredictionResult] | None = None

    def cfg(self, key: str) -> Any:
        return self.st.config.get(key, self.engine.defaults)

    def next_learn_id(self) -> str:
        """``msg_id``/``source``, plus ``#i`` for the i-th learn inside observe_sequence."""
        base = self.cmd.key
        lid = f"{base}#{self.learn_count}" if self.in_sequence else base
        self.learn_count += 1
        return lid


class Engine:
    """Stateless apart from its process defaults; safe to share between sessions."""

    def __init__(
        self,
        defaults: EngineDefaults | None = None,
        predictor: Predictor | None = None,
        admit: Callable[[LearnEvent], None] | None = None,
    ) -> None:
        self.defaults = defaults or EngineDefaults()
        self.predictor: Predictor = predictor or predict
        #: Called with every learn before it changes the knowledge base; raises a KatoError
        #: (e.g. PatternTooLarge) to refuse it, so a refused learn changes nothing.
        self.admit = admit
        self._ops: dict[str, Callable[[_Ctx], dict[str, Any]]] = {
            "open": self._open,
            "observe": self._observe_cmd,
            "observe_sequence": self._observe_sequence,
            "learn": self._learn_cmd,
            "clear_stm": self._clear_stm_cmd,
            "clear_all": self._clear_all,
            "configure": self._configure,
            "predict": self._predict_cmd,
            "get": self._get,
            "finalize_training": self._finalize,
            "close": self._close,
        }

    # -- public ---------------------------------------------------------------------------

    def new_session(self, session_id: str, node_id: str) -> SessionState:
        """A fresh session with default config (implicit open)."""
        return SessionState(session_id=session_id, node_id=node_id)

    def handle(
        self,
        cmd: Command,
        state: SessionState | None,
        kb: KnowledgeBase,
        vectors: VectorIndex,
        recall_floor: float | None = None,
    ) -> CommandResult:
        """Apply ``cmd``; ``state`` is ``None`` for a session not seen before.

        ``recall_floor`` (the adaptive controller's, under load) raises every recall
        threshold used by this command to at least that value; the threshold actually
        used is ``CommandResult.recall_threshold``.

        Raises a ``KatoError`` for a rejected command; the input ``state`` is never
        modified (the result carries a new object) and nothing is applied to ``kb``
        or ``vectors`` when the command is rejected.
        """
        handler = self._ops.get(cmd.op)
        if handler is None:
            raise CommandError(f"Unknown op {cmd.op!r}; expected one of: {', '.join(OPS)}")
        if not cmd.session_id:
            raise CommandError("Command has no session_id")
        if not cmd.node_id:
            raise CommandError("Command has no node_id")
        if kb.node_id != cmd.node_id:
            raise CommandError(
                f"Knowledge base of node {kb.node_id!r} passed for node {cmd.node_id!r}"
            )
        if state is not None and state.node_id != cmd.node_id:
            raise CommandError(
                f"Session {cmd.session_id} belongs to node {state.node_id!r}, not {cmd.node_id!r}"
            )
        if cmd.op not in ("predict", "get", "close", "open") and not cmd.key:
            raise CommandError("Command needs a msg_id or a source (its idempotency key)")
        st = self.new_session(cmd.session_id, cmd.node_id) if state is None else state.copy()
        ctx = _Ctx(self, cmd, st, kb, vectors, recall_floor)
        response = handler(ctx)
        if cmd.op == "close":
            return CommandResult(
                None, response, [], [], ctx.learned, ctx.cleared, self._threshold(ctx)
            )
        if cmd.source:
            ctx.st.last_offset = cmd.source
        ctx.st.trim(self.defaults.max_stm_size, self.defaults.max_accumulator_size)
        if cmd.op == "predict":
            preds, fps = response["predictions"], response["future_potentials"]
        elif cmd.op == "observe" and not ctx.cfg("process_predictions"):
            preds, fps = [], []
        else:
            preds, fps = self._result_predictions(ctx)
        return CommandResult(
            ctx.st, response, preds, fps, ctx.learned, ctx.cleared, self._threshold(ctx)
        )

    # -- predictions ------------------------------------------------------------------------

    def session_params(self, cfg: SessionConfig) -> PredictParams:
        """Prediction parameters with the session's config honoured."""
        d = self.defaults

        def g(key: str) -> Any:
            return cfg.get(key, d)

        fuzzy = g("fuzzy_token_threshold")
        return PredictParams(
            recall_threshold=float(g("recall_threshold")),
            max_predictions=int(g("max_predictions")),
            use_token_matching=bool(g("use_token_matching")),
            fuzzy_token_threshold=float(fuzzy) if fuzzy is not None else 0.0,
            rank_sort_algo=str(g("rank_sort_algo")),
            affinity_emotive=g("affinity_emotive"),
            filter_pipeline=tuple(g("filter_pipeline")),
            length_min_ratio=float(g("length_min_ratio")),
            length_max_ratio=float(g("length_max_ratio")),
            jaccard_threshold=float(g("jaccard_threshold")),
            jaccard_min_overlap=int(g("jaccard_min_overlap")),
            minhash_threshold=float(g("minhash_threshold")),
            minhash_bands=int(g("minhash_bands")),
            minhash_rows=int(g("minhash_rows")),
            minhash_num_hashes=int(g("minhash_num_hashes")),
            fast_path_token_matching=d.use_token_matching,
        )

    def observe_params(self) -> PredictParams:
        """KATO's observe-time searcher: process defaults, no filters, fuzzy or affinity."""
        d = self.defaults
        return PredictParams(
            recall_threshold=d.recall_threshold,
            max_predictions=d.max_predictions,
            use_token_matching=d.use_token_matching,
            rank_sort_algo=d.rank_sort_algo,
            fast_path_token_matching=d.use_token_matching,
        )

    def _threshold(self, ctx: _Ctx) -> float:
        configured = float(ctx.cfg("recall_threshold"))
        floor = ctx.recall_floor
        return configured if floor is None else max(configured, floor)

    def _run_predict(self, ctx: _Ctx, params: PredictParams) -> PredictionResult:
        floor = ctx.recall_floor
        if floor is not None and params.recall_threshold < floor:
            params = dataclasses.replace(params, recall_threshold=floor)
        res = self.predictor(ctx.kb, ctx.st.stm, params)
        if not isinstance(res.predictions, EncodedPredictions):  # the kernel writes none
            for p in res.predictions:
                p.pop("_pre_potential", None)  # Deviation: never emitted.
        return res

    def _fps(self, ctx: _Ctx, res: PredictionResult) -> Sequence[dict[str, Any]]:
        """future_potentials for the output; remembers full-path values in the session.

        Deviation: the fast path returns this *session's* last full-path value (KATO
        returns whatever the node's shared processor last computed).
        """
        if res.fast_path:
            return own(ctx.st.future_potentials)
        if ctx.st.stm and not res.future_potentials:
            ctx.st.future_potentials, ctx.st.future_potentials_id = [], None
        elif ctx.st.stm and res.future_potentials != ctx.st.future_potentials:
            # a new id only for a new list, so a read-only command stays read-only (a list
            # kept outside the table and not loaded reads [] here: it gets a new id too)
            ctx.st.future_potentials = own(res.future_potentials)
            ctx.fp_updates += 1
            ctx.st.future_potentials_id = f"{ctx.cmd.key}@{ctx.fp_updates}"
        return own(res.future_potentials)

    def _result_predictions(
        self, ctx: _Ctx
    ) -> tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]:
        """Predictions on the post-command STM with the session config honoured."""
        cached = ctx.cached
        if cached is not None and cached[0] == ctx.kb.version and cached[1] == ctx.st.stm:
            res = cached[2]
        else:
            res = self._run_predict(ctx, self.session_params(ctx.st.config))
        return res.predictions, self._fps(ctx, res)

    # -- event building and observe ---------------------------------------------------------

    def _build_event(self, ctx: _Ctx, obs: Observation) -> list[str]:
        """Vectors first then strings, each group sorted if the session's sort_symbols."""
        sort = bool(ctx.cfg("sort_symbols"))  # Deviation: KATO uses the process value only.
        vsyms: list[str] = []
        if obs.vectors:
            try:
                summed = sum_vectors(obs.vectors)
            except ValueError as exc:  # parse_observation already rejects this
                raise ObservationError(str(exc)) from None
            name = vector_name(summed)
            values = [float(x) for x in summed]
            # Own name first, then neighbours nearest first (deterministic without sort).
            for s in [name, *ctx.vectors.search(values, k=3)]:
                if s not in vsyms:
                    vsyms.append(s)
            # Deviation: deferred vectors belong to the session, not to the node/worker.
            ctx.st.deferred_vectors = [(n, v) for n, v in ctx.st.deferred_vectors if n != name]
            ctx.st.deferred_vectors.append((name, values))
            if sort:
                vsyms.sort()
        strings = list(obs.strings)
        if sort:
            strings.sort()
        return vsyms + strings

    def _observe(self, ctx: _Ctx, obs: Observation, unique_id: str) -> dict[str, Any]:
        """One observation (spec §3.2); returns KATO's observe response body."""
        st = ctx.st
        event = self._build_event(ctx, obs)
        observe_preds: Sequence[dict[str, Any]] = []
        if event:
            st.stm.append(event)
        # Deviation: accumulate before auto-learn so the learned events' emotives and
        # metadata go with an auto-learned pattern (KATO stores none).
        if obs.emotives:
            st.emotives_accumulator.append(dict(obs.emotives))
        if obs.metadata:
            st.metadata_accumulator.append(dict(obs.metadata))
        if event and ctx.cfg("process_predictions"):
            params = self.observe_params()
            res = self._run_predict(ctx, params)
            observe_preds = res.predictions
            self._fps(ctx, res)
            if params == self.session_params(st.config):
                ctx.cached = (ctx.kb.version, [list(e) for e in st.stm], res)
        auto: str | None = None
        if event:
            auto = self._auto_learn(ctx)
        st.time += 1
        st.percept_data = {
            "strings": sorted(obs.strings),
            "vectors": [list(v) for v in obs.vectors],
            "emotives": average_emotives(st.emotives_accumulator),
            "path": [],
            "metadata": dict(obs.metadata),
        }
        st.predictions = observe_preds
        # unique per command (its idempotency key) and observation (time grows within one)
        st.predictions_id = f"{ctx.cmd.key}#{st.time}" if observe_preds else None
        return {
            "status": "okay",
            "session_id": st.session_id,
            "processor_id": st.node_id,
            "stm_length": len(st.stm),
            "time": st.time,
            "unique_id": unique_id,
            "auto_learned_pattern": auto,
        }

    def _auto_learn(self, ctx: _Ctx) -> str | None:
        """KATO's auto-learn (spec §3.3), quirks included (``>=`` trigger, ``x[-0:]``)."""
        st = ctx.st
        mpl = int(ctx.cfg("max_pattern_length"))
        if mpl <= 0 or len(st.stm) < mpl:
            return None
        mode = ctx.cfg("stm_mode")
        if mode not in STM_MODES:
            mode = "CLEAR"
        n = len(st.stm)
        keep: list[list[str]] = []
        if n > 1 and mode == "ROLLING":
            w = mpl - 1
            # stm[-0:] is the whole STM: with max 1 ROLLING never shrinks (KATO quirk).
            keep = [list(e) for e in (st.stm[-w:] if n > w else st.stm[1:])]
        name = self._learn(ctx)
        st.stm = keep
        return name or None

    def _learn(self, ctx: _Ctx) -> str:
        """Learn the STM (spec §4.1-4.5); returns ``PTRN|name`` or ``""``.  Clears STM.

        Deviations: the accumulators are consumed (cleared) by every learn, and the
        session's persistence is honoured.
        """
        st = ctx.st
        events = [list(e) for e in st.stm]
        vectors = list(st.deferred_vectors)
        st.deferred_vectors = []
        learn_id = ctx.next_learn_id()
        st.stm = []
        emotives = st.emotives_accumulator
        metadata = st.metadata_accumulator
        st.emotives_accumulator = []
        st.metadata_accumulator = []
        if sum(len(e) for e in events) < 2:
            for name, values in vectors:
                ctx.vectors.add(name, values)
            return ""
        ev = LearnEvent(
            node_id=st.node_id,
            learn_id=learn_id,
            name=pattern_name(events),
            events=tuple(tuple(e) for e in events),
            emotives=tuple(dict(d) for d in emotives),
            metadata=collapse_metadata(metadata),
            persistence=int(ctx.cfg("persistence")),
            vectors=tuple((n, tuple(v)) for n, v in vectors),
        )
        if self.admit is not None:
            self.admit(ev)  # before anything shared changes: a refusal leaves no trace
        for name, values in vectors:
            ctx.vectors.add(name, values)
        ctx.kb.apply_learn(ev)
        ctx.learned.append(ev)
        return prefixed(ev.name)

    def _clear_stm(self, st: SessionState) -> None:
        st.stm = []
        st.emotives_accumulator = []
        st.metadata_accumulator = []
        st.time = 0
        st.percept_data = {}
        st.predictions = []
        st.predictions_id = None

    # -- ops ------------------------------------------------------------------------------

    def _open(self, ctx: _Ctx) -> dict[str, Any]:
        """Create-time rules; an open on an existing session starts it afresh (KATO create)."""
        p = ctx.cmd.payload
        cfg = apply_create(p.get("config"))
        ttl = p.get("ttl_seconds")
        meta = p.get("metadata")
        if meta is not None and not isinstance(meta, Mapping):
            raise CommandError("open: metadata must be an object")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
            raise CommandError("open: ttl_seconds must be an integer")
        st = self.new_session(ctx.cmd.session_id, ctx.cmd.node_id)
        st.config = cfg
        st.ttl_seconds = ttl if ttl else self.defaults.session_ttl
        st.metadata = dict(meta or {})
        ctx.st = st
        return {
            "session_id": st.session_id,
            "node_id": st.node_id,
            "ttl_seconds": ttl if ttl else 3600,
            "metadata": dict(st.metadata),
            "session_config": cfg.effective(self.defaults),
        }

    def _observe_cmd(self, ctx: _Ctx) -> dict[str, Any]:
        obs = parse_observation(ctx.cmd.payload)
        # Deviation: the client's message id is the observation id (KATO: random uuid).
        uid = ctx.cmd.msg_id or "obs-" + _sha1(ctx.cmd.source)[:32]
        return self._observe(ctx, obs, uid)

    def _observe_sequence(self, ctx: _Ctx) -> dict[str, Any]:
        p = ctx.cmd.payload
        items = p.get("observations", [])
        if not isinstance(items, list):
            raise ObservationError(
                "Invalid observe-sequence: observations must be a list",
                [
                    {
                        "type": "list_type",
                        "loc": ["body", "observations"],
                        "msg": "Input should be a valid array",
                        "input": items,
                    }
                ],
            )
        flags = {k: _lax_bool(p.get(k, False), k) for k in _SEQ_FLAGS}
        parsed: list[Observation] = []
        errors: list[Any] = []
        for i, item in enumerate(items):
            try:
                parsed.append(parse_observation(item, with_unique_id=True))
            except ObservationError as exc:
                for e in exc.details if isinstance(exc.details, list) else []:
                    e["loc"] = ["body", "observations", i, *e["loc"][1:]]
                    errors.append(e)
        if errors:
            raise ObservationError(f"Invalid observe-sequence: {errors[0]['msg']}", errors)
        st = ctx.st
        initial = len(st.stm)
        if not parsed:
            return _seq_response(st, 0, initial, [], [], None, flags["clear_stm_between"])
        ctx.in_sequence = True
        results: list[dict[str, Any]] = []
        names: list[str] = []
        final: str | None = None
        for i, obs in enumerate(parsed):
            if flags["clear_stm_between"] and i > 0:
                st.stm = []
            uid = obs.unique_id or (
                f"{ctx.cmd.msg_id}#{i}"
                if ctx.cmd.msg_id
                else "seq-obs-" + _sha1(f"{ctx.cmd.source}#{i}")[:32]
            )
            r = self._observe(ctx, obs, uid)
            if flags["learn_after_each"] and st.stm:
                names.append(self._learn(ctx))
            if r["auto_learned_pattern"]:
                names.append(r["auto_learned_pattern"])
            results.append(
                {
                    "status": "okay",
                    "sequence_position": i,
                    "stm_length": len(st.stm),
                    "time": r["time"],
                    "unique_id": uid,
                    "auto_learned_pattern": r["auto_learned_pattern"],
                }
            )
        if flags["learn_at_end"] and st.stm:
            final = self._learn(ctx)
            names.append(final)
        ctx.cached = None
        return _seq_response(
            st, len(parsed), initial, results, names, final, flags["clear_stm_between"]
        )

    def _learn_cmd(self, ctx: _Ctx) -> dict[str, Any]:
        if not ctx.st.stm:
            raise EmptySTMError()
        name = self._learn(ctx)
        return {
            "status": "learned",
            "pattern_name": name,
            "session_id": ctx.st.session_id,
            "processor_id": None,
            "message": f"Learned pattern {name} from {len(ctx.st.stm)} events",
        }

    def _clear_stm_cmd(self, ctx: _Ctx) -> dict[str, Any]:
        self._clear_stm(ctx.st)
        return {"status": "cleared", "session_id": ctx.st.session_id}

    def _clear_all(self, ctx: _Ctx) -> dict[str, Any]:
        """Forget the node's patterns and (deviation) its vectors; clear this session's STM."""
        clear_id = "clear:" + ctx.cmd.key
        ctx.kb.clear(clear_id)
        ctx.vectors.clear()
        ctx.cleared = clear_id
        ctx.st.deferred_vectors = []
        ctx.st.future_potentials = []
        ctx.st.future_potentials_id = None
        self._clear_stm(ctx.st)
        return {"status": "cleared", "session_id": ctx.st.session_id, "scope": "all"}

    def _configure(self, ctx: _Ctx) -> dict[str, Any]:
        changes = validate_update(ctx.cmd.payload)
        ctx.st.config = ctx.st.config.updated(changes)
        return {
            "status": "okay",
            "message": "Configuration updated",
            "session_id": ctx.st.session_id,
        }

    def _predict_cmd(self, ctx: _Ctx) -> dict[str, Any]:
        """Read-only (GET /predictions): the session state is returned unchanged."""
        res = self._run_predict(ctx, self.session_params(ctx.st.config))
        saved = own(ctx.st.future_potentials), ctx.st.future_potentials_id
        fps = self._fps(ctx, res)
        ctx.st.future_potentials, ctx.st.future_potentials_id = saved
        return {
            "predictions": res.predictions,
            "future_potentials": fps,
            "session_id": ctx.st.session_id,
            "processor_id": None,
            "count": len(res.predictions),
            "time": None,
            "unique_id": None,
        }

    def _get(self, ctx: _Ctx) -> dict[str, Any]:
        st = ctx.st
        return {
            "session_id": st.session_id,
            "node_id": st.node_id,
            "stm": [list(e) for e in st.stm],
            "time": st.time,
            "config": st.config.effective(self.defaults),
            "metadata": dict(st.metadata),
            "ttl_seconds": st.ttl_seconds
            if st.ttl_seconds is not None
            else self.defaults.session_ttl,
            "emotives_accumulator": [dict(d) for d in st.emotives_accumulator],
            "metadata_accumulator": [dict(d) for d in st.metadata_accumulator],
            "predictions": list(st.predictions),
            "percept_data": dict(st.percept_data),
        }

    def _finalize(self, ctx: _Ctx) -> dict[str, Any]:
        """finalize-training (spec §4.8): whole-pattern entropies and tf vectors."""
        kb = ctx.kb
        s_count = kb.distinct_symbols
        u = kb.total_unique_patterns
        ln_s = math.log(s_count) if s_count > 1 else 0.0
        n = 0
        for name in sorted(kb.patterns):
            rec = kb.patterns[name]
            length = rec.length
            counts = Counter(rec.flat)
            entropy = 0.0
            norm = 0.0
            gnorm = 0.0
            tf: dict[str, float] = {}
            for sym, c in counts.items():
                p = c / length
                entropy -= p * math.log2(p)
                if s_count > 1:
                    norm += -p * math.log(p) / ln_s
                    big_p = kb.pmf.get(sym, 0) / u if u else 0.0
                    if big_p > 0:
                        gnorm += -big_p * math.log(big_p) / ln_s
                tf[sym] = c / length
            kb.set_precomputed(name, Precomputed(entropy, norm, gnorm, tf))
            n += 1
        return {
            "status": "completed",
            "patterns_processed": n,
            "time_ms": 0.0,
            "session_id": ctx.st.session_id,
            "node_id": ctx.st.node_id,
            "message": f"Computed Shannon entropy and TF vectors for {n} patterns in 0.0ms",
        }

    def _close(self, ctx: _Ctx) -> dict[str, Any]:
        return {"status": "deleted", "session_id": ctx.st.session_id}


_SEQ_FLAGS = ("learn_after_each", "learn_at_end", "clear_stm_between")


def _lax_bool(value: Any, key: str) -> bool:
    """pydantic's lax bool for the observe-sequence flags."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.strip().lower()]
    raise ObservationError(
        f"Invalid observe-sequence: {key} must be a boolean",
        [
            {
                "type": "bool_parsing",
                "loc": ["body", key],
                "msg": "Input should be a valid boolean",
                "input": value,
            }
        ],
    )


_BOOL_STRINGS = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "t": True,
    "f": False,
    "y": True,
    "n": False,
}


def _seq_response(
    st: SessionState,
    processed: int,
    initial: int,
    results: list[dict[str, Any]],
    names: list[str],
    final: str | None,
    isolated: bool,
) -> dict[str, Any]:
    return {
        "status": "completed",
        "processor_id": st.node_id,
        "observations_processed": processed,
        "initial_stm_length": initial,
        "final_stm_length": len(st.stm),
        "results": results,
        "auto_learned_patterns": names,
        "final_learned_pattern": final,
        "isolated": isolated,
    }
