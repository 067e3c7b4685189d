"""KATO's predictor: the entry point, :func:`predict`, and the types it takes and returns.

Three paths, exactly as KATO 3.10.1 (spec §5): a single-symbol STM takes the fast path
(§5.7, :mod:`.predictor.fast_path`); anything longer takes the full path (§5.3-5.6),
computed by the C kernel end to end where it applies (:mod:`.predictor.kernel_path`) and
otherwise by the generic path (:mod:`.predictor.full_path`), the reference the others are
tested against.  Every float is computed in KATO's evaluation order so JSON output matches
KATO's bit for bit where KATO itself is deterministic.  The steps of a prediction live in
:mod:`kato_stream.core.predictor` (its docstring lists them).

Deliberate deviations (DESIGN.md): ties are broken by pattern name, ``_pre_potential``
is not emitted, the session's ``rank_sort_algo`` is honoured, and ``future_potentials``
are not recomputed on the fast path (returned empty with ``fast_path=True``; the engine
substitutes the session's last value).

Speed: KATO scores every pattern.  Here an inverted index (symbol -> patterns) gives
each pattern an upper bound on its LCS with the state; patterns whose bound cannot
reach ``recall_threshold`` are skipped, which cannot change the output (proved by a
property test against ``MatcherOptions(exhaustive=True)``).  With the C kernel
(``kernel.py``) the full path runs in C and numpy instead: one pass over all patterns,
ensemble statistics over the survivors, Python objects only for the returned predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

from .config import RANK_SORT_ALGOS
from .knowledge import KnowledgeBase
from .predictor.fast_path import fast_path
from .predictor.full_path import full_path
from .predictor.kernel_path import full_path_kernel, kernel_index
from .predictor.params import MatcherOptions, PredictionResult, PredictParams

__all__ = ["RANK_KEYS", "MatcherOptions", "PredictParams", "PredictionResult", "predict"]

RANK_KEYS = RANK_SORT_ALGOS  # every key a session may rank by

#: The process's matcher: the C kernel when it runs here, the inverted index.
_PROCESS_MATCHER = MatcherOptions()


def predict(
    kb: KnowledgeBase,
    stm: Sequence[Sequence[str]],
    params: PredictParams,
    options: MatcherOptions = _PROCESS_MATCHER,
) -> PredictionResult:
    """Predictions for ``stm`` against ``kb`` (read-only; deterministic).

    ``options`` chooses how the multi-symbol path computes (never what it returns).
    """
    state = [s for ev in stm for s in ev]
    if not state:
        return PredictionResult([], [], False)
    if len(state) == 1:
        return PredictionResult(fast_path(kb, state[0], params), [], True)
    events = [list(ev) for ev in stm]
    idx = kernel_index(kb, state, params, options)
    if idx is not None:
        preds, fps = full_path_kernel(kb, idx, events, state, params, options.encoded)
    else:
        preds, fps = full_path(kb, events, state, params, options)
    return PredictionResult(preds, fps, False)
