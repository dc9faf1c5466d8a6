"""An OCI Distribution Spec v1.1 registry server (``dockyard registry serve``).

``names`` validates what clients send, ``manifests`` parses what they push,
``storage`` keeps it on disk, ``auth`` decides who may do what, ``gc``
collects garbage while the server runs, and ``server`` is the HTTP edge.
"""
