"""Evaluate: colorization metrics for the model and the gray baseline, and sample grids."""
