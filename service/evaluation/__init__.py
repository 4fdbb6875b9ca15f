"""Evaluating trained models on labelled rows (stands between models and datasets)."""
