"""Containers: the record, the state machine, logs and the container service."""
