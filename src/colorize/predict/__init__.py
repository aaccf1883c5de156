"""Predict: full-resolution colorization of users' photos, and the served model."""
