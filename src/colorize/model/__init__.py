"""The network and its file format: used by train, evaluate, predict and track alike."""
