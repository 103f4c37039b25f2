"""moto's standalone S3 server on a free loopback port, for the shared-store tests and
the benchmark: a real S3 API (HTTP, signatures, multipart) without a cloud."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "tffreeze-test"


def credentials() -> None:
    """Dummy credentials for moto (boto3 refuses to sign without some), inherited by children."""
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                 ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("moto_server did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url)
