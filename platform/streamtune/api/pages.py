"""The status page: server-rendered HTML under ``/ui``, from the control plane's typed reads.

Why this way: the API already runs in every controller process, so the page costs no new service, build step or
port. Pages are Jinja2 templates (autoescape on: every value a run, spec or token owner carries is escaped)
rendered on the server; live views reload themselves with ``<meta http-equiv="refresh">`` (``?refresh=0`` stops
it). No JavaScript, no CDN, nothing fetched from the network: the Content-Security-Policy forbids scripts and
every origin but the page's own, so the page works air-gapped. Charts are inline SVG built from numbers
(``charts.py``). Auth is the API's tokens (``page_auth.py``); routes stay out of the OpenAPI document.

Example:
    >>> import tempfile
    >>> from fastapi import FastAPI
    >>> from streamtune.config.settings import Settings
    >>> from streamtune.control.local import LocalControlPlane
    >>> settings = Settings(home=tempfile.mkdtemp(), auth="none")
    >>> app = FastAPI()
    >>> install_pages(app, LocalControlPlane(settings), settings)
    >>> app.url_path_for("run", run_id="r-1"), app.url_path_for("model", name="sales"), app.openapi()["paths"]
    ('/ui/runs/r-1', '/ui/models/sales', {})
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import Response

from streamtune.api import charts, views
from streamtune.api.page_auth import PageAuth, form_token, safe_next, same_origin
from streamtune.api.serving_state import ServingReader, board_reader, read_serving
from streamtune.config.settings import Settings
from streamtune.control.local import LocalControlPlane
from streamtune.errors import NotFoundError
from streamtune.registry.records import TERMINAL_STATUSES, RunRecord, RunStatus, SpecRecord
from streamtune.sweeps.progress import SweepProgress

REFRESH_S = 5
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: with it, browsers send "Origin: null" on our own POSTs
}
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(num=views.num, when=views.when, json=views.as_json, trial_metrics=views.trial_metrics)
_ENV.globals.update(trigger_summary=views.trigger_summary, gate_headline=views.gate_headline)

log = logging.getLogger(__name__)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``templates/<template>`` with the page headers (CSP, no-store)."""
    context.setdefault("refresh_s", 0)
    context.setdefault("who", None)
    context.setdefault("auth", False)
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status_code, headers=_HEADERS)


def install_pages(app: FastAPI, control: LocalControlPlane, settings: Settings, *,
                  serving: ServingReader | None = None) -> None:
    """Add the ``/ui`` pages to ``app``, behind the API's tokens unless ``settings.auth`` is ``none``.

    Args:
        app: The API app.
        control: Where the pages read from.
        settings: ``auth`` and ``serve_port``.
        serving: Reads an app's serving state (default: its version board over Ray, if this process joined Ray).
    """
    auth = PageAuth(control.registry, settings.auth == "token")
    router = APIRouter(prefix="/ui", include_in_schema=False)
    _login_routes(router, auth)
    _Pages(control, serving or board_reader(settings), auth).add(router)
    app.include_router(router)


def _login_routes(router: APIRouter, auth: PageAuth) -> None:
    @router.get("/login")
    def login_form(next: str = "/ui") -> Response:
        return render("login.html", next=safe_next(next), error=None, auth=auth.required)

    @router.post("/login")
    async def login(request: Request, next: str = "/ui") -> Response:
        if not same_origin(request):
            return render("login.html", 403, next=safe_next(next), error="cross-site login refused", auth=True)
        token = await form_token(request)
        if auth.required and auth.owner(token) is None:
            return render("login.html", 401, next=safe_next(next), error="token refused", auth=True)
        response = RedirectResponse(safe_next(next), status_code=303, headers=_HEADERS)
        if auth.required:
            auth.log_in(response, token, request)
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        if not same_origin(request):
            return render("login.html", 403, next="/ui", error="cross-site logout refused", auth=True)
        response = RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)
        auth.log_out(response)
        return response


