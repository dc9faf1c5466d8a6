"""The one error vocabulary of Dockyard.

Lower layers raise one of these kinds with a message that already reads like
Docker's (``No such container: x``); only ``api/`` turns them into HTTP
responses, using the ``status`` each kind carries. Every kind has exactly one
meaning, written on it.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of all errors the engine raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DockyardError):
    """The request itself is wrong: bad JSON, bad reference, bad option."""

    status = 400


class Unauthorized(DockyardError):
    """Credentials are missing or were refused."""

    status = 401


class Forbidden(DockyardError):
    """The caller may not do this, whatever it sends."""

    status = 403


class NotFound(DockyardError):
    """The named object (container, image, ...) does not exist."""

    status = 404


class Conflict(DockyardError):
    """The object exists, but its state forbids the operation (name in use,
    container running, image in use)."""

    status = 409


class NotModified(DockyardError):
    """Nothing to do: the container is already started or stopped."""

    status = 304


class FailedPrecondition(DockyardError):
    """The operation cannot run in the engine's present state."""

    status = 412


class NotImplemented(DockyardError):
    """This engine does not do that (yet)."""

    status = 501


class Unavailable(DockyardError):
    """A dependency (shim, runtime, registry) did not answer."""

    status = 503


class System(DockyardError):
    """An internal failure: a syscall, the runtime, the disk."""

    status = 500


class RuntimeFailure(System):
    """The OCI runtime refused to create or start a container.

    ``exit_code`` is what the CLI should exit with: 127 when the command was
    not found, 126 when it could not be run, 125 otherwise.
    """

    def __init__(self, message: str, *, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code
