"""Every call into libc that Python's stdlib lacks lives in this package.

Each wrapper documents the flags it takes and what its errno values mean;
nothing outside ``dockyard.sys`` loads libc.
"""
