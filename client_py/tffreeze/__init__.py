"""tffreeze: freeze TensorFlow checkpoints into self-contained GraphDefs via the
tffreeze service.

    from tffreeze import FreezeClient
    with FreezeClient("127.0.0.1:50051") as client:
        outcome = client.freeze("ckpt_dir/", output_path="model.pb")
        print(outcome.manifest["inputs"], outcome.manifest["outputs"])

Importing this package never imports TensorFlow.
"""

from .client import FreezeClient, FreezeOutcome, UploadStats, default_target
from .errors import (CancelledError, DeadlineExceededError, FailedPreconditionError, InternalError,
                     InvalidArgumentError, NotFoundError, ResourceExhaustedError, TffreezeError,
                     UnavailableError)

__version__ = "0.1.0"

__all__ = [
    "FreezeClient", "FreezeOutcome", "UploadStats", "default_target",
    "TffreezeError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
    "ResourceExhaustedError", "DeadlineExceededError", "CancelledError", "UnavailableError", "InternalError",
]
