"""tffreeze: freeze TensorFlow checkpoints into self-contained GraphDefs via the
tffreeze service.

    from tffreeze import FreezeClient
    with FreezeClient("127.0.0.1:50051") as client:
        outcome = client.freeze("ckpt_dir/", output_path="model.pb")
        print(outcome.manifest["inputs"], outcome.manifest["outputs"])

The contract (messages, error registry, options, the manifest codec) is the
``tffreeze_api`` package; this one is the client on top of it. Importing it
never imports TensorFlow, and imports gRPC only when the client is first used
(so the ``tffreeze`` command can set gRPC's log level before gRPC starts).
"""

from .errors import (CancelledError, DataLossError, DeadlineExceededError, FailedPreconditionError, InternalError,
                     InvalidArgumentError, NotFoundError, ResourceExhaustedError, TffreezeError,
                     UnauthenticatedError, UnavailableError)

__version__ = "0.3.0"
_CLIENT = ("FreezeClient", "FreezeOutcome", "UploadStats", "default_target")


def __getattr__(name):
    if name in _CLIENT:
        from . import client

        return getattr(client, name)
    raise AttributeError("module 'tffreeze' has no attribute %r" % name)


__all__ = [
    "FreezeClient", "FreezeOutcome", "UploadStats", "default_target",
    "TffreezeError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
    "ResourceExhaustedError", "DeadlineExceededError", "CancelledError", "UnavailableError",
    "UnauthenticatedError", "DataLossError", "InternalError",
]
