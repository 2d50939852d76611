"""Tamper-proof artifacts: the registry's manifest digest is checked before the files, on every load.

Pure checks on real folders (``verify_manifest``, ``fetch_verified_to``) and the controller's registration on a
real SQLite registry with a scripted Ray Jobs runner and serving port.
"""

from __future__ import annotations

import json
import pathlib
import stat
from types import SimpleNamespace

import pytest

from streamtune.artifacts import ArtifactStore, stored_manifest_sha256
from streamtune.artifacts.verified import fetch_verified, fetch_verified_to
from streamtune.config import load_jobspec
from streamtune.controller.runs import RunAdvancer
from streamtune.errors import RegistryError
from streamtune.registry import SqliteRegistry
from streamtune.registry.manifest import MANIFEST, manifest_digest, verify_manifest, write_manifest
from streamtune.registry.records import RunRecord, RunStatus
from streamtune.serving.records import ModelRef, SwapReport
from streamtune.sweeps.schema import HoldoutScores, SweepResult, TrialSummary

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _artifact(folder: pathlib.Path, weights: str = "w=1") -> str:
    """A saved model with its manifest, and the digest the registry would record for it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.txt").write_text(weights)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "meta.json").write_text('{"kind": "test"}')
    write_manifest(folder)
    return manifest_digest((folder / MANIFEST).read_bytes())


def _tamper_and_regenerate(folder: pathlib.Path) -> str:
    """What a job running as the same user can do: change the weights and write a fresh, self-consistent
    manifest."""
    (folder / "model.txt").write_text("w=666")
    write_manifest(folder)
    return manifest_digest((folder / MANIFEST).read_bytes())


def test_the_registered_digest_lets_the_untouched_artifact_load(tmp_path: pathlib.Path) -> None:
    digest = _artifact(tmp_path / "m")
    assert stored_manifest_sha256(str(tmp_path / "m")) == digest
    assert sorted(verify_manifest(tmp_path / "m", digest)["files"]) == ["model.txt", "sub/meta.json"]
    with fetch_verified(str(tmp_path / "m"), manifest_sha256=digest) as copy:
        assert copy != tmp_path / "m" and (copy / "model.txt").read_text() == "w=1"
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700  # the private copy is what gets loaded


def test_files_changed_and_manifest_regenerated_are_refused_naming_version_and_both_digests(
    tmp_path: pathlib.Path,
) -> None:
    registered = _artifact(tmp_path / "m")
    now = _tamper_and_regenerate(tmp_path / "m")
    assert now != registered
    verify_manifest(tmp_path / "m")  # without the registry's digest the forgery is self-consistent: it passes
    with pytest.raises(RegistryError) as info:
        fetch_verified_to(str(tmp_path / "m"), tmp_path / "copy", manifest_sha256=registered,
                          what="app sales version 3")
    headline = info.value.headline
    assert headline.startswith("app sales version 3 refused: its MANIFEST.json has sha256 ")
    assert f"sha256 {now}, the registry recorded {registered} at registration" in headline
    assert info.value.fix is not None and "new version" in info.value.fix


def test_a_changed_file_under_an_intact_manifest_is_still_refused(tmp_path: pathlib.Path) -> None:
    registered = _artifact(tmp_path / "m")
    (tmp_path / "m" / "sub" / "meta.json").write_text('{"kind": "evil"}')
    with pytest.raises(RegistryError, match=r"version 1: artifact file .*meta\.json does not match its manifest"):
        verify_manifest(tmp_path / "m", registered, what="version 1")
    (tmp_path / "m" / "sub" / "meta.json").unlink()
    with pytest.raises(RegistryError, match="version 1: MANIFEST.json lists sub/meta.json, which is missing"):
        verify_manifest(tmp_path / "m", registered, what="version 1")


def test_a_missing_manifest_is_refused(tmp_path: pathlib.Path) -> None:
    _artifact(tmp_path / "m")
    (tmp_path / "m" / MANIFEST).unlink()
    with pytest.raises(RegistryError, match="version 2 has no MANIFEST.json"):
        verify_manifest(tmp_path / "m", "ab" * 32, what="version 2")


def test_model_ref_and_model_version_take_only_a_sha256() -> None:
    assert ModelRef(version=1, uri="/a", manifest_sha256="ab" * 32).manifest_sha256 == "ab" * 32
    with pytest.raises(ValueError, match="manifest_sha256"):
        ModelRef(version=1, uri="/a", manifest_sha256="AB" * 32)
    assert ModelRef(version=1, uri="/a") != ModelRef(version=1, uri="/a", manifest_sha256="ab" * 32)


# -- registration by the controller ----------------------------------------------------------------------------


class _Jobs:
    def submit(self, submission_id: str, request_uri: str, code_uri: str, *, run_id: str | None = None) -> bool:
        return True

    def status(self, submission_id: str) -> str | None:
        return None

    def stop(self, submission_id: str) -> None:
        pass

    def logs(self, submission_id: str) -> str:
        return ""

    def logs_tail(self, submission_id: str, lines: int = 30) -> str:
        return ""

    def exit_code(self, submission_id: str) -> int | None:
        return None


class _Serving:
    fence = 1

    def __init__(self) -> None:
        self.refs: list[ModelRef] = []

    def swap(self, spec: object, ref: ModelRef, rollout: object = None) -> SwapReport:
        self.refs.append(ref)
        return SwapReport(version=ref.version, previous=None, load_s=0.1, flip_s=0.01, total_s=0.1, replicas=1)


@pytest.fixture
def env(tmp_path: pathlib.Path):
    reg = SqliteRegistry(f"sqlite:///{tmp_path}/r.db")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    serving = _Serving()
    adv = RunAdvancer(reg, _Jobs(), serving, store, deadline_grace_s=0.0)
    spec = load_jobspec(ROOT / "configs" / "demo.yaml")
    spec = spec.model_copy(update={"job": spec.job.model_copy(update={"code_uri": "/store/code/0123.zip"})})
    reg.put_spec(spec)
    yield SimpleNamespace(reg=reg, store=store, serving=serving, adv=adv, spec=spec)
    reg.close()


def _passed_gate(env: SimpleNamespace, recorded: str | None, folder: pathlib.Path) -> str:
    """A run whose sweep recorded ``recorded`` as its winner's manifest digest and passed the gate."""
    run = RunRecord(run_id="r-00000000000000a1", spec_name=env.spec.name, dataset="sales", num_rows=10,
                    offsets={"t:0": [1, 1]}, uris=["/data/1.parquet"])
    env.reg.commit_window("g", {}, {}, [run])
    best = TrialSummary(trial_id="t1", params={}, metrics={env.spec.sweep.metric: 1.0},
                        artifact_uri=str(folder), manifest_sha256=recorded)
    result = SweepResult(run_id=run.run_id, best=best, trials=[best],
                         holdout=HoldoutScores(metric=env.spec.sweep.metric, challenger=1.0, rows=10),
                         snapshot={"fingerprint": "f", "num_rows": 10})
    env.reg.update_run(run.run_id, status=RunStatus.SUCCEEDED, sweep=result.model_dump(mode="json"))
    return run.run_id


