"""Training: configs, optimisers, the loop, checkpoints and the run's data."""
