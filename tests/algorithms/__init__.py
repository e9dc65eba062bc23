"""What each algorithm does, and meta-gradients against hand-unrolled references and finite
differences."""
