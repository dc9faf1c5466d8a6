"""The `dockyard` command: a docker-compatible CLI (entry point cli.main:main)."""
