"""JobSpec and Settings: every field described, unknown keys refused, errors name field, value and rule."""

import pathlib

import pytest
import yaml

from streamtune.config import JobSpec, Settings, load_jobspec
from streamtune.config._format import parse_duration
from streamtune.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _spec(**over):
    base = {
        "name": "demo",
        "dataset": {"name": "sales", "label": "y"},
        "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
        "sweep": {"metric": "rmse", "mode": "min", "space": {"lr": {"type": "loguniform", "low": 0.01, "high": 0.3}}},
        "serve": {"app": "sales"},
    }
    for key, value in over.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_loads(path):
    spec = load_jobspec(path)
    assert spec.name
    assert spec.code_dir().is_dir()


def test_unknown_key_names_the_field():
    with pytest.raises(ConfigError) as exc:
        JobSpec.parse(_spec(trigger={"min_rowz": 5}))
    assert 'unknown key "trigger.min_rowz"' in exc.value.headline


def test_bad_duration_names_field_value_and_rule():
    with pytest.raises(ConfigError) as exc:
        JobSpec.parse(_spec(trigger={"max_wait": "ten minutes"}))
    assert exc.value.headline.startswith('Got "ten minutes" for trigger.max_wait; must be a duration like "10m"')


def test_bad_enum_value_names_the_allowed_values():
    with pytest.raises(ConfigError) as exc:
        JobSpec.parse(_spec(sweep={"mode": "maximize"}))
    assert 'Got "maximize" for sweep.mode' in exc.value.headline
    assert exc.value.headline == 'Got "maximize" for sweep.mode; must be one of min, max'


def test_space_bounds_are_checked():
    with pytest.raises(ConfigError) as exc:
        JobSpec.parse(_spec(sweep={"space": {"lr": {"type": "uniform", "low": 1, "high": 0.5}}}))
    assert "sweep.space.lr" in exc.value.headline and "must be below high" in exc.value.headline


def test_missing_field_is_named():
    data = _spec()
    del data["serve"]
    with pytest.raises(ConfigError, match="Missing serve; it is required"):
        JobSpec.parse(data)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec(sweep={"num_samples": 0})))
    with pytest.raises(ConfigError) as exc:
        load_jobspec(bad)
    assert "sweep.num_samples" in exc.value.headline and str(bad) in exc.value.headline
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_jobspec(tmp_path / "broken.yaml")


def test_durations():
    assert parse_duration("10m") == 600 and parse_duration("250ms") == 0.25 and parse_duration(3) == 3.0
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_every_field_has_a_description():
    from pydantic import BaseModel

    seen = set()

    def walk(model: type[BaseModel]):
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} lacks a description"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub)

    walk(JobSpec)
    walk(Settings)
    assert len(seen) >= 8


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMTUNE_HOME", str(tmp_path))
    monkeypatch.setenv("STREAMTUNE_SERVE_PORT", "8123")
    s = Settings.from_env()
    assert s.serve_port == 8123 and s.registry_url == f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("STREAMTUNE_KAFKA_PORT", "eighty")
    with pytest.raises(ConfigError, match='Got "eighty" for STREAMTUNE_KAFKA_PORT'):
        Settings.from_env()
