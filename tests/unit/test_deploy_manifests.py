"""deploy/k8s and deploy/docker agree with the code: rendered, schema-validated, and checked against Settings.

No cluster and no network: `kubectl kustomize` renders the base, kubernetes-validate checks every built-in
object (and every pod template inside the RayCluster) against a Kubernetes release's bundled schemas, and the
rest is compared with what the code reads (Settings, the CLI, the API's /healthz) and with pyproject.toml.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamtune.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
K8S_VERSION = "1.33.0"  # the Kubernetes release whose schemas the built-in objects are validated against
SECRET = "streamtune-secrets"  # created by the operator (README, "Run on a cluster"), never committed

# STREAMTUNE_* names the manifests may use before Settings has a field for them (the scale-out work: the
# Postgres registry and the s3:// artifact store). Empty now: registry_url, artifact_root and s3_endpoint are
# fields. Add a name only while its code is being written; the test fails once the field exists, so remove it then.
COMING_SETTINGS: frozenset[str] = frozenset()
# Environment names that are not streamtune's: the object store's credentials and region (AWS SDK, pyarrow).
OTHER_ENV = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"})
SECRET_ENV = frozenset({"STREAMTUNE_REGISTRY_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot render deploy/k8s with `kubectl kustomize`")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize deploy/k8s failed:\n{out.stderr}"
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    assert docs, "kubectl kustomize deploy/k8s rendered nothing"
    return docs


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def raycluster(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "RayCluster")


@pytest.fixture(scope="module")
def controller(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "Deployment", "streamtune-controller")


@pytest.fixture(scope="module")
def config_maps(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}


@pytest.fixture
def settings(controller: dict[str, Any], config_maps: dict[str, dict[str, str]], monkeypatch) -> Settings:
    """Settings as the controller container reads them: its ConfigMaps and env, secrets as placeholders."""
    import os

    for name in list(os.environ):
        if name.startswith("STREAMTUNE_"):
            monkeypatch.delenv(name)
    for name, value in _container_env(_containers(controller)[0], config_maps).items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# The Ray releases the whole suite (both phases) has passed on; the pin may admit only these minor releases,
# and the images use the newest. Add a version here only after running `make test` on it.
TESTED_RAY = ("2.59.0", "2.60.0")


def _ray_pin() -> str:
    """The Ray version the images and the RayCluster use: the newest tested release the ray requirement admits.

    The requirement must be an exact pin, or a range from a tested release up to (not including) the minor
    release after the newest tested one (``>=2.59.0,<2.61``)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    (req,) = [r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == "ray"]
    exact = [s.version for s in req.specifier if s.operator == "=="]
    lower = [s.version for s in req.specifier if s.operator == ">="]
    upper = [s.version for s in req.specifier if s.operator == "<"]
    newest = Version(max(TESTED_RAY, key=Version))
    if not exact:
        assert lower and upper, f"pyproject.toml's {req} must pin ray (==X.Y.Z or >=X.Y.Z,<X.Y+1)"
        assert lower[0] in TESTED_RAY, f"{req} admits untested releases below {min(TESTED_RAY, key=Version)}"
        assert Version(upper[0]) <= Version(f"{newest.major}.{newest.minor + 1}"), f"{req} admits untested releases"
    admitted = [v for v in TESTED_RAY if v in req.specifier]
    assert admitted, f"{req} admits none of the tested releases {TESTED_RAY}"
    return max(admitted, key=Version)


