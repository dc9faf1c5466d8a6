"""The engine's registry client: auth, manifests, pull, push, progress.

``pull.Puller`` and ``push.Pusher`` drive ``client.RegistryClient`` (aiohttp,
imported lazily) and store through ``image.service.ImageService``; the pure
parts (``auth``, ``manifests``, ``progress``) do no I/O.
"""