class _Pages:
    def __init__(self, control: LocalControlPlane, serving: ServingReader, auth: PageAuth) -> None:
        self.control, self.serving, self.auth = control, serving, auth

    def add(self, router: APIRouter) -> None:
        who = Depends(self.auth.require)
        router.add_api_route("", self.overview, methods=["GET"], dependencies=[who])
        router.add_api_route("/serving", self.serving_page, methods=["GET"], dependencies=[who])
        router.add_api_route("/drift", self.drift, methods=["GET"], dependencies=[who])
        router.add_api_route("/runs/{run_id}", self.run, methods=["GET"], dependencies=[who])
        router.add_api_route("/models/{name}", self.model, methods=["GET"], dependencies=[who])

    def _common(self, request: Request, refresh: int | None, default_refresh: int) -> dict[str, Any]:
        return {"who": getattr(request.state, "page_user", None), "auth": self.auth.required,
                "refresh_s": default_refresh if refresh is None else refresh, "now": time.time()}

    def _apps(self, specs: list[SpecRecord]) -> list[Any]:
        return read_serving(self.serving, [(r, self._champion(r.name)) for r in specs])

    def _champion(self, name: str) -> int | None:
        champion = self.control.champion(name)
        return champion.version if champion else None

    def overview(self, request: Request, refresh: int | None = Query(None, ge=0, le=3600)) -> Response:
        """Specs, the newest runs, and serving at a glance."""
        status = self.control.status()
        return render("overview.html", **self._common(request, refresh, REFRESH_S), status=status,
                      runs=self.control.runs(limit=50), apps=self._apps(self.control.specs()))

    def serving_page(self, request: Request, refresh: int | None = Query(None, ge=0, le=3600)) -> Response:
        """Each app's versions, traffic split and live figures."""
        return render("serving.html", **self._common(request, refresh, REFRESH_S),
                      apps=self._apps(self.control.specs()))

    def drift(self, request: Request, refresh: int | None = Query(None, ge=0, le=3600)) -> Response:
        """Per spec, the newest run whose trigger measured per-feature drift."""
        found = []
        for record in self.control.specs():
            runs = self.control.runs(record.name, limit=200)
            measured = next(((r, t) for r in runs if (t := views.drift_table(views.trigger_details(r)))), None)
            found.append((record.name, measured))
        return render("drift.html", **self._common(request, refresh, 0), specs=found)

    def run(self, request: Request, run_id: str, refresh: int | None = Query(None, ge=0, le=3600)) -> Response:
        """One run: trigger, gate report, trials and the best so far; reloads itself while the run is in flight."""
        try:
            run = self.control.run(run_id)
        except NotFoundError as exc:
            return render("not_found.html", 404, **self._common(request, 0, 0), message=exc.headline)
        spec = next((r.spec for r in self.control.specs() if r.name == run.spec_name), None)
        live = run.status not in TERMINAL_STATUSES and run.status is not RunStatus.AWAITING_APPROVAL
        progress = self._progress(run) if live else None
        return render("run.html", **self._common(request, refresh, 3 if live else 0), run=run, spec=spec, live=live,
                      progress=progress, curves=charts.curve_chart(progress) if progress else None,
                      **_run_parts(run, spec.sweep.metric if spec else None))

    def _progress(self, run: RunRecord) -> SweepProgress | None:
        """The running sweep's progress; None if it wrote none yet or it cannot be read (the page says so)."""
        try:
            return self.control.sweep_progress(run)
        except Exception:  # noqa: BLE001 -- a view: an unreadable progress file must not break the page
            log.warning("could not read the sweep progress of %s", run.run_id, exc_info=True)
            return None

    def model(self, request: Request, name: str) -> Response:
        """A model's versions with metrics and lineage, its aliases and their history."""
        versions = self.control.models(name)
        if not versions and name not in {r.name for r in self.control.specs()}:
            return render("not_found.html", 404, **self._common(request, 0, 0), message=f'no model "{name}"')
        history = self.control.alias_history(name)
        return render("model.html", **self._common(request, 0, 0), name=name, versions=versions[::-1],
                      aliases=views.current_aliases(history), history=history[::-1])


def _run_parts(run: RunRecord, metric: str | None) -> dict[str, Any]:
    """The run page's derived parts: typed gate report, sweep, trial chart, trigger details, drift table."""
    report = views.gate_report(run)
    sweep = views.sweep_result(run)
    metric = metric or (str(report.numbers.get("metric")) if report else None)
    if sweep is not None and metric is None:
        metric = next((k for k, v in sweep.best.metrics.items() if isinstance(v, float)), None)
    chart = charts.trial_chart(sweep.trials, metric, best_id=sweep.best.trial_id) if sweep and metric else None
    details = views.trigger_details(run)
    return {"report": report, "data_gate": views.data_gate_report(run), "sweep": sweep, "metric": metric,
            "chart": chart, "trigger": details, "drift": views.drift_table(details)}