def _step_until_promoted(env: SimpleNamespace) -> None:
    env.adv.step_spec(env.reg.get_spec(env.spec.name))
    env.adv.promotions.wait(env.spec.name, 5)
    env.adv.step_spec(env.reg.get_spec(env.spec.name))


def test_registration_records_the_digest_and_the_swap_carries_it(env: SimpleNamespace,
                                                                 tmp_path: pathlib.Path) -> None:
    digest = _artifact(tmp_path / "winner")
    run_id = _passed_gate(env, digest, tmp_path / "winner")
    _step_until_promoted(env)
    assert env.reg.get_run(run_id).status == RunStatus.PROMOTED
    model = env.reg.get_model(env.spec.name, 1)
    assert model is not None and model.manifest_sha256 == digest
    assert env.serving.refs == [ModelRef(version=1, uri=str(tmp_path / "winner"), manifest_sha256=digest)]


def test_an_artifact_rewritten_between_sweep_and_registration_is_not_registered(
    env: SimpleNamespace, tmp_path: pathlib.Path
) -> None:
    recorded = _artifact(tmp_path / "winner")
    run_id = _passed_gate(env, recorded, tmp_path / "winner")
    now = _tamper_and_regenerate(tmp_path / "winner")
    env.adv.step_spec(env.reg.get_spec(env.spec.name))
    run = env.reg.get_run(run_id)
    assert run.status == RunStatus.FAILED and run.error is not None
    assert f"has sha256 {now}, but the sweep recorded {recorded}" in run.error
    assert env.reg.list_models(env.spec.name) == [] and env.serving.refs == []
    assert json.loads((tmp_path / "winner" / MANIFEST).read_text())["files"]  # left as found, for inspection
