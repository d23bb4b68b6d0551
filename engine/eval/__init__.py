"""Evaluation: metrics, kNN, probes, displacement and the `eval` command."""
