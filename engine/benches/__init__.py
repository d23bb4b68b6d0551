"""Benchmark targets for ``python -m engine bench``; see :mod:`engine.benches.cli`."""
