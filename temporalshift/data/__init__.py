"""Video data: decoding, frame sampling, clip transforms, datasets, preparation, synthetic data."""
