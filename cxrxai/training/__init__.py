"""Fine-tuning classifiers and writing their model cards (``python -m cxrxai train``)."""
