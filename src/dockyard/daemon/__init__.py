"""The daemon process: flags, daemon.json, wiring of services, the event bus."""
