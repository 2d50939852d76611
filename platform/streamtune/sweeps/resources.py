"""What a sweep's trials ask Ray for: the GPU decision on a cluster without GPUs, and whether one trial fits.

A spec that asks for a GPU (``sweep.resources.gpu`` > 0) on a cluster where no node has one runs its trials on
CPU, with a warning recorded in the run's sweep result (``SweepResult.warnings``); with
``sweep.resources.require_gpu: true`` it is refused instead: at submit (:meth:`RaySpecChecker.check
<streamtune.sweeps.checks.RaySpecChecker.check>`) and again when the sweep starts (the cluster may have changed).
:func:`plan_resources` is that decision, pure; :func:`plan_sweep_resources` applies it to the connected cluster
and then checks that one trial, all its workers together, can be placed.

A one-process trial (``workers: 1``) asks Tune for ``cpu``/``gpu``. A multi-worker trial is a Ray Train run: Tune's
actor only drives it and asks for :data:`DRIVER_CPU`; Ray Train places the ``workers`` with ``cpu``/``gpu`` each
(:func:`trial_resources`).

Example:
    >>> from streamtune.config.jobspec import ResourcesSpec
    >>> plan = plan_resources(ResourcesSpec(cpu=1, gpu=1), [{"CPU": 2.0}, {"CPU": 2.0}])
    >>> plan.resources.gpu, plan.degraded
    (0.0, True)
    >>> print(plan.warnings[0])  # doctest: +ELLIPSIS
    Got "1" for sweep.resources.gpu; no node of the cluster has a GPU, so the trials train on CPU (gpu 0) ...
    >>> trial_resources(ResourcesSpec(cpu=1, gpu=0.5)), trial_resources(ResourcesSpec(cpu=1, workers=2))
    ({'cpu': 1.0, 'gpu': 0.5}, {'cpu': 0.01, 'gpu': 0.0})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from streamtune.config.jobspec import JobSpec, ResourcesSpec
from streamtune.sweeps.failures import InfeasibleResources

__all__ = ["DRIVER_CPU", "GpuRequired", "ResourcePlan", "lookahead", "placeable_trials", "plan_resources",
           "plan_sweep_resources", "trial_resources", "with_resources"]

DRIVER_CPU = 0.01
"""CPUs the Tune actor of a multi-worker trial holds: it only waits on its Ray Train run (Ray Train's controller
asks for none)."""


class GpuRequired(InfeasibleResources):
    """``sweep.resources.require_gpu`` is set and no node of the cluster has a GPU."""


class ResourcePlan(BaseModel):
    """What the trials of one sweep ask for, after the GPU decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resources: ResourcesSpec = Field(description="The resources each trial asks Ray for (gpu 0 when degraded).")
    degraded: bool = Field(False, description="True when a GPU was asked for and the trials run on CPU instead.")
    warnings: list[str] = Field(default_factory=list, description="What was changed and why, for the run's record.")


def _max(nodes: Sequence[Mapping[str, float]], key: str) -> float:
    return max((float(n.get(key, 0.0)) for n in nodes), default=0.0)


def plan_resources(resources: ResourcesSpec, nodes: Sequence[Mapping[str, float]]) -> ResourcePlan:
    """Decide what a trial asks for on a cluster whose alive nodes have ``nodes`` (their total resources).

    A GPU request where no node has a GPU becomes ``gpu: 0`` with a warning; with ``require_gpu`` it raises.

    Raises:
        GpuRequired: ``require_gpu`` is set and no node has a GPU (names the field, its value and the rule).

    Example:
        >>> plan_resources(ResourcesSpec(gpu=1), [{"CPU": 8.0, "GPU": 1.0}]).warnings
        []
        >>> try:
        ...     plan_resources(ResourcesSpec(gpu=1, require_gpu=True), [{"CPU": 8.0}])
        ... except GpuRequired as exc:
        ...     print(exc.headline)
        Got "true" for sweep.resources.require_gpu (gpu 1); no node of the cluster has a GPU (nodes: 1, ...
    """
    if resources.gpu <= 0 or _max(nodes, "GPU") > 0:
        return ResourcePlan(resources=resources)
    if resources.require_gpu:
        raise GpuRequired(
            f'Got "true" for sweep.resources.require_gpu (gpu {resources.gpu:g}); no node of the cluster has a GPU '
            f"(nodes: {len(nodes)}, GPU up to 0), and require_gpu refuses to train on CPU",
            fix="add a node with a GPU, or set sweep.resources.require_gpu: false to train on CPU when there is none",
        )
    warning = (f'Got "{resources.gpu:g}" for sweep.resources.gpu; no node of the cluster has a GPU, so the trials '
               f"train on CPU (gpu 0) with {resources.cpu:g} CPU each"
               + (f" per worker ({resources.workers} workers)" if resources.workers > 1 else "")
               + "; set sweep.resources.require_gpu: true to fail instead")
    return ResourcePlan(resources=resources.model_copy(update={"gpu": 0.0}), degraded=True, warnings=[warning])


