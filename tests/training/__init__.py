"""Training: fit, runs, checkpoints, scale-out and end-to-end learning."""
