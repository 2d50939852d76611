"""The JobSpec: one YAML file that says what data triggers a retrain, how to sweep, gate and serve it.

Example:
    >>> spec = JobSpec.model_validate({
    ...     "name": "demo",
    ...     "dataset": {"name": "sales", "label": "y"},
    ...     "job": {"entrypoint": "jobs.tabular_gbdt:Job"},
    ...     "sweep": {"metric": "rmse", "mode": "min",
    ...               "space": {"lr": {"type": "loguniform", "low": 0.01, "high": 0.3}}},
    ...     "serve": {"app": "sales"},
    ... })
    >>> spec.trigger.max_wait_s
    60.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamtune.config._format import format_validation_error, parse_duration
from streamtune.errors import ConfigError

_NAME = r"^[a-z][a-z0-9_-]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Spec):
    """One column of a dataset's schema."""

    type: str = Field(
        description="Arrow type name, e.g. 'double', 'int64', 'string', 'bool', 'timestamp[us]' "
        "(as pyarrow prints it: str(pa.float64()) == 'double')."
    )
    nullable: bool = Field(True, description="Whether the column may hold nulls.")
    min: float | None = Field(
        None, description="Smallest value the data gate accepts in this (numeric) column; unset: no floor."
    )
    max: float | None = Field(
        None, description="Largest value the data gate accepts in this (numeric) column; unset: no ceiling."
    )
    max_null_fraction: float | None = Field(
        None, ge=0, le=1,
        description="Largest share of nulls the data gate accepts in this column (a run's snapshot); unset: any "
        "share that `nullable` allows.",
    )

    @model_validator(mode="after")
    def _range(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class TrainingDataSpec(_Spec):
    """What a run trains on: its own window, the last few windows, or every window so far.

    The run's window and the earlier windows of the same spec are read as one Arrow dataset. Earlier windows
    are the spec's runs stored before this one, except those whose data gate failed; a window whose files are
    all already taken adds nothing. The run's lineage lists every window read (run id, files, Kafka offsets).

    Example:
        >>> TrainingDataSpec(policy="sliding", windows=3).windows
        3
        >>> TrainingDataSpec(policy="sliding", span="30d").span
        2592000.0
        >>> TrainingDataSpec(policy="window", windows=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        pydantic_core._pydantic_core.ValidationError: 1 validation error for TrainingDataSpec
        ...windows and span apply to policy "sliding" only...
    """

    policy: Literal["window", "sliding", "expanding"] = Field(
        "window", description="'window': the run's own window; 'sliding': the last `windows` windows and/or those "
        "stored within `span` of this one; 'expanding': every window of the spec so far.",
    )
    windows: int | None = Field(None, ge=1, description="sliding: the last N windows, this run's included.")
    span: float | None = Field(
        None, gt=0, description='sliding: windows stored within this long before this run\'s, e.g. "30d".'
    )

    @field_validator("span", mode="before")
    @classmethod
    def _span(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _sliding(self) -> TrainingDataSpec:
        if self.policy != "sliding" and (self.windows is not None or self.span is not None):
            raise ValueError('windows and span apply to policy "sliding" only')
        if self.policy == "sliding" and self.windows is None and self.span is None:
            raise ValueError('policy "sliding" needs windows, span or both')
        return self


class DatasetSpec(_Spec):
    """The dataset a job trains on."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(description="Dataset name that events carry in their `dataset` field.", pattern=_NAME)
    label: str = Field(description="Name of the label column.")
    features: list[str] | None = Field(
        None, description="Feature columns. When unset, the controller pins them at the spec's first run (every "
        "column but the label, as that run trained on) and stores them with the spec, so a later batch's new "
        "column never silently enters the model.",
    )
    uri_roots: list[str] = Field(
        default_factory=list,
        description="Allowed URI prefixes for data files (e.g. '/data/sales/', 's3://bucket/sales/'). "
        "Empty allows only the platform's own data folder.",
    )
    schema_: dict[str, ColumnSpec] | None = Field(
        None, alias="schema",
        description="Column -> Arrow type and nullability. When unset, the controller pins it from the first "
        "window and stores it with the spec; inline rows are checked against it per event.",
    )
    slice_column: str | None = Field(None, description="Column whose values define slices for per-slice checks.")
    time_column: str | None = Field(
        None, description="Column holding each row's time (any sortable type). With validation.split: time the "
        "holdout is the latest rows by it; it is never a feature unless `features` names it.",
    )
    training: TrainingDataSpec = Field(
        default_factory=TrainingDataSpec, description="Which windows a run trains on (default: its own window)."
    )


class DriftSpec(_Spec):
    """Close a window early when its data drifted from the champion's training data.

    The reference is the per-feature statistics of the champion's training rows, stored with it when it was
    registered. The drift of an open window is computed off the ingest loop, and the window closes (reason
    ``drift``) once it holds ``min_rows`` rows and a feature's drift passes ``threshold``.

    Example:
        >>> DriftSpec(threshold=0.25).method
        'psi'
    """

    method: Literal["psi", "ks"] = Field(
        "psi", description="'psi': population stability index per feature (numeric features binned at the "
        "reference's deciles, categories by value); 'ks': Kolmogorov-Smirnov statistic (numeric features; "
        "categorical ones use PSI).",
    )
    threshold: float = Field(0.2, gt=0, description="A window closes when a feature's drift passes this.")
    min_rows: int = Field(200, ge=1, description="Rows a window needs before its drift is judged.")
    features: list[str] | None = Field(None, description="Features watched; default: all of the model's.")


class DegradationSpec(_Spec):
    """Retrain when the champion's accuracy on labelled windows degrades past a threshold."""

    threshold: float = Field(
        0.1, gt=0, description="Largest relative worsening of the champion's metric on a labelled window against "
        "its gate holdout metric (0.1: 10 % worse) before a retrain is triggered.",
    )
    min_rows: int = Field(100, ge=1, description="Labelled rows a window needs before the champion is scored.")


class TriggerSpec(_Spec):
    """When a window of data-arrival events becomes a run."""

    topic: str = Field("streamtune.data", description="Kafka topic the data-arrival events arrive on.")
    min_rows: int = Field(1000, ge=1, description="A window closes once it holds at least this many rows.")
    max_wait: float = Field(
        60.0, description='A non-empty window closes this long after its first event; a duration like "10m".'
    )
    on_running: Literal["queue", "skip", "replace"] = Field(
        "queue", description="What to do with a new window while a run of this spec is running."
    )
    preempt: bool = Field(
        True, description="A window ready to start while a run asked for by hand (run-now, replay) is in flight "
        "stops that run and starts first; the stopped run goes back to the queue behind the windows and resumes "
        "in a new attempt (not counted against sweep.retries). false: the window waits for it.",
    )
    dedupe_for: float = Field(
        7 * 86400.0,
        description='How long event ids and data URIs are remembered across windows, to drop repeats; e.g. "7d".',
    )
    drift: DriftSpec | None = Field(None, description="Close a window early on drift; unset: no drift trigger.")
    degradation: DegradationSpec | None = Field(
        None, description="Retrain when the champion degrades on labelled windows; unset: not watched."
    )
    schedule: str | None = Field(
        None, description='Cron expression in UTC ("0 2 * * *", "@daily"): at each slot the open window closes '
        "(reason schedule), or, if it is empty, the latest window is trained again.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from streamtune.triggers.cron import Cron

            Cron.parse(value)
        return value

    @field_validator("max_wait", "dedupe_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @property
    def max_wait_s(self) -> float:
        """``max_wait`` in seconds."""
        return self.max_wait


class JobEntry(_Spec):
    """The training code: a class implementing the Job protocol."""

    entrypoint: str = Field(
        description="module:Class of the job, e.g. 'jobs.tabular_gbdt:Job'.", pattern=r"^[\w.]+:\w+$"
    )
    code: str = Field(
        "jobs",
        description="Folder of the package holding the entrypoint, shipped to workers via runtime_env "
        "py_modules. Relative paths resolve against the JobSpec's base folder.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed params merged under each trial's.")
    code_uri: str | None = Field(
        None,
        description="The job package's zip in the artifact store, set when the spec is submitted; the cluster "
        "gets the code from here (runtime_env py_modules), never from `code`.",
    )


SEARCHES = ("tpe", "cmaes", "random", "grid", "nsga2")
"""Values of ``sweep.search``: the Optuna sampler."""
SCHEDULERS = ("asha", "hyperband", "median", "pbt", "none", "fifo")
"""Values of ``sweep.scheduler`` (``fifo`` is an alias of ``none``)."""
MAX_GRID_POINTS = 100_000
"""Most points a ``search: grid`` space may have (the product of its dimensions' point counts)."""


class ParamSpec(_Spec):
    """One dimension of the search space.

    With ``when`` it is conditional: a trial samples it only when every parameter ``when`` names was sampled in
    that trial with one of the listed values (a scalar means a list of one); otherwise the trial's params lack it
    (a ``job.params`` value of the same name then applies). ``values`` on a uniform, loguniform or int dimension
    are its points for ``search: grid``; the other samplers draw from ``low``..``high``.

    Example:
        >>> ParamSpec(type="int", low=2, high=8, when={"booster": "gbtree"}).when
        {'booster': ['gbtree']}
        >>> ParamSpec(type="int", low=1, high=3).grid_values(), ParamSpec(type="uniform", low=0, high=1).grid_values()
        ([1, 2, 3], None)
        >>> ParamSpec(type="uniform", low=0, high=1, values=[0.1, 0.5]).grid_values()
        [0.1, 0.5]
    """

    type: Literal["uniform", "loguniform", "int", "choice"] = Field(description="Distribution kind.")
    low: float | None = Field(None, description="Lower bound (uniform, loguniform, int).")
    high: float | None = Field(None, description="Upper bound (uniform, loguniform, int).")
    values: list[Any] | None = Field(
        None, description="Options (choice). For uniform, loguniform and int: the points search: grid tries "
        "(within low..high); other samplers ignore them.",
    )
    when: dict[str, list[Any]] | None = Field(
        None, description="Condition: {other_param: value or [values]}; this parameter is sampled only in trials "
        "where each named parameter was sampled with one of its values. The named parameters must be choice or "
        "int dimensions of the same space, without cycles.",
    )

    @field_validator("when", mode="before")
    @classmethod
    def _when_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpec:
        if self.when is not None:
            if not self.when:
                raise ValueError("'when' needs at least one condition, e.g. {booster: gbtree}")
            for other, allowed in self.when.items():
                if not allowed:
                    raise ValueError(f"'when' on {other} needs at least one value")
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs a non-empty 'values' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        if self.values is not None and not self.values:
            raise ValueError("'values' (grid points) must not be empty; leave it out instead")
        return self

    def grid_point_problem(self, name: str) -> str | None:
        """Why a grid point in ``values`` of this uniform, loguniform or int dimension ``name`` is wrong, or None."""
        if self.type == "choice" or self.low is None or self.high is None:
            return None
        for i, v in enumerate(self.values or []):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not self.low <= v <= self.high:
                return (f'Got "{v}" for sweep.space.{name}.values[{i}]; a grid point must be a number within low '
                        f"({self.low:g}) and high ({self.high:g})")
            if self.type == "int" and v != int(v):
                return f'Got "{v}" for sweep.space.{name}.values[{i}]; a grid point of an int must be a whole number'
        return None

    def grid_values(self) -> list[Any] | None:
        """The points ``search: grid`` tries: a choice's values, the given ``values``, or every int from ``low``
        to ``high``; None for a continuous dimension without ``values``."""
        if self.values is not None:
            return [int(v) for v in self.values] if self.type == "int" else list(self.values)
        if self.type == "int":
            return list(range(int(self.low or 0), int(self.high or 0) + 1))
        return None

    def grid_count(self) -> int | None:
        """How many points :meth:`grid_values` has, without building the list."""
        if self.values is not None:
            return len(self.values)
        if self.type == "int":
            return int(self.high or 0) - int(self.low or 0) + 1
        return None


class ObjectiveSpec(_Spec):
    """One objective of a multi-objective sweep (``search: nsga2``)."""

    metric: str = Field(description="A metric the job reports, e.g. 'rmse'.")
    mode: Literal["min", "max"] = Field(description="Whether lower or higher is better.")


def condition_order(space: dict[str, ParamSpec]) -> list[str]:
    """The space's dimensions ordered so that each comes after every parameter its ``when`` names (otherwise in
    the order given), which is the order a define-by-run search samples them in.

    Raises:
        ValueError: a ``when`` names a parameter the space lacks, or the conditions make a cycle; the message
            names both parameters.

    Example:
        >>> sp = {"depth": ParamSpec(type="int", low=1, high=4, when={"kind": "tree"}),
        ...       "kind": ParamSpec(type="choice", values=["tree", "linear"])}
        >>> condition_order(sp)
        ['kind', 'depth']
        >>> condition_order({"a": ParamSpec(type="choice", values=[1], when={"b": 1}),
        ...                  "b": ParamSpec(type="choice", values=[1], when={"a": 1})})
        Traceback (most recent call last):
        ValueError: Got "a" for sweep.space.b.when; the conditions make a cycle: a when b, b when a
    """
    order: list[str] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        state[name] = "visiting"
        for other in (space[name].when or {}):
            if other not in space:
                raise ValueError(f'Got "{other}" for sweep.space.{name}.when; no such parameter in sweep.space '
                                 f"(it has {', '.join(space)})")
            if state.get(other) == "visiting":
                cycle = [*path[path.index(other):], name] if other in path else [name]
                links = [f"{a} when {b}" for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True)]
                raise ValueError(f'Got "{other}" for sweep.space.{name}.when; the conditions make a cycle: '
                                 + ", ".join(links))
            visit(other, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in space:
        visit(name, [])
    return order


class ResourcesSpec(_Spec):
    """Resources of one trial: one process (``workers: 1``), or a Ray Train run of ``workers`` processes.

    Example:
        >>> r = ResourcesSpec(cpu=1, workers=2)
        >>> r.workers, r.total_cpu
        (2, 2.0)
        >>> ResourcesSpec(require_gpu=True)
        Traceback (most recent call last):
        pydantic_core._pydantic_core.ValidationError: 1 validation error for ResourcesSpec
          Value error, Got "true" for sweep.resources.require_gpu with sweep.resources.gpu 0; ...
    """

    cpu: float = Field(1.0, gt=0, description="CPUs per trial; with workers > 1, per Ray Train worker.")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial (per worker with workers > 1); fractions such as 0.25 "
                       "share a GPU. On a cluster without a GPU the trials run on CPU, and the run records why in "
                       "its sweep result's warnings, unless require_gpu.")
    workers: int = Field(1, ge=1, le=256, description="Processes per trial. 1: the job trains in the trial's own "
                         "Ray Tune actor. More: each trial is a Ray Train run of this many workers (ScalingConfig), "
                         "each with `cpu` and `gpu`, for a job that declares Job.distributed (torch DDP, LightGBM); "
                         "rank 0's reports reach Tune and rank 0 saves the model. The refit of the winner trains "
                         "in one process with one worker's resources.")
    require_gpu: bool = Field(False, description="Fail at submit (and at the sweep's start) when no node of the "
                              "cluster has a GPU, rather than train on CPU. Needs gpu > 0.")

    @model_validator(mode="after")
    def _gpu_asked(self) -> ResourcesSpec:
        if self.require_gpu and self.gpu <= 0:
            raise ValueError(f'Got "true" for sweep.resources.require_gpu with sweep.resources.gpu {self.gpu:g}; '
                             "require_gpu needs a GPU request: set gpu > 0, or drop require_gpu")
        return self

    @property
    def total_cpu(self) -> float:
        """CPUs one trial holds, over all its workers."""
        return self.cpu * self.workers


class WarmStartSpec(_Spec):
    """The points a sweep evaluates first, from the registry's lineage (Optuna's ``points_to_evaluate``).

    Example:
        >>> WarmStartSpec().champion, WarmStartSpec().top_k
        (True, 2)
    """

    champion: bool = Field(True, description="Evaluate the champion's params on the new data first.")
    top_k: int = Field(2, ge=0, le=50, description="Then the best this many trials of the spec's earlier sweeps.")


class SweepSpec(_Spec):
    """The hyperparameter sweep: Ray Tune with an Optuna sampler (``search``) and a trial scheduler.

    Checked here, each refusal naming the field, the value and the rule: ``search: grid`` needs a finite point set
    on every dimension (a choice, an int, or ``values``) and no ``when``; ``search: nsga2`` needs two or more
    ``objectives`` with ``metric``/``mode`` one of them; ``objectives`` apply to nsga2 only; ``scheduler: pbt``
    needs ``search: random`` (Tune's PBT takes no searcher) and no ``when``; a ``when`` names another choice or
    int dimension, with values it can take, and no cycle; ``pbt`` runs one-process trials only (``workers`` 1).
    Whether the job checkpoints (pbt) is checked at submit.

    Example:
        >>> s = SweepSpec(search="grid", metric="rmse", mode="min", num_samples=50,
        ...               space={"depth": {"type": "int", "low": 2, "high": 4},
        ...                      "lr": {"type": "loguniform", "low": 0.01, "high": 0.3, "values": [0.03, 0.1]}})
        >>> s.grid_size(), s.planned_trials
        (6, 6)
    """

    search: Literal["tpe", "cmaes", "random", "grid", "nsga2"] = Field(
        "tpe", description="Optuna sampler: tpe, cmaes (CMA-ES), random, grid (every point of a finite space; "
        "num_samples above the grid's size is capped to it), nsga2 (NSGA-II over `objectives`, multi-objective).",
    )
    scheduler: Literal["asha", "hyperband", "median", "pbt", "none", "fifo"] = Field(
        "asha", description="Trial scheduler: asha (prunes early at rungs from grace_period), hyperband "
        "(synchronous brackets; a paused trial of a job that does not checkpoint restarts from its first step), "
        "median (median stopping rule after grace_period), pbt (population based training every grace_period "
        "steps; the job must checkpoint), none (every trial runs to its end; fifo is an alias).",
    )
    metric: str = Field(description="Metric the job reports and the sweep optimises, e.g. 'rmse'; with nsga2, "
                        "the objective the winner is picked by (from the Pareto front) and the gate scores.")
    mode: Literal["min", "max"] = Field(description="Whether lower or higher metric is better.")
    objectives: list[ObjectiveSpec] = Field(
        default_factory=list, description="search nsga2 only: two or more [{metric, mode}] optimised together; "
        "sweep.metric and sweep.mode must be one of them.",
    )
    num_samples: int = Field(8, ge=1, le=100000, description="Number of trials.")
    max_concurrent: int = Field(2, ge=1, description="Trials running at once.")
    max_t: int = Field(100, ge=1, description="Most report steps a trial may take (ASHA max_t).")
    grace_period: int = Field(5, ge=1, description="Steps before ASHA may stop a trial.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-trial resources.")
    seed: int | None = Field(0, description="Sampler seed; null for a random one.")
    time_budget: float | None = Field(
        3600.0, description='Wall-clock limit of the sweep\'s trials, e.g. "15m": once reached, running trials are '
        "stopped and no more start; the winner is the best trial that saved a model so far, and the result's "
        "`spent` says so (stopped_by time_budget). A job still running well past it is stopped and failed by the "
        "controller. null for none.",
    )
    cpu_hours: float | None = Field(
        None, description="Limit on the CPU-hours the trials hold (each trial's CPUs times its running seconds, "
        "summed); once reached the sweep stops as with time_budget. null for none.",
    )
    gpu_hours: float | None = Field(
        None, description="Limit on the GPU-hours the trials hold, counted as cpu_hours; needs "
        "sweep.resources.gpu > 0. null for none.",
    )
    retries: int = Field(2, ge=0, le=20, description="Attempts after a failed one, each a new Ray Job.")
    retry_backoff: float = Field(
        30.0, description='Wait before the first retry, doubling after each; a duration like "30s".'
    )
    space: dict[str, ParamSpec] = Field(description="Search space: parameter name -> distribution.")
    warm_start: WarmStartSpec = Field(
        default_factory=WarmStartSpec, description="Points evaluated first: the champion's params and the top-k "
        "trials of earlier sweeps of this spec (those that fit the current space)."
    )

    @field_validator("retry_backoff", mode="before")
    @classmethod
    def _backoff(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("time_budget", "cpu_hours", "gpu_hours")
    @classmethod
    def _positive_budget(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:  # not > 0: NaN is refused too
            raise ValueError("a budget must be greater than 0; null for no limit")
        return value

    @model_validator(mode="after")
    def _gpu_budget(self) -> SweepSpec:
        if self.gpu_hours is not None and self.resources.gpu <= 0:
            raise ValueError(f'Got "{self.gpu_hours:g}" for sweep.gpu_hours with sweep.resources.gpu '
                             f"{self.resources.gpu:g}; trials that hold no GPU never spend GPU-hours: set "
                             "sweep.resources.gpu, or limit sweep.cpu_hours instead")
        return self

    @field_validator("space")
    @classmethod
    def _non_empty(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if not value:
            raise ValueError("must name at least one parameter")
        return value

    @model_validator(mode="after")
    def _grace(self) -> SweepSpec:
        if self.grace_period > self.max_t:
            raise ValueError(f'Got "{self.grace_period}" for sweep.grace_period; it must not exceed max_t '
                             f"({self.max_t})")
        return self

    @model_validator(mode="after")
    def _search_rules(self) -> SweepSpec:
        condition_order(self.space)  # unknown names and cycles
        for name, p in self.space.items():
            problem = p.grid_point_problem(name)
            if problem:
                raise ValueError(problem)
            for other, allowed in (p.when or {}).items():
                _check_condition(name, other, allowed, self.space[other])
        conditional = [name for name, p in self.space.items() if p.when]
        if self.search == "grid":
            for name, p in self.space.items():
                if p.grid_count() is None:
                    raise ValueError(f'Got "grid" for sweep.search; dimension {name} is {p.type} without values, so '
                                     f"it has no grid points: give sweep.space.{name}.values (points within low..high)"
                                     ", or make it an int or a choice")
            if conditional:
                raise ValueError(f'Got "grid" for sweep.search; dimension {conditional[0]} is conditional (when), and '
                                 "a grid over conditional dimensions runs the same trial more than once: use search "
                                 "tpe or random, or drop the condition")
            size = self.grid_size() or 0
            if size > MAX_GRID_POINTS:
                raise ValueError(f'Got "grid" for sweep.search over {size} points; a grid may have at most '
                                 f"{MAX_GRID_POINTS}: give int dimensions fewer values")
        self._objective_rules()
        if self.scheduler == "pbt":
            if self.search != "random":
                raise ValueError(f'Got "{self.search}" for sweep.search with scheduler pbt; PBT draws its first '
                                 "population at random and takes no searcher (Ray Tune), so search must be random")
            if conditional:
                raise ValueError(f'Got "pbt" for sweep.scheduler; dimension {conditional[0]} is conditional (when), '
                                 "and PBT mutates every dimension of every trial: drop the condition or use another "
                                 "scheduler")
            if self.resources.workers > 1:
                raise ValueError(f'Got "{self.resources.workers}" for sweep.resources.workers with scheduler pbt; PBT '
                                 "copies Tune checkpoints between trials, and a multi-worker trial (a Ray Train run) "
                                 "does not hand its checkpoints to Tune: set workers: 1 or use another scheduler")
        return self

    def _objective_rules(self) -> None:
        metrics = [o.metric for o in self.objectives]
        if self.search != "nsga2":
            if self.objectives:
                raise ValueError(f'Got "{metrics[0]}" for sweep.objectives[0].metric with search {self.search}; '
                                 "objectives apply to search nsga2 only: set search: nsga2 or remove them")
            return
        if len(self.objectives) < 2:
            raise ValueError(f'Got "nsga2" for sweep.search with {len(self.objectives)} objective(s); nsga2 needs '
                             "sweep.objectives: two or more [{metric, mode}], sweep.metric among them")
        for i, metric in enumerate(metrics):
            if metric in metrics[:i]:
                raise ValueError(f'Got "{metric}" twice in sweep.objectives; each objective must be a different '
                                 "metric")
        if self.metric not in metrics:
            raise ValueError(f'Got "{self.metric}" for sweep.metric; with search nsga2 it must be one of '
                             f"sweep.objectives ({', '.join(metrics)})")
        mode = self.objectives[metrics.index(self.metric)].mode
        if mode != self.mode:
            raise ValueError(f'Got "{self.mode}" for sweep.mode; sweep.objectives gives {self.metric} mode "{mode}", '
                             "and the two must agree")

    def grid_size(self) -> int | None:
        """How many points ``search: grid`` has (the product of the dimensions' point counts); None when a
        dimension is continuous without ``values``."""
        size = 1
        for p in self.space.values():
            count = p.grid_count()
            if count is None:
                return None
            size *= count
        return size

    @property
    def planned_trials(self) -> int:
        """Trials the sweep runs: ``num_samples``, capped to the grid's size with ``search: grid`` (a grid point is
        never run twice)."""
        if self.search == "grid":
            return min(self.num_samples, self.grid_size() or self.num_samples)
        return self.num_samples

    def direction_problem(self) -> str | None:
        """Why ``mode`` is wrong for a metric the platform knows (its direction in
        :data:`streamtune.validation.metrics.DIRECTIONS`), or None. :meth:`JobSpec.parse` raises it; plain
        ``model_validate`` does not, so specs stored before the check still load (submit checks them against the
        job, :func:`streamtune.sweeps.checks.contract_problems`).

        Example:
            >>> sweep = SweepSpec(metric="auc", mode="min", space={"a": {"type": "int", "low": 1, "high": 3}})
            >>> sweep.direction_problem()
            'Got "min" for sweep.mode; metric auc is better when higher, so mode must be "max"'
        """
        from streamtune.validation.metrics import DIRECTIONS  # here: streamtune.validation imports this module

        pairs = [("sweep.mode", self.metric, self.mode)]
        pairs += [(f"sweep.objectives[{i}].mode", o.metric, o.mode) for i, o in enumerate(self.objectives)]
        for field, metric, mode in pairs:
            want = DIRECTIONS.get(metric)
            if want is None or mode == want:
                continue
            better = "higher" if want == "max" else "lower"
            return f'Got "{mode}" for {field}; metric {metric} is better when {better}, so mode must be "{want}"'
        return None


def _check_condition(name: str, other: str, allowed: list[Any], parent: ParamSpec) -> None:
    """Refuse a ``when`` on ``other`` that can never hold: a continuous parent, or a value it never takes."""
    where = f"sweep.space.{name}.when.{other}"
    if parent.type in ("uniform", "loguniform"):
        raise ValueError(f'Got "{other}" for sweep.space.{name}.when; {other} is {parent.type}, and a condition on a '
                         "continuous parameter never holds exactly: condition on a choice or int parameter")
    for value in allowed:
        if parent.type == "choice" and value not in (parent.values or []):
            raise ValueError(f'Got "{value}" for {where}; {other} takes only {parent.values}')
        if parent.type == "int" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or value != int(value)
                                     or not (parent.low or 0) <= value <= (parent.high or 0)):
            raise ValueError(f'Got "{value}" for {where}; {other} takes only whole numbers from {parent.low:g} to '
                             f"{parent.high:g}")


class SliceSpec(_Spec):
    """A slice of the holdout the challenger must not regress on beyond ``max_regression``.

    Example:
        >>> SliceSpec(name="north", column="region", values=[0], max_regression=0.05).values
        [0]
        >>> SliceSpec(name="hot", column="temp", range=(25, 60), max_regression=0.1).range
        (25.0, 60.0)
    """

    name: str = Field(description="Slice name, shown in the gate report.", pattern=_NAME)
    column: str = Field(description="Holdout column the slice is defined on.")
    values: list[Any] | None = Field(None, description="Rows whose column value is one of these.")
    range: tuple[float, float] | None = Field(None, description="Rows with low <= value < high, as [low, high].")
    max_regression: float = Field(
        0.0, ge=0, description="Largest relative worsening of the slice's metric against the champion's on the "
        "same slice rows, e.g. 0.05 for 5 %."
    )

    @model_validator(mode="after")
    def _one_rule(self) -> SliceSpec:
        if (self.values is None) == (self.range is None):
            raise ValueError(f"slice {self.name} needs exactly one of 'values' or 'range'")
        if self.values is not None and not self.values:
            raise ValueError(f"slice {self.name}: 'values' must not be empty")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"slice {self.name}: range low ({self.range[0]}) must be below high ({self.range[1]})")
        return self


class ValidationSpec(_Spec):
    """The gate between a sweep's winner and traffic."""

    holdout_fraction: float = Field(
        0.2, gt=0, lt=0.9, description="Share of the snapshot kept out of training for the gate."
    )
    valid_fraction: float = Field(0.2, gt=0, lt=0.9, description="Share of the rest used to tune trials on.")
    threshold: float | None = Field(
        None, description="Absolute limit on the metric (a ceiling when mode=min, a floor when mode=max)."
    )
    must_beat_champion_by: float = Field(
        0.0, ge=0, description="Relative margin the challenger must beat the champion by on the same holdout."
    )
    min_rows: int = Field(100, ge=1, description="Smallest snapshot the gate accepts.")
    split: Literal["random", "time"] = Field(
        "random", description="How the holdout and the validation rows are chosen: 'random' (seeded, the same "
        "snapshot always splits the same way), or 'time': the latest rows by dataset.time_column are the holdout, "
        "the latest of the rest are the validation rows, and trials train on the earlier rows.",
    )
    refit: bool = Field(
        True, description="Train the winner again with its params on train + validation rows before the gate; "
        "the refit model is what the gate scores and the registry records (lineage keeps the winning trial).",
    )
    on_champion_error: Literal["reject", "promote"] = Field(
        "reject", description="When a champion exists but cannot be scored on the holdout (a column it needs is "
        "gone, its artifact is deleted or tampered, it fails to load): 'reject' the challenger, or 'promote' it on "
        "its own checks."
    )
    bootstrap: bool = Field(
        True, description="Promote only when a paired bootstrap confidence interval of the metric difference "
        "(challenger vs champion, same holdout rows) shows a significant improvement."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the paired bootstrap interval.")
    bootstrap_resamples: int = Field(1000, ge=100, le=100000, description="Resamples of the paired bootstrap.")
    slices: list[SliceSpec] = Field(
        default_factory=list, description="Slices of the holdout with a per-slice regression limit each."
    )
    max_predict_ms: float | None = Field(
        None, gt=0, description="Budget for the challenger's p99 latency of a one-row predict, in ms, measured "
        "in the sweep job on a holdout sample; null for none."
    )
    max_artifact_mb: float | None = Field(
        None, gt=0, description="Budget for the challenger's artifact size in MB (10^6 bytes); null for none."
    )

    @field_validator("slices")
    @classmethod
    def _unique_slices(cls, value: list[SliceSpec]) -> list[SliceSpec]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"slice names must be unique; {dupes} repeat")
        return value


MAX_OBSERVE_S = 600.0
"""Longest canary/shadow observation a rollout may ask for (``rollout.observe``), in seconds."""
MAX_WATCH_S = 3600.0
"""Longest post-promotion watch a rollout may ask for (``rollout.watch``), in seconds."""


class RolloutSpec(_Spec):
    """How a new version reaches traffic: load, observe (canary and shadow), flip, ack, then a live watch.

    Each phase has its own deadline, so a long observation never eats into the load's or the ack's.

    Example:
        >>> RolloutSpec(canary_percent=10, observe="30s").observe
        30.0
        >>> RolloutSpec(observe="2h")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        pydantic_core.ValidationError: observe: Input should be less than or equal to 600
    """

    canary_percent: float = Field(0.0, ge=0, le=100, description="Share of requests the candidate answers first.")
    shadow_percent: float = Field(
        0.0, ge=0, le=100,
        description="Share of requests also mirrored to the candidate during the observation; its answers and "
        "latency only go into its figures, clients always get the champion's answer.",
    )
    observe: float = Field(
        0.0, ge=0, le=MAX_OBSERVE_S,
        description='How long the candidate is observed (canary and shadow) before the full flip, e.g. "30s"; '
        "at most 600 s.",
    )
    min_requests: int = Field(
        10, ge=0,
        description="Requests the candidate must answer during the observation (canary and shadow together) "
        "before it can pass; fewer fails the rollout. Also the least the live watch needs before it judges.",
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1,
        description="Model error rate (exceptions, NaN/inf; not client 4xx) above which the canary, or the live "
        "watch after promotion, rolls back.",
    )
    max_p99_ms: float | None = Field(
        None, gt=0,
        description="p99 predict latency (ms) above which the canary, or the live watch, rolls back; unset: none.",
    )
    load_timeout: float = Field(
        120.0, gt=0, le=3600, description='How long every replica may take to load the candidate, e.g. "2m".'
    )
    ack_timeout: float = Field(
        30.0, gt=0, le=600,
        description="How long every replica may take to apply a flip (or a canary share); past it the swap rolls "
        "back to the previous version.",
    )
    watch: float = Field(
        0.0, ge=0, le=MAX_WATCH_S,
        description='How long the new version\'s live figures are watched after promotion, e.g. "5m"; past '
        "max_error_rate or max_p99_ms it rolls back to the previous version. 0: no watch.",
    )

    @field_validator("observe", "load_timeout", "ack_timeout", "watch", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _observed(self) -> RolloutSpec:
        if (self.canary_percent > 0 or self.shadow_percent > 0) and self.observe <= 0:
            raise ValueError(
                f"observe is {self.observe:g} s with canary_percent {self.canary_percent:g} and shadow_percent "
                f"{self.shadow_percent:g}; a canary or shadow needs observe > 0 (e.g. \"30s\")"
            )
        return self


class ServeSpec(_Spec):
    """The Ray Serve application that serves the champion."""

    app: str = Field(description="Serve application name; also its route prefix '/<app>'.", pattern=_NAME)
    replicas: int = Field(2, ge=1, description="Number of replicas.")
    num_cpus: float = Field(0.25, gt=0, description="CPUs per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica.")
    max_replicas_per_node: int | None = Field(
        None, ge=1, le=100,
        description="Most replicas Ray Serve places on one node (1 spreads them one per node); at least "
        "replicas / max_replicas_per_node nodes must fit them, or the rest wait. Unset: Serve's default packing.",
    )
    replica_memory_mb: int | None = Field(
        None, ge=1,
        description="Memory (MiB) each replica reserves (Ray's ``memory`` resource): it holds up to three "
        "models (active, previous, candidate), so size it for three. Unset: no reservation.",
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Canary and rollback settings.")


class JobSpec(_Spec):
    """Everything streamtune needs to retrain, gate and serve one model."""

    name: str = Field(description="Spec name; also the registered model's name.", pattern=_NAME)
    dataset: DatasetSpec = Field(description="The data.")
    trigger: TriggerSpec = Field(default_factory=TriggerSpec, description="When to retrain.")
    job: JobEntry = Field(description="The training code.")
    sweep: SweepSpec = Field(description="The hyperparameter sweep.")
    validation: ValidationSpec = Field(default_factory=ValidationSpec, description="The gate.")
    serve: ServeSpec = Field(description="Serving.")
    promotion: Literal["auto", "manual"] = Field(
        "auto",
        description="auto: a run that passes the gate is swapped in at once. manual: it waits as "
        "awaiting_approval until someone approves it (`streamtune runs approve RUN`), and the approver is recorded.",
    )
    base_dir: str = Field(".", description="Folder relative paths resolve against (set to the YAML's folder).")

    @model_validator(mode="after")
    def _time_split(self) -> JobSpec:
        if self.validation.split == "time" and self.dataset.time_column is None:
            raise ValueError('Got "time" for validation.split; it needs dataset.time_column, the column that orders '
                             'the rows')
        if self.dataset.time_column is not None and self.dataset.time_column == self.dataset.label:
            raise ValueError(f'Got "{self.dataset.time_column}" for dataset.time_column; it must not be the label')
        return self

    def code_dir(self) -> Path:
        """Absolute folder of the job's code package."""
        path = Path(self.job.code)
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    @classmethod
    def parse(cls, data: Any, *, source: str | None = None) -> JobSpec:
        """Validate a mapping into a JobSpec, raising :class:`ConfigError` that names field, value, rule; a metric
        the platform knows must have its direction as ``sweep.mode`` (:meth:`SweepSpec.direction_problem`).

        Example:
            >>> JobSpec.parse({"name": "x"})  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            streamtune.errors.ConfigError: Missing dataset; it is required
        """
        if not isinstance(data, dict):
            raise ConfigError(f'Got "{type(data).__name__}" for the JobSpec; must be a mapping of keys')
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise format_validation_error(exc, source=source) from None
        problem = spec.sweep.direction_problem()
        if problem is not None:
            raise ConfigError(problem + (f" in {source}" if source else ""))
        return spec


def load_jobspec(path: str | Path) -> JobSpec:
    """Load a JobSpec YAML file.

    Relative paths inside it (``job.code``) resolve against the file's folder.

    Example:
        >>> spec = load_jobspec("configs/demo.yaml")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'Got "{path}" for the JobSpec path; no such file')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and "base_dir" not in data:
        data = {**data, "base_dir": str(path.parent.resolve())}
    return JobSpec.parse(data, source=str(path))
