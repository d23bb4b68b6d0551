"""Studies: multi-seed train + evaluate per arm, and their report."""
