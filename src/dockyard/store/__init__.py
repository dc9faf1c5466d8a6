"""Storage: the metadata database, the content store and the snapshotters."""