def _pod_templates(raycluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = raycluster["spec"]
    groups = {"head": spec["headGroupSpec"]["template"]}
    groups.update({g["groupName"]: g["template"] for g in spec["workerGroupSpecs"]})
    return groups


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def _container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:  # what the operator puts in the Secret (README's example)
            env[var["name"]] = {"STREAMTUNE_REGISTRY_URL": "postgresql://streamtune:pw@postgres:5432/streamtune"}.get(
                var["name"], "placeholder")
        else:
            env[var["name"]] = var["value"]
    return env


def _port(container: dict[str, Any], port: int | str) -> int:
    """A container port by number or by name."""
    if isinstance(port, int):
        assert port in {p["containerPort"] for p in container["ports"]}, f"{container['name']} exposes no {port}"
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']} has no port named {port!r}: {named}"
    return named[port]


def _all_containers(objects: list[dict[str, Any]], raycluster: dict[str, Any]) -> list[dict[str, Any]]:
    found = [c for o in objects if o["kind"] == "Deployment" for c in _containers(o)]
    for template in _pod_templates(raycluster).values():
        found += template["spec"]["containers"]
    return found


# ---------------------------------------------------------------------------------------------- the manifests


def test_renders_the_platform(objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == sorted([
        ("Namespace", "streamtune"), ("ConfigMap", "streamtune-settings"), ("ConfigMap", "streamtune-object-store"),
        ("RayCluster", "streamtune"), ("Deployment", "streamtune-controller"),
        ("PodDisruptionBudget", "streamtune-controller"), ("Service", "streamtune-api"),
        ("Service", "streamtune-serve"), ("NetworkPolicy", "streamtune-ray"),
    ])
    assert all(o["metadata"].get("namespace") == "streamtune" for o in objects if o["kind"] != "Namespace")
    assert not [o for o in objects if o["kind"] == "Secret"], "credentials are never committed: the operator " \
        "creates the Secret"


def test_builtin_objects_validate_against_the_kubernetes_schemas(objects, raycluster):
    import kubernetes_validate  # dev extra: pip install -e '.[dev]'

    # kubernetes-validate has no schema for the KubeRay CRD; its pod templates are plain PodTemplateSpecs.
    checked = [(f"{o['kind']}/{o['metadata']['name']}", o)
               for o in objects if not o["apiVersion"].startswith("ray.io/")]
    checked += [(f"RayCluster group {group!r} pod template",
                 {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": group}, "template": template})
                for group, template in _pod_templates(raycluster).items()]
    errors = []
    for what, obj in checked:
        try:  # strict: an unknown (misspelt) field fails too
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{what}: at {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{what}: {exc.message}")
    assert not errors, f"invalid against Kubernetes {K8S_VERSION}:\n" + "\n".join(errors)


def test_raycluster_has_the_structure_streamtune_relies_on(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1"
    assert raycluster["kind"] == "RayCluster"
    spec = raycluster["spec"]
    assert spec["rayVersion"] == _ray_pin(), "RayCluster rayVersion differs from the ray pin in pyproject.toml"
    head = spec["headGroupSpec"]
    params = head["rayStartParams"]
    assert all(isinstance(v, str) for v in params.values()), "rayStartParams values are strings in the CRD"
    assert params["dashboard-host"] == "0.0.0.0", "the Jobs API must listen beyond the head pod"
    (head_container,) = head["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in head_container["ports"]} == {
        "gcs-server": 6379, "dashboard": 8265, "client": 10001, "serve": 8000}
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for name, group in groups.items():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), name
        assert len(group["template"]["spec"]["containers"]) == 1, name
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limits.get("nvidia.com/gpu") == 1
    assert groups["gpu"]["minReplicas"] == 0, "the GPU group is optional: it starts at zero"


def test_every_env_name_is_a_setting(objects, raycluster, config_maps):
    fields = {"STREAMTUNE_" + name.upper() for name in Settings.model_fields}
    stale = COMING_SETTINGS & fields
    assert not stale, f"{sorted(stale)} are Settings fields now: remove them from COMING_SETTINGS"
    names = {name for data in config_maps.values() for name in data}
    names |= {var["name"] for c in _all_containers(objects, raycluster) for var in c.get("env", [])}
    ours = {n for n in names if n.startswith("STREAMTUNE_")}
    unknown = ours - fields - COMING_SETTINGS
    assert not unknown, f"the manifests set {sorted(unknown)}, which streamtune.config.settings.Settings does not read"
    assert names - ours <= OTHER_ENV, f"unexpected environment names {sorted(names - ours - OTHER_ENV)}"


def test_settings_the_controller_reads(settings):
    assert settings.api_host == "0.0.0.0", "the API must listen on the pod's address for the Service and probes"
    assert settings.auth == "token"
    assert settings.artifact_root.startswith("s3://")
    assert settings.registry_url.startswith("postgresql://")
    assert (settings.api_port, settings.serve_port, settings.dashboard_port) == (8470, 8000, 8265)
    defaults = Settings.model_fields
    assert (settings.api_port, settings.serve_port, settings.dashboard_port) == (
        defaults["api_port"].default, defaults["serve_port"].default, defaults["dashboard_port"].default)


def test_the_controller_reaches_ray_at_the_head_service(settings, raycluster):
    head_svc = f"{raycluster['metadata']['name']}-head-svc"  # the Service KubeRay makes for the head
    (head,) = _pod_templates(raycluster)["head"]["spec"]["containers"]
    # The controller pod runs no raylet, so it joins through Ray Client, not the GCS port (a driver that dials
    # the GCS directly must run on a Ray node).
    assert settings.ray_address == f"ray://{head_svc}:{_port(head, 'client')}"
    assert settings.jobs_url == f"http://{head_svc}:{_port(head, 'dashboard')}"
    assert _port(head, "gcs-server") == 6379, "KubeRay's workers join the GCS at 6379"


def test_serve_host_is_the_serve_service_and_binds_on_ray_pods(settings, objects, raycluster):
    service = _one(objects, "Service", settings.serve_host)  # the controller calls Serve by this name
    assert service["spec"]["selector"] == {"ray.io/cluster": raycluster["metadata"]["name"], "ray.io/node-type": "head"}
    (port,) = service["spec"]["ports"]
    (head,) = _pod_templates(raycluster)["head"]["spec"]["containers"]
    assert port["port"] == settings.serve_port == _port(head, port["targetPort"])
    assert settings.serve_url("sales") == f"http://{service['metadata']['name']}:8000/sales"
    # Serve's proxies bind serve_host on every Ray node: there it must resolve to all interfaces.
    for group, template in _pod_templates(raycluster).items():
        aliases = {h: a["ip"] for a in template["spec"].get("hostAliases", []) for h in a["hostnames"]}
        assert aliases.get(settings.serve_host) == "0.0.0.0", f"Ray group {group!r} cannot bind {settings.serve_host}"


def test_api_service_and_probes_use_the_api_port(settings, objects, controller):
    (container,) = _containers(controller)
    service = _one(objects, "Service", "streamtune-api")
    labels = controller["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == settings.api_port == _port(container, port["targetPort"])
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert _port(container, get["port"]) == settings.api_port, probe
    # The probes carry no token: /healthz must stay open while every /v1 route needs one (docs/openapi.json is
    # kept equal to the served API by test_api_contract).
    paths = json.loads((ROOT / "docs" / "openapi.json").read_text())["paths"]
    assert "get" in paths["/healthz"] and not paths["/healthz"]["get"].get("security")
    assert paths["/v1/status"]["get"].get("security")


def test_controller_deployment_runs_the_cli_command(controller):
    from typer.testing import CliRunner

    from streamtune.cli.main import app

    assert controller["spec"]["replicas"] == 2, "one active controller and one standby"
    (container,) = _containers(controller)
    assert container["command"] == ["streamtune", "controller"]
    assert _pyproject()["project"]["scripts"]["streamtune"] == "streamtune.cli.main:app"
    result = CliRunner().invoke(app, ["controller", "--help"])
    assert result.exit_code == 0, result.output


def test_secrets_and_object_store_reach_every_pod(objects, raycluster, controller, config_maps):
    assert config_maps["streamtune-object-store"]["STREAMTUNE_ARTIFACT_ROOT"].startswith("s3://")
    for container in _all_containers(objects, raycluster):
        refs = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container.get("env", []) if "valueFrom" in v}
        assert all(r["name"] == SECRET and r["key"] == name for name, r in refs.items()), container["name"]
        sources = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
        assert "streamtune-object-store" in sources, container["name"]
        assert sources <= set(config_maps), f"{container['name']} reads a ConfigMap that is not rendered"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(refs), container["name"]
    (ctrl,) = _containers(controller)
    assert {v["name"] for v in ctrl["env"] if "valueFrom" in v} == SECRET_ENV
    assert {s["configMapRef"]["name"] for s in ctrl["envFrom"]} == {"streamtune-settings", "streamtune-object-store"}


def test_kafka_bootstrap_names_the_strimzi_cluster_of_the_topics(settings):
    topics = list(yaml.safe_load_all((ROOT / "deploy" / "kafka" / "strimzi-topics.yaml").read_text()))
    (cluster,) = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics}
    assert settings.kafka_bootstrap is not None
    assert re.fullmatch(rf"{cluster}-kafka-bootstrap(\.[a-z0-9-]+)*:9092", settings.kafka_bootstrap)


def test_images_are_this_version(objects, raycluster):
    version = _pyproject()["project"]["version"]
    images = {c["image"] for c in _all_containers(objects, raycluster)}
    assert images == {f"streamtune:{version}", f"streamtune-gpu:{version}"}


# ------------------------------------------------------------------------------------------------ the image


def _dockerfile() -> tuple[str, dict[str, str], list[str]]:
    """(resolved FROM image, ARG defaults, instructions) of the Dockerfile."""
    lines = re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    args: dict[str, str] = {}
    image = ""
    for line in instructions:
        word, _, rest = line.partition(" ")
        if word == "ARG" and "=" in rest and not image:
            name, _, default = rest.partition("=")
            args[name] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], default)
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
    return image, args, instructions


def test_dockerfile_builds_on_the_pinned_ray_and_installs_streamtune():
    image, args, instructions = _dockerfile()
    pin = _ray_pin()
    minimum = re.fullmatch(r">=3\.(\d+)", _pyproject()["project"]["requires-python"])
    assert minimum is not None
    match = re.fullmatch(rf"rayproject/ray:{re.escape(pin)}-py3(\d+)", image)
    assert match, f"FROM {image}: expected rayproject/ray:{pin}-py3XX (the ray pin in pyproject.toml)"
    assert int(match.group(1)) >= int(minimum.group(1)), f"{image} has an older Python than requires-python"
    assert args["RAY_VERSION"] == pin
    runs = " ".join(line for line in instructions if line.startswith("RUN "))
    assert re.search(r"pip install [^&]*\"\.\[postgres\]\"", runs), "the image installs streamtune[postgres]"
    copies = [line.split()[-2:] for line in instructions if line.startswith("COPY ")]
    assert ["platform", "./platform"] in copies and any("pyproject.toml" in line for line in instructions)
    (cmd,) = [line for line in instructions if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD ")) == ["streamtune", "controller"]


# ------------------------------------------------------------------------------------------------- the README


def test_readme_section_matches_the_manifests():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("## Run on a cluster") < readme.index("## Tests and benchmarks")
    section = readme.split("## Run on a cluster", 1)[1].split("\n## ", 1)[0]
    for needle in ("kubectl apply -k deploy/k8s", "deploy/docker/Dockerfile", f"create secret generic {SECRET}",
                   "streamtune token create", "STREAMTUNE_URL", "STREAMTUNE_TOKEN", "postgresql://",
                   "svc/streamtune-api 8470", *sorted(SECRET_ENV)):
        assert needle in section, f"README 'Run on a cluster' does not mention {needle!r}"
