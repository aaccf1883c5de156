"""Sweep: Optuna studies over learning rate and decoder width, using the train stage's loop."""
