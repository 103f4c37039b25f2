"""``python -m tffreeze_server.healthcheck [TARGET] [--service NAME]``: exit 0 when the server
at TARGET answers SERVING, 1 otherwise (one line on stderr saying why). TARGET defaults to
``unix:/var/lib/tffreeze/health.sock`` (the container image's ``--health-socket``); the
service to ``liveness`` (SERVING while the process works; "" follows the shared store too).
The container's HEALTHCHECK and any probe that cannot speak the server's TLS use it: the socket
answers grpc.health.v1 only, without TLS or a token, and is mode 0600 (the server's user; 0660
with ``--health-socket-group``), so run the probe as that user or a member of that group."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

DEFAULT_TARGET = "unix:/var/lib/tffreeze/health.sock"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tffreeze_server.healthcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="?", default=DEFAULT_TARGET, help="default: %(default)s")
    p.add_argument("--service", default="liveness", help="health service name (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds (default: %(default)s)")
    args = p.parse_args(argv)
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout).status
        except grpc.RpcError as exc:
            print("unhealthy: %s: %s" % (exc.code().name, exc.details()), file=sys.stderr)
            return 1
    if status != health_pb2.HealthCheckResponse.SERVING:
        print("unhealthy: %s" % health_pb2.HealthCheckResponse.ServingStatus.Name(status), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
