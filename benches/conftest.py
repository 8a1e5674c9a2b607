"""pytest-benchmark over the cases of ``nemocore.bench`` (the same ones ``nemocore bench``
runs): each case is timed twice, ours and the peer's, in one run, grouped so that
``--benchmark-compare``-style tables show them side by side."""
