"""The rows of every version, kept: each share (training, validation, holdout) as a Parquet
file in the MLflow artifact store, stored once per content digest.

A share's digest covers its row keys and all 13 fields in row order, so it changes when a
row is added, removed, reordered or edited. A share already stored under its digest (an
earlier training on the same rows) is referenced, not stored again: each stored share is one
run of the `<experiment>-snapshots` experiment tagged with its digest, and manifests point
at it as `runs:/<run id>/rows.parquet`. Going through the artifact store puts snapshots
where the models are (a folder locally, S3 in compose and Kubernetes).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from covertype import schema
from covertype.errors import CovertypeError
from covertype.train.data import Share, Split

SHARES = ("train", "validation", "holdout")
COLUMNS = ("row_key", "batch_number", *schema.FIELDS)
FILE = "rows.parquet"
DIGEST_TAG = "snapshot.digest"


class SnapshotError(CovertypeError):
    """A stored share is missing, unreadable or not the rows its digest names."""

    exit_code = 2  # as `covertype reproduce`'s other refusals: nothing could be checked


@dataclass(frozen=True)
class StoredShare:
    """Where one share's rows are and what they are."""

    share: str
    rows: int
    digest: str  # of the rows (keys and fields): `rows_digest`
    file_sha256: str  # of the Parquet file's bytes
    bytes: int
    uri: str  # runs:/<snapshot run>/rows.parquet
    reused: bool  # stored by an earlier training

    def as_dict(self) -> dict:
        return asdict(self)


def rows_digest(rows: pd.DataFrame) -> str:
    """SHA-256 of the rows' keys and 13 fields, column by column in row order (batch numbers
    are left out: the same row ingested in another batch is the same data)."""
    h = hashlib.sha256(b"covertype-rows-v1")
    for name in ("row_key", *schema.FIELDS):
        values = rows[name]
        h.update(f"\n{name}\n".encode())
        if pd.api.types.is_integer_dtype(values):
            h.update(values.to_numpy(np.int64).astype("<i8").tobytes())
        else:  # text, whatever pandas' dtype for it (object, str, category)
            h.update("\0".join(values.astype(str)).encode())
    return h.hexdigest()


def parquet_bytes(rows: pd.DataFrame) -> bytes:
    """The rows as Parquet (zstd), in a fixed column order, without the index."""
    buffer = io.BytesIO()
    rows[list(COLUMNS)].to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def read_parquet(data: bytes) -> pd.DataFrame:
    """Rows as `train.data.load_rows` types them."""
    frame = pd.read_parquet(io.BytesIO(data))
    for name in schema.CATEGORICAL:
        frame[name] = frame[name].astype(str)
    for name in (*schema.NUMERIC, schema.LABEL, "batch_number"):
        frame[name] = frame[name].astype(np.int64)
    return frame


def experiment_name(training_experiment: str) -> str:
    return f"{training_experiment}-snapshots"


def store(client, training_experiment: str, rows: Split) -> tuple[dict[str, StoredShare], float]:
    """Every share stored (or found) by digest; (share → where, seconds it took)."""
    started = time.perf_counter()
    experiment_id = _experiment_id(client, experiment_name(training_experiment))
    stored = {
        name: _store_share(client, experiment_id, name, getattr(rows, name)) for name in SHARES
    }
    return stored, time.perf_counter() - started


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException:  # another training made it meanwhile
        return client.get_experiment_by_name(name).experiment_id


def _store_share(client, experiment_id: str, name: str, share: Share) -> StoredShare:
    digest = rows_digest(share.rows)
    found = client.search_runs(
        [experiment_id],
        f"tags.`{DIGEST_TAG}` = '{digest}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        tags = found[0].data.tags
        return StoredShare(
            name,
            len(share),
            digest,
            tags["snapshot.file_sha256"],
            int(tags["snapshot.bytes"]),
            f"runs:/{found[0].info.run_id}/{FILE}",
            reused=True,
        )
    data = parquet_bytes(share.rows)
    file_sha = hashlib.sha256(data).hexdigest()
    batches = ",".join(str(b) for b in sorted(share.rows["batch_number"].unique()))
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-{digest[:12]}",
        tags={
            DIGEST_TAG: digest,
            "snapshot.file_sha256": file_sha,
            "snapshot.bytes": str(len(data)),
            "snapshot.rows": str(len(share)),
            "snapshot.batches": batches,
            "snapshot.first_share": name,
            "kind": "snapshot",
        },
    )
    run_id = run.info.run_id
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / FILE
            path.write_bytes(data)
            client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, "FAILED")  # never found as a stored share
        raise
    client.set_terminated(run_id, "FINISHED")
    return StoredShare(
        name, len(share), digest, file_sha, len(data), f"runs:/{run_id}/{FILE}", False
    )


def load(stored: dict, tracking_uri: str) -> pd.DataFrame:
    """The rows of one stored share (a manifest's entry), checked against both digests;
    SnapshotError naming the share and what is wrong otherwise."""
    import mlflow.artifacts

    share, uri = stored["share"], stored["uri"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=tracking_uri
            )
            data = Path(path).read_bytes()
    except Exception as error:
        raise SnapshotError(
            f"the {share} share's snapshot {uri} cannot be read "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from None
    file_sha = hashlib.sha256(data).hexdigest()
    if file_sha != stored["file_sha256"]:
        raise SnapshotError(
            f"the {share} share's snapshot {uri} is corrupted: its SHA-256 is {file_sha[:12]}…, "
            f"the manifest recorded {stored['file_sha256'][:12]}…"
        )
    frame = read_parquet(data)
    if rows_digest(frame) != stored["digest"]:
        raise SnapshotError(f"the {share} share's snapshot {uri} holds other rows than recorded")
    return frame


def mlflow_datasets(rows: Split, stored: dict[str, StoredShare], data_db: str):
    """Each share as an MLflow dataset named after it, with its digest and snapshot: what
    MLflow's UI shows as the run's inputs."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import from_pandas  # mlflow.data.from_pandas, typed

    datasets = {}
    for name in SHARES:
        # MLflow has no source type for a run artifact behind its proxy; this one names it.
        source = CodeDatasetSource(
            {"snapshot": stored[name].uri, "data_db": data_db, "table": "cover_type"}
        )
        datasets[name] = from_pandas(
            getattr(rows, name).rows[list(schema.FIELDS)],
            source=source,
            name=f"cover_type.{name}",
            targets=schema.LABEL,
            digest=stored[name].digest[:16],
        )
    return datasets
