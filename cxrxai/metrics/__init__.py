"""Localisation and faithfulness metrics over batches of heatmaps and masks."""
