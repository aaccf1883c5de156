"""Train: the network, the data loader with augmentation, and the training loop."""
