"""The SDK embedded (Client.local) on the session's real Kafka and Ray.

Inline-row events train v1 and v2; then promote, rollback, run-now and cancel go through the control plane as
commands that the controller carries out and records with who asked and why; a broken batch never reaches
traffic.
"""

import pathlib
import time
import uuid

import pytest
import yaml

from streamtune import Client, CommandStatus, DataArrival, JobSpec, NotFoundError, RunStatus, Settings
from streamtune.dev.synthetic import make_sales

pytestmark = pytest.mark.integration
ROOT = pathlib.Path(__file__).resolve().parents[2]
ROW = {"price": 7.5, "promo": 1, "temp": 24.0, "weekday": 5, "region": 1}


def _spec(topic: str) -> JobSpec:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data.update(name="sdk-gbdt", base_dir=str(ROOT / "configs"))
    data["trigger"].update(topic=topic, min_rows=1000)
    data["sweep"].update(num_samples=3, max_concurrent=2)
    data["serve"].update(app="sdkapp")
    return JobSpec.parse(data)


def _events(n: int, *, drift: float, seed: int, drop_label: bool = False) -> list[DataArrival]:
    table = make_sales(n * 600, drift=drift, seed=seed)
    if drop_label:
        table = table.drop_columns(["sales"])
    rows = table.to_pylist()
    return [DataArrival(dataset="sales", rows=rows[i * 600:(i + 1) * 600], num_rows=600) for i in range(n)]


def _publish_and_wait(client: Client, spec: JobSpec, events: list[DataArrival]):
    client.publish(events, spec.trigger.topic)
    return client.wait(event_ids=[e.event_id for e in events], timeout_s=300)


def test_commands_from_the_sdk_are_carried_out_and_recorded(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"sdk-{uuid.uuid4().hex[:6]}")
    spec = _spec(f"sdk-{uuid.uuid4().hex[:8]}")
    with Client.local(settings) as client:
        submitted = client.submit(spec, reason="first model")
        assert submitted.status is CommandStatus.SUCCEEDED and "stored" in submitted.outcome.message
        run1 = _publish_and_wait(client, spec, _events(2, drift=0.0, seed=11))
        assert run1.status == RunStatus.PROMOTED, run1.error
        assert client.predict("sdk-gbdt", [ROW]).version == 1
        run2 = _publish_and_wait(client, spec, _events(2, drift=1.0, seed=12))
        assert run2.status == RunStatus.PROMOTED, run2.error
        assert client.predict("sdkapp", [ROW]).version == 2  # by app name too

        back = client.rollback("sdk-gbdt", reason="p99 regressed")
        assert back.outcome.version == 1 and back.outcome.swap.flip_s < 1.0
        assert back.actor == client.actor and back.controller == client.controller.holder
        assert client.predict("sdk-gbdt", [ROW]).version == 1 and client.champion("sdk-gbdt").version == 1
        assert client.alias_history("sdk-gbdt", "champion")[-1].reason == f"rollback by {client.actor}: p99 regressed"

        # a second, non-embedded client (as the CLI uses) only appends commands; the controller carries them out
        other = Client(settings, actor="ops-bot")
        again = other.promote("sdk-gbdt", 2, reason="p99 fixed upstream")
        assert (again.outcome.version, again.actor) == (2, "ops-bot")
        assert client.predict("sdk-gbdt", [ROW]).version == 2
        with pytest.raises(NotFoundError, match='Got "9" for version of model sdk-gbdt; registered versions: 1, 2'):
            other.promote("sdk-gbdt", 9)

        manual = client.run_now("sdk-gbdt", reason="same data, new code")
        run = client.run(manual.outcome.run_id)
        assert (run.reason, run.command_id, run.event_ids) == ("manual", manual.id, run2.event_ids)
        assert (run.trigger_detail.kind, run.trigger_detail.command_id) == ("manual", manual.id)
        assert run2.trigger_detail.kind == run2.reason and run2.trigger_detail.rows == run2.num_rows
        cancelled = other.cancel(run.run_id, reason="not needed")
        assert cancelled.outcome.run_id == run.run_id
        run = client.run(run.run_id)
        assert run.status is RunStatus.CANCELLED and run.error == "cancelled by ops-bot: not needed"
        other.close()

        bad = _publish_and_wait(client, spec, _events(2, drift=0.0, seed=13, drop_label=True))
        assert bad.status == RunStatus.FAILED and "label sales: missing from the snapshot's columns" in bad.error
        assert bad.attempt == 1 and bad.gate["data_gate"]["passed"] is False  # the data gate: not retried
        assert client.champion("sdk-gbdt").version == 2
        assert client.predict("sdk-gbdt", [ROW]).version == 2
        assert sorted(m.version for m in client.models("sdk-gbdt")) == [1, 2]

        kinds = [(c.command.kind, c.actor, c.status.value) for c in client.commands()][::-1]
        assert kinds == [("submit", client.actor, "succeeded"), ("rollback", client.actor, "succeeded"),
                         ("promote", "ops-bot", "succeeded"), ("run_now", client.actor, "succeeded"),
                         ("cancel", "ops-bot", "succeeded")]
        status = client.status()
        assert status.controller.active and status.pending_commands == 0
        assert [(s.name, s.champion) for s in status.specs] == [("sdk-gbdt", 2)]
    from ray import serve

    serve.delete("sdkapp")  # the session's 2 CPUs are shared: its replicas would starve later tests' trials


def test_a_manual_spec_waits_for_an_approval_that_names_who_gave_it(kafka_bootstrap, ray_services, tmp_path):
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_bootstrap, dashboard_port=ray_services.dashboard_port,
                        serve_port=ray_services.serve_port, consumer_group=f"sdk-{uuid.uuid4().hex[:6]}")
    spec = _spec(f"sdk-{uuid.uuid4().hex[:8]}")
    spec = spec.model_copy(update={"name": "sdk-manual", "promotion": "manual",
                                   "serve": spec.serve.model_copy(update={"app": "sdkmanual"})})
    with Client.local(settings) as client:
        client.submit(spec, reason="a human signs off")
        events = _events(2, drift=0.0, seed=21)
        client.publish(events, spec.trigger.topic)
        deadline = time.monotonic() + 300
        run = None
        while run is None or run.status is not RunStatus.AWAITING_APPROVAL:
            assert time.monotonic() < deadline, f"no run awaiting approval: {run}"
            assert run is None or run.status not in (RunStatus.FAILED, RunStatus.REJECTED), run.error
            time.sleep(0.5)
            run = next((r for r in client.runs("sdk-manual") if set(r.event_ids) == {e.event_id for e in events}),
                       None)
        time.sleep(2.0)  # it waits: nothing is registered or served until someone approves
        assert client.run(run.run_id).status is RunStatus.AWAITING_APPROVAL and client.champion("sdk-manual") is None
        approver = Client(settings, actor="ana")  # as the CLI does: it only appends the command
        approved = approver.approve(run.run_id, reason="checked the slices")
        assert approved.status is CommandStatus.SUCCEEDED and approved.actor == "ana"
        done = client.wait(run.run_id, timeout_s=120)
        assert done.status is RunStatus.PROMOTED, done.error
        champion = client.champion("sdk-manual")
        assert champion is not None and champion.lineage["approved_by"] == "ana"
        assert client.predict("sdk-manual", [ROW]).version == champion.version
        approver.close()
