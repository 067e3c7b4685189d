"""The parts of KATO's predictor; :mod:`kato_stream.core.predictions` is the entry point.

Why a package: one prediction passes through distinct steps with distinct specs, each in
a module of its own so that it can be read and tested alone:

- :mod:`.params`: what is asked (``PredictParams``), returned (``PredictionResult``) and
  how it is computed (``MatcherOptions``: kernel or pure Python, index or exhaustive);
- :mod:`.fast_path`: a single-symbol STM (spec §5.7);
- :mod:`.matching`: one pattern against the state (§5.3 C/D, §5.4): blocks, matches,
  past/present/future, evidence, confidence, snr, fragmentation;
- :mod:`.candidates`: which patterns become candidates (§5.3 A/B, the §5.5.1 cut), by
  brute force, the inverted index or the C kernel;
- :mod:`.affinity`: the weighted_* metrics of an affinity emotive (§5.4 E);
- :mod:`.ensemble`: metrics over the candidate set (§5.5): itfdf, confluence, entropies,
  tfidf, predictive information, Bayesian fields, potential;
- :mod:`.output`: ranking and the shape of a full-path prediction;
- :mod:`.full_path`: the generic multi-symbol path, the reference;
- :mod:`.kernel_path`: the same path end to end in C and numpy.
"""
