"""tffreeze-api: the tffreeze contract for Python, owned by neither client nor server.

  tffreeze_api.v1        messages and gRPC stubs generated from protos/tffreeze/v1
                         (by `make gen`; the *_pb2_grpc modules import grpc)
  tffreeze_api.layout    which files of a tf.train.Saver directory form a checkpoint
                         (pure Python: importable without protobuf or grpc)
  tffreeze_api.options   FreezeOptions from user-level values ("NAME=VALUE" strings,
                         dicts, names); the only place option strings are parsed
  tffreeze_api.manifest  the manifest: FreezeResult <-> its JSON text, and its JSON schema
  tffreeze_api.fileio    large writes in 256 KiB pieces, shared by client and server

Importing this package imports nothing else.
"""

__version__ = "0.2.0"
# The ErrorInfo.domain of every error the service sends.
ERROR_DOMAIN = "tffreeze.v1"
