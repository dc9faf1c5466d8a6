"""The container lifecycle: states and the transitions between them.

Rules (Docker's, from moby's container/state.go):

* ``created`` is where every container starts; ``start`` makes it ``running``.
* A running container ``exit``s to ``exited`` with an exit code kept for
  inspect, or is ``restart``ed by its policy (``restarting`` → ``running``).
* Only a non-running container may be removed without force; removal passes
  through ``removing`` and the record disappears. A removal that fails
  half-way leaves ``dead``.

Every state change in the engine goes through :func:`transition`.
"""

from __future__ import annotations

from enum import StrEnum

from dockyard import errdefs


class Status(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class Event(StrEnum):
    START = "start"
    EXIT = "exit"
    RESTART = "restart"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    REMOVE = "remove"
    FAIL = "fail"  # start failed or removal failed half-way


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.START): S.RUNNING,
    (S.CREATED, E.FAIL): S.CREATED,
    (S.CREATED, E.REMOVE): S.REMOVING,
    (S.EXITED, E.START): S.RUNNING,
    (S.EXITED, E.FAIL): S.EXITED,
    (S.EXITED, E.REMOVE): S.REMOVING,
    (S.RUNNING, E.EXIT): S.EXITED,
    (S.RUNNING, E.RESTART): S.RESTARTING,
    (S.RUNNING, E.PAUSE): S.PAUSED,
    (S.RUNNING, E.REMOVE): S.REMOVING,
    (S.PAUSED, E.UNPAUSE): S.RUNNING,
    (S.PAUSED, E.EXIT): S.EXITED,
    (S.RESTARTING, E.START): S.RUNNING,
    (S.RESTARTING, E.EXIT): S.EXITED,
    (S.RESTARTING, E.REMOVE): S.REMOVING,
    (S.REMOVING, E.FAIL): S.DEAD,
    (S.REMOVING, E.EXIT): S.REMOVING,
    (S.DEAD, E.REMOVE): S.REMOVING,
}


def transition(current: Status, event: Event) -> Status:
    """The state after ``event``; an impossible change is a Conflict."""
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise errdefs.Conflict(f"cannot {event.value} a container that is {current.value}")