def trial_resources(resources: ResourcesSpec) -> dict[str, float]:
    """What Tune reserves for one trial: its ``cpu``/``gpu`` (one process), or :data:`DRIVER_CPU` for the actor
    that drives a multi-worker trial's Ray Train run (whose workers Ray Train places, ``cpu``/``gpu`` each)."""
    if resources.workers > 1:
        return {"cpu": DRIVER_CPU, "gpu": 0.0}
    return {"cpu": resources.cpu, "gpu": resources.gpu}


def placeable_trials(resources: ResourcesSpec, nodes: Sequence[Mapping[str, float]]) -> int:
    """How many one-process trials the nodes can run at once (each trial on one node), by CPUs and GPUs.

    Example:
        >>> placeable_trials(ResourcesSpec(cpu=1), [{"CPU": 2.0}, {"CPU": 3.0}])
        5
        >>> placeable_trials(ResourcesSpec(cpu=1, gpu=0.25), [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 4.0}])
        4
    """
    asked = trial_resources(resources)
    total = 0
    for node in nodes:
        fits = [int(float(node.get(key, 0.0)) // need) for key, need in (("CPU", asked["cpu"]), ("GPU", asked["gpu"]))
                if need > 0]
        total += min(fits) if fits else 0
    return total


def lookahead(max_concurrent: int, resources: ResourcesSpec, nodes: Sequence[Mapping[str, float]]) -> int:
    """Trials the searcher may suggest beyond ``max_concurrent``: 1 when the cluster cannot run more than
    ``max_concurrent`` one-process trials anyway, else 0.

    The extra trial waits in Tune for resources, as plain Tune's generator keeps trials waiting, so that a
    trial's actor that ends finds the next trial ready and is reused for it; with none waiting, Tune stops the
    actor (it keeps one idle actor at most) and starts a new process a moment later. The cluster's resources,
    not the searcher, then bound the trials running at once, which still cannot exceed ``max_concurrent``.
    Multi-worker trials get none (their actors are not reused).

    Example:
        >>> two = [{"CPU": 2.0}]
        >>> lookahead(2, ResourcesSpec(cpu=1), two), lookahead(1, ResourcesSpec(cpu=1), two)
        (1, 0)
    """
    if resources.workers > 1:
        return 0
    return 1 if placeable_trials(resources, nodes) <= max_concurrent else 0


def with_resources(spec: JobSpec, resources: ResourcesSpec) -> JobSpec:
    """``spec`` with ``sweep.resources`` replaced (a degraded GPU request), so the sweep and the refit use it.

    Example:
        >>> spec = JobSpec.model_validate({"name": "x", "dataset": {"name": "d", "label": "y"},
        ...     "job": {"entrypoint": "m:J"}, "serve": {"app": "x"}, "sweep": {"metric": "rmse", "mode": "min",
        ...     "space": {"lr": {"type": "uniform", "low": 0, "high": 1}}, "resources": {"gpu": 1}}})
        >>> with_resources(spec, ResourcesSpec(gpu=0)).sweep.resources.gpu
        0.0
    """
    return spec.model_copy(update={"sweep": spec.sweep.model_copy(update={"resources": resources})})


def plan_sweep_resources(resources: ResourcesSpec) -> ResourcePlan:
    """:func:`plan_resources` on the connected Ray cluster, then fail fast if one trial cannot be placed at all.

    Raises:
        GpuRequired: ``require_gpu`` and no node has a GPU.
        InfeasibleResources: no node (or, for several workers, not all nodes together) can hold one trial.
    """
    from streamtune.sweeps.failures import alive_nodes, check_trial_resources

    plan = plan_resources(resources, alive_nodes())
    r = plan.resources
    check_trial_resources(r.cpu, r.gpu, workers=r.workers, driver_cpu=DRIVER_CPU if r.workers > 1 else 0.0)
    return plan
