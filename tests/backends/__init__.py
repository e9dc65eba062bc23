"""The execution backends: strategies, fast kernels and memory."""
