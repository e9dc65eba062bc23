"""The functional core: the inner loop and the inner update rules."""
