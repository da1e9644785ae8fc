"""Batch evaluation of explanations over a dataset, its results database and reports."""
