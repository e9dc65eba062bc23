"""The test suite of mamlkit: one folder per package of ``src/mamlkit``, shared code in
:mod:`tests.helpers` (a package, so that same-named test modules in different folders do not
collide and test modules import helpers, never each other)."""
