"""Training and evaluation: typed configs, the training loop, the test protocols, the demo."""
