"""tffreeze server: freezes TensorFlow checkpoints into self-contained GraphDefs.

Layout: ``core`` (no gRPC: selection, name resolution, conversion), ``blobstore``
(content-addressed uploads), ``workers`` (TensorFlow in warm subprocesses),
``servicer`` (thin gRPC handlers), ``status`` (the one error -> status mapping),
``app`` (server assembly and the ``serve`` entry point).
"""

__version__ = "0.1.0"
