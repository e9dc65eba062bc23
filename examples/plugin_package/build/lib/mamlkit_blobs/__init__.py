"""Example mamlkit plug-ins: a dataset, a model and an algorithm from another package."""
