"""Datasets, samplers and downloads."""
