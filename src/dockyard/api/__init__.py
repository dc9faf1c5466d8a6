"""The Docker Engine API over HTTP: the only place errors become responses."""
