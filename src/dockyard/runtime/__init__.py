"""Running containers: OCI spec generation, the runtimes, cgroups and the shim."""
