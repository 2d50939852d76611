"""The s3:// artifact store end to end, on the session's S3-compatible server, Kafka broker and Ray.

Event files live in S3; requests, results, trial models, inline-row files and job code all go to
``s3://streamtune-test/<run>``; Ray's runtime_env fetches the job code from S3 for the sweep job, its trials and
the Serve replicas; replicas load models from S3 into private verified copies; promotion swaps by S3 URI.
"""

from __future__ import annotations

import pathlib
import uuid

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.artifacts import ArtifactStore
from streamtune.dev.synthetic import make_sales

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _spec(topic: str, bucket: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="s3-gbdt", base_dir=str(ROOT / "configs"))
    data["dataset"]["uri_roots"] = [f"{bucket}/landing/"]
    data["trigger"].update(topic=topic, min_rows=1000)
    data["sweep"].update(num_samples=3, max_concurrent=2)
    data["serve"].update(app="s3app")
    return JobSpec.parse(data)


def _land(root: str, seed: int, drift: float) -> list[DataArrival]:
    """Write two Parquet files straight into the bucket and describe them as events."""
    events = []
    for part in range(2):
        table = make_sales(600, drift=drift, seed=seed * 10 + part)
        uri = f"{root}/landing/batch-{seed}/part-{part}.parquet"
        fs, path = pafs.FileSystem.from_uri(uri)
        pq.write_table(table, path, filesystem=fs)
        events.append(DataArrival(dataset="sales", uris=[uri], num_rows=table.num_rows))
    return events


def test_events_artifacts_code_and_promotion_all_by_s3_uri(kafka_bootstrap, ray_services, s3_bucket, tmp_path):
    root = f"{s3_bucket}/{uuid.uuid4().hex[:8]}"
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"s3-{uuid.uuid4().hex[:6]}",
                        artifact_root=root)
    spec = _spec(f"s3-{uuid.uuid4().hex[:8]}", root)
    store = ArtifactStore(root)
    with Client.local(settings, api=False) as client:
        submitted = client.submit(spec)
        code_uri = client.specs()[0].spec.job.code_uri
        assert code_uri.startswith(f"{root}/code/") and store.exists(code_uri), submitted

        events = _land(root, seed=1, drift=0.0)
        client.publish(events, spec.trigger.topic)
        run1 = client.wait(event_ids=[e.event_id for e in events], timeout_s=300)
        assert run1.status is RunStatus.PROMOTED, run1.error
        v1 = client.champion("s3-gbdt")
        assert v1.artifact_uri == f"{root}/s3-gbdt/{run1.run_id}/refit"  # the winner refit on train + valid
        assert v1.lineage["refit"]["trial_artifact_uri"].startswith(f"{root}/s3-gbdt/{run1.run_id}/trials/")
        assert store.exists(f"{v1.artifact_uri}/MANIFEST.json")
        assert store.exists(f"{root}/s3-gbdt/{run1.run_id}/result.json")
        assert v1.lineage["code_uri"] == code_uri and v1.lineage["uris"] == sorted(e.uris[0] for e in events)
        assert client.predict("s3-gbdt", [ROW]).version == 1

        rows = make_sales(1200, drift=1.0, seed=9).to_pylist()  # inline rows: the window's file goes to S3
        inline = [DataArrival(dataset="sales", rows=rows[:600], num_rows=600),
                  DataArrival(dataset="sales", rows=rows[600:], num_rows=600)]
        client.publish(inline, spec.trigger.topic)
        run2 = client.wait(event_ids=[e.event_id for e in inline], timeout_s=300)
        assert run2.status is RunStatus.PROMOTED, run2.error
        assert run2.uris == [f"{root}/inline/{run2.run_id}.parquet"] and store.exists(run2.uris[0])
        assert client.predict("s3-gbdt", [ROW]).version == 2

        back = client.promote("s3-gbdt", 1, reason="by S3 URI")
        assert back.outcome.version == 1 and client.predict("s3-gbdt", [ROW]).version == 1
    _free_the_cluster("s3app")


def _free_the_cluster(app: str) -> None:
    """Delete the app: the session's 2 CPUs are shared, and its replicas would starve later tests' trials."""
    from ray import serve

    serve.delete(app)
