"""facegate sub-commands, one module each (see facegate.cli)."""
