"""tffreeze server: freezes TensorFlow checkpoints into self-contained GraphDefs.

Layout: ``core`` (no gRPC: spec, loaders, resolution, rewriting, the engine),
``blobstore`` (content-addressed uploads), ``workers`` (TensorFlow in warm
subprocesses), ``tasks`` (what workers run), ``servicer`` (thin gRPC handlers),
``status`` (the one error -> status mapping), ``settings`` (defaults), ``app``
(server assembly), ``cli`` (``tffreeze-server``).
"""

__version__ = "0.3.0"
