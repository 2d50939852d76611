"""Run one sweep with Ray Tune: OptunaSearch proposes, ASHA prunes, each trial runs the user's Job."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from streamtune.artifacts.store import ArtifactStore
from streamtune.config.jobspec import JobSpec
from streamtune.errors import SweepError
from streamtune.job import TrainContext, load_job_class
from streamtune.registry.manifest import MANIFEST, manifest_digest, write_manifest
from streamtune.sweeps.schema import TrialSummary
from streamtune.sweeps.space import make_scheduler, make_searcher, to_tune_space

# Tune's default CSV/JSON/TensorBoard loggers cost ~50 ms per trial on 2 cores; results live in the registry.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

NODE_KEY = "streamtune_node_id"
"""The result key a trial reports its Ray node id under; :class:`TrialSummary` keeps it as ``node_id``."""


class TuneContext(TrainContext):
    """The :class:`TrainContext` a trial sees inside Ray Tune."""

    def __init__(self, train: pa.Table, valid: pa.Table, label: str, features: list[str], out_uri: str) -> None:
        import ray

        self.train, self.valid, self.label, self.features = train, valid, label, features
        self.out_uri = out_uri
        self.saved: str | None = None
        self.node_id = ray.get_runtime_context().get_node_id()

    def report(self, metrics: dict[str, float]) -> None:
        """Report the metrics, with the node this trial runs on (taken out again by the summary)."""
        from ray import tune

        tune.report({**metrics, NODE_KEY: self.node_id})

    def save_model(self, writer: Callable[[str], None]) -> None:
        from ray import tune

        uri = trial_uri(self.out_uri, tune.get_context().get_trial_id())
        with tempfile.TemporaryDirectory(prefix="streamtune-trial-") as scratch:
            writer(scratch)
            write_manifest(scratch)
            self.saved = ArtifactStore(uri).upload_dir(scratch, uri)


def trial_uri(out_uri: str, trial_id: str) -> str:
    """Where a trial's model goes in the artifact store.

    Example:
        >>> trial_uri("s3://b/sales/r-1", "a_0001")
        's3://b/sales/r-1/trials/a_0001'
    """
    return f"{out_uri.rstrip('/')}/trials/{trial_id}"


def _trial(config: dict[str, Any], *, entrypoint: str, fixed: dict[str, Any], train: pa.Table,
           valid: pa.Table, label: str, features: list[str], out_uri: str) -> None:
    job = load_job_class(entrypoint)()
    job.train({**fixed, **config}, TuneContext(train, valid, label, features, out_uri))


def run_tune(spec: JobSpec, train: pa.Table, valid: pa.Table, features: list[str], out_uri: str,
             *, seed: int | None = None) -> list[TrialSummary]:
    """Run the sweep and summarise every trial.

    Raises:
        SweepError: no trial produced a model.
    """
    from ray import tune

    sweep = spec.sweep
    trainable = tune.with_parameters(
        _trial, entrypoint=spec.job.entrypoint, fixed=dict(spec.job.params), train=train, valid=valid,
        label=spec.dataset.label, features=features, out_uri=out_uri,
    )
    trainable = tune.with_resources(trainable, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})
    collector = _Collector()
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune_space(sweep.space),
        tune_config=tune.TuneConfig(
            metric=sweep.metric, mode=sweep.mode, num_samples=sweep.num_samples,
            search_alg=make_searcher(sweep, seed), scheduler=make_scheduler(sweep), reuse_actors=True,
            time_budget_s=sweep.time_budget,
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=out_uri, verbose=0, callbacks=[collector]
        ),
    )
    tuner.fit()
    return [_summary(t, out_uri) for t in collector.trials.values()]


class _Collector:
    """Keeps each trial's last result in memory, so Tune's file loggers can stay off."""

    def __new__(cls) -> Any:
        from ray.tune import Callback

        class Collector(Callback):
            def __init__(self) -> None:
                self.trials: dict[str, Any] = {}

            def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                self.trials[trial.trial_id] = trial

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.trials[trial.trial_id] = trial

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.trials[trial.trial_id] = trial

        return Collector()


def _summary(trial: Any, out_uri: str) -> TrialSummary:
    last = trial.last_result or {}
    metrics = {k: v for k, v in last.items() if isinstance(v, (int, float, str)) and k != "config"}
    node = metrics.pop(NODE_KEY, None)
    uri = trial_uri(out_uri, trial.trial_id)
    store = ArtifactStore(uri)
    artifact = uri if store.exists(f"{uri}/{MANIFEST}") else None
    digest = manifest_digest(store.get_bytes(f"{uri}/{MANIFEST}")) if artifact else None
    error_file = getattr(trial, "error_file", None)
    error = None
    if error_file:
        text = _error_text(trial, error_file)
        node = node or error_node(text)  # a trial lost before its first report: the node its actor died with
        error = f"{error_headline(text)} (trial {trial.trial_id} on node {node or 'unknown'}; see {error_file})"
    return TrialSummary(
        trial_id=trial.trial_id, params=dict(trial.config or {}), metrics=metrics,
        iterations=int(metrics.get("training_iteration", 0)), artifact_uri=artifact, manifest_sha256=digest,
        error=error,
        node_id=str(node) if node else None,
    )


def _error_text(trial: Any, error_file: str) -> str:
    """The trial's error trace as Tune stored it ('' if it cannot be read)."""
    try:
        return str(trial.get_error() or "")
    except Exception:  # the storage may be gone; the local copy may still be there
        try:
            with open(error_file, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def error_headline(text: str, limit: int = 400) -> str:
    """What an error trace says went wrong: from the last line naming an exception (else from the top), without
    Tune's "Failure #" line or Ray's indented ``key: value`` details.

    Example:
        >>> error_headline("Failure # 1\\nTraceback (most recent call last):\\n  File 'x.py'\\n"
        ...                "ValueError: num_leaves must be > 1\\n")
        'ValueError: num_leaves must be > 1'
        >>> error_headline("Failure # 1 (occurred at 2026-11-26_10-21-21)\\n"
        ...                "The actor died unexpectedly.\\n\\tclass_name: ImplicitFunc\\n\\tpid: 15917\\n"
        ...                "The actor died because its node has died. Node Id: cd9e\\n"
        ...                "\\tthe actor's node was terminated unexpectedly\\n")
        "The actor died unexpectedly. The actor died because its node has died. Node Id: cd9e the actor's node was..."
        >>> error_headline("")
        'trial failed (no error trace)'
    """
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not _DETAIL_LINE.match(line) and not line.startswith("Failure # ")]
    if not lines:
        return "trial failed (no error trace)"
    named = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    return " ".join(lines[named[-1] if named else 0:])[:limit]


def error_node(text: str) -> str | None:
    """The node id a Ray error names (an actor that died with its node), if any.

    Example:
        >>> error_node("The actor died because its node has died. Node Id: cd9e7e46")
        'cd9e7e46'
        >>> error_node("ValueError: x") is None
        True
    """
    match = _NODE_ID.search(text)
    return match.group(1) if match else None


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")
_DETAIL_LINE = re.compile(r"^\s+[a-z_]+: ")  # Ray's "\tpid: 123" under an actor error
_NODE_ID = re.compile(r"Node Id: ([0-9a-f]+)")


def pick_best(trials: list[TrialSummary], metric: str, mode: str) -> TrialSummary:
    """The best trial that saved a model, by its last reported metric."""
    done = [t for t in trials if t.artifact_uri and isinstance(t.metrics.get(metric), (int, float))]
    if not done:
        errors = "; ".join(t.error for t in trials if t.error)[:500]
        raise SweepError(f"no trial of the sweep saved a model with metric {metric!r}", fix=errors or None)
    key = (lambda t: t.metrics[metric]) if mode == "min" else (lambda t: -t.metrics[metric])
    return min(done, key=key)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn`` and return its result with the seconds it took."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start
