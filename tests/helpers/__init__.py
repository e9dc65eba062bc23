"""Code several test modules share: tiny models and tasks, hand-written references, fixtures on
disk and run helpers. Test modules import from here, never from each other."""
