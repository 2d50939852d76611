"""The source root and the public surface."""

import importlib
import pathlib

import streamtune

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_platform_is_the_stdlib_module():
    import platform

    assert platform.python_version().count(".") == 2
    assert "site-packages" not in platform.__file__ or "python3" in platform.__file__
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert pathlib.Path(platform.__file__).parent != ROOT / "platform"


def test_public_all_names_exist_and_are_sorted_sensibly():
    assert len(streamtune.__all__) == len(set(streamtune.__all__))
    for name in streamtune.__all__:
        assert hasattr(streamtune, name), name


def test_every_stage_is_a_subpackage():
    for stage in ("events", "triggers", "data", "sweeps", "validation", "registry", "serving", "controller",
                  "control", "sdk", "cli", "config", "runtime", "embedded", "dev", "observe", "api", "artifacts"):
        assert (ROOT / "platform" / "streamtune" / stage / "__init__.py").is_file(), stage


def test_errors_share_one_root_with_a_headline():
    from streamtune import errors

    for name in ("ConfigError", "EventError", "SweepError", "GateRejected", "RegistryError", "SwapError"):
        cls = getattr(errors, name)
        assert issubclass(cls, errors.StreamtuneError)
        err = cls("bad thing", fix="do this")
        assert err.headline == "bad thing" and "do this" in str(err)


def test_job_template_is_importable_as_a_job():
    from streamtune.job import Job, load_job_class

    assert issubclass(load_job_class("jobs.tabular_gbdt:Job"), Job)
    importlib.import_module("jobs.tabular_gbdt")


def test_jobs_url_follows_the_ray_address():
    from streamtune.config import Settings
    from streamtune.embedded.ray import LocalRay

    assert LocalRay(Settings()).jobs_url == "http://127.0.0.1:8265"
    assert LocalRay(Settings(ray_address="head-svc:6379")).jobs_url == "http://head-svc:8265"
    assert LocalRay(Settings(ray_address="http://x:1234")).jobs_url == "http://x:1234"


def test_run_seed_is_stable_per_run_and_differs_across_runs():
    from streamtune.config import SweepSpec
    from streamtune.sweeps.space import run_seed

    spec = SweepSpec(metric="m", mode="min", space={"a": {"type": "int", "low": 1, "high": 2}})
    assert run_seed(spec, "r-1") == run_seed(spec, "r-1") != run_seed(spec, "r-2")
    assert run_seed(spec.model_copy(update={"seed": None}), "r-1") is None


def test_nothing_below_the_cli_imports_the_demo_package():
    package = ROOT / "platform" / "streamtune"
    offenders = [
        str(path.relative_to(package)) for path in package.rglob("*.py")
        if path.parent.name not in ("dev", "cli") and "streamtune.dev" in path.read_text()
    ]
    assert offenders == []


def test_ray_is_not_imported_by_the_package_or_the_records():
    import subprocess
    import sys

    code = ("import sys, streamtune, streamtune.serving.records, streamtune.control, streamtune.controller; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
