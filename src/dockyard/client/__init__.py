"""A small, fast-importing Engine API client for the ``dockyard`` CLI."""

from dockyard.client.api import API_VERSION, Client, error_for, query
from dockyard.client.http import DEFAULT_HOST, Endpoint, Response

__all__ = ["API_VERSION", "DEFAULT_HOST", "Client", "Endpoint", "Response", "error_for", "query"]
