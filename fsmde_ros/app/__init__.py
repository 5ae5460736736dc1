"""The `fsmde` command line, the demo and the pictures they draw."""
