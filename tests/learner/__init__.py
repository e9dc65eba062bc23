"""The learner's public API."""
