"""tffreeze-api: the tffreeze contract for Python, owned by neither client nor server.

  tffreeze_api.v1        messages and gRPC stubs generated from protos/tffreeze/v1
                         (by `make gen`; the *_pb2_grpc modules import grpc)
  tffreeze_api.errors    the error registry server and client share: one class per
                         status, with ErrorInfo reason/metadata and PreconditionFailure
                         violations (importable without protobuf or grpc)
  tffreeze_api.options   FreezeOptions from user-level values ("NAME=VALUE" strings,
                         dicts, names); the only place option strings are parsed (by the
                         server, for every client's PlanFreeze)
  tffreeze_api.manifest  the manifest: FreezeResult <-> its JSON text (printed by the
                         server only), and its JSON schema
  tffreeze_api.fileio    large writes in 256 KiB pieces, shared by client and server

Importing this package imports nothing else.
"""

__version__ = "0.3.0"
# The ErrorInfo.domain of every error the service sends.
ERROR_DOMAIN = "tffreeze.v1"
