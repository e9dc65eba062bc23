"""The command line: commands, listings and bad input."""
