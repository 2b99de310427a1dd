"""Networks built from the operations: the backend interface (NumPy and CUDA), the
layers, the paper's architectures and released weights, the geometry of windows,
dense evaluation, and the training loop."""
