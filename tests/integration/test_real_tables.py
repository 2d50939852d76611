"""Real tables through the whole loop (Client.local on the session's Kafka, Ray and Serve).

- A table with string features (Arrow string and dictionary columns, as pandas 3 reads them), a string label
  and three classes trains, passes the gate, is served and predicts class names.
- An imbalanced binary table (5 % positives) is swept and gated on PR-AUC.
- A job that fails on every trial fails its run with an error naming the first trial's exception.
"""

from __future__ import annotations

import pathlib
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from streamtune import Client, DataArrival, JobSpec, RunStatus, Settings
from streamtune.validation import GateReport

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
CITIES = ["oslo", "rome", "lima", "kyiv"]


def _species(n: int, seed: int) -> pa.Table:
    """Three classes decided by a string feature, a dictionary feature and a number (with 5 % label noise)."""
    rng = np.random.default_rng(seed)
    city = rng.choice(CITIES, n)
    color = rng.choice(["red", "blue"], n)
    size = rng.normal(0, 1, n)
    label = np.where(city == "oslo", "setosa", np.where(size > 0.3, "virginica", "versicolor"))
    label = np.where((color == "blue") & (city == "rome"), "setosa", label)
    noise = rng.random(n) < 0.05
    label = np.where(noise, rng.choice(["setosa", "versicolor", "virginica"], n), label)
    return pa.table({"city": pa.array(city, pa.large_string()),
                     "color": pa.array(color, pa.string()).dictionary_encode(),
                     "size": size, "species": pa.array(label, pa.string())})


def _rare(n: int, seed: int) -> pa.Table:
    """Binary label with about 5 % positives, likelier when x is high and the channel is 'ads'."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    channel = rng.choice(["ads", "mail", "web"], n)
    logit = -4.0 + 1.8 * x + 1.2 * (channel == "ads")
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pa.table({"x": x, "channel": channel, "noise": rng.normal(0, 1, n), "fraud": fraud})


def _spec(name: str, topic: str, data_dir: pathlib.Path, *, dataset: str, label: str, objective: str,
          metric: str, mode: str, params: dict | None = None, space: dict | None = None,
          min_rows: int = 1500, retries: int = 2) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name=name, base_dir=str(ROOT / "configs"))
    data["dataset"] = {"name": dataset, "label": label, "uri_roots": [str(data_dir)]}
    data["trigger"].update(topic=topic, min_rows=min_rows)  # the whole published table is one window
    data["job"]["params"] = {"objective": objective, "num_boost_round": 40, "report_every": 10, "num_threads": 1,
                             **(params or {})}
    data["sweep"].update(metric=metric, mode=mode, num_samples=2, max_concurrent=2, max_t=4, grace_period=1,
                         retries=retries)
    if space is not None:
        data["sweep"]["space"] = space
    data["validation"].update(threshold=None, min_rows=200)
    data["serve"].update(app=name, replicas=1)
    return JobSpec.parse(data)


def _publish(client: Client, spec: JobSpec, table: pa.Table, folder: pathlib.Path, files: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    rows = table.num_rows // files
    events = []
    for i in range(files):
        path = folder / f"part-{i}.parquet"
        pq.write_table(table.slice(i * rows, rows), path)
        events.append(DataArrival(dataset=spec.dataset.name, uris=[str(path)], num_rows=rows))
    client.publish(events, spec.trigger.topic)
    return client.wait(event_ids=[e.event_id for e in events], timeout_s=300)


@pytest.fixture
def client(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path / "home", kafka_bootstrap=kafka_bootstrap,
                        dashboard_port=ray_services.dashboard_port, serve_port=ray_services.serve_port,
                        consumer_group=f"tables-{uuid.uuid4().hex[:6]}")
    with Client.local(settings) as made:
        yield made
    from ray import serve

    for app in ("species", "fraud"):  # after the controller stopped, so it does not ensure them back
        if app in serve.status().applications:
            serve.delete(app)  # the session's CPUs are shared: idle replicas would starve later tests' trials


def test_string_features_and_a_three_class_string_label_train_gate_serve_and_predict(client, tmp_path):
    spec = _spec("species", f"species-{uuid.uuid4().hex[:6]}", tmp_path / "data", dataset="species",
                 label="species", objective="multiclass", metric="logloss", mode="min")
    client.submit(spec)
    run = _publish(client, spec, _species(2000, seed=1), tmp_path / "data" / "w1")
    assert run.status == RunStatus.PROMOTED, (run.error, (run.gate or {}).get("reasons"))
    gate = GateReport.model_validate(run.gate)
    assert gate.passed and gate.numbers["metric"] == "logloss"
    assert gate.numbers["challenger"] < 0.5  # 3 classes: chance is ln 3 = 1.10

    rows = [{"city": "oslo", "color": "red", "size": 0.0}, {"city": "lima", "color": "red", "size": 1.5},
            {"city": "kyiv", "color": "blue", "size": -1.5}, {"city": "rome", "color": "blue", "size": 1.0},
            {"city": "paris", "color": "green", "size": 2.0}]  # unseen categories are missing, not an error
    answer = client.predict("species", rows)
    assert answer.version == 1 and answer.predictions[:4] == ["setosa", "virginica", "versicolor", "setosa"]
    assert answer.predictions[4] in {"setosa", "versicolor", "virginica"}


def test_an_imbalanced_binary_table_is_gated_on_pr_auc(client, tmp_path):
    table = _rare(4000, seed=2)
    prevalence = float(np.mean(table["fraud"].to_numpy()))
    spec = _spec("fraud", f"fraud-{uuid.uuid4().hex[:6]}", tmp_path / "data", dataset="fraud", label="fraud",
                 objective="binary", metric="pr_auc", mode="max", params={"is_unbalance": True},
                 min_rows=4000)
    client.submit(spec)
    run = _publish(client, spec, table, tmp_path / "data" / "w1")
    assert run.status == RunStatus.PROMOTED, (run.error, (run.gate or {}).get("reasons"))
    gate = GateReport.model_validate(run.gate)
    assert gate.numbers["metric"] == "pr_auc" and 0.02 < prevalence < 0.1
    pr_auc = gate.numbers["challenger"]
    assert pr_auc > 3 * prevalence, (pr_auc, prevalence)  # a constant scorer's PR-AUC is about the prevalence
    trial_metrics = run.sweep["best"]["metrics"]
    assert {"pr_auc", "auc", "balanced_accuracy", "f1"} <= set(trial_metrics)


def test_a_job_that_fails_on_every_trial_names_the_exception(client, tmp_path):
    spec = _spec("broken", f"broken-{uuid.uuid4().hex[:6]}", tmp_path / "data", dataset="broken", label="fraud",
                 objective="binary", metric="logloss", mode="min", params={"num_leaves": 1},
                 space={"learning_rate": {"type": "loguniform", "low": 0.05, "high": 0.2}},
                 retries=0)  # the same code fails the same way on every attempt: one is enough to read the error
    client.submit(spec)
    run = _publish(client, spec, _rare(2000, seed=3), tmp_path / "data" / "w1")
    assert run.status == RunStatus.FAILED
    assert "every trial of the sweep failed (2 of 2); the first (trial " in run.error
    assert "LightGBMError" in run.error and "num_leaves" in run.error, run.error
