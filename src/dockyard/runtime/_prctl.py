"""prctl(2) options the shim needs, until ``dockyard.sys`` grows a prctl module.

PR_SET_CHILD_SUBREAPER (36): orphaned descendants are re-parented to us
instead of to init, so the container's process (whose creator, e.g. ``runc
create``, exits) becomes our child and we can wait for it.
"""

from __future__ import annotations

from dockyard.sys.libc import check, libc

PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> None:
    check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
