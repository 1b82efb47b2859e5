"""The `gateway` command: one module per command group, a thin layer over the services."""
