"""The documentation, docstrings, README, notebooks and examples."""
