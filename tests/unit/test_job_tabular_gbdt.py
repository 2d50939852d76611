"""jobs/tabular_gbdt.py runs the Job conformance suite (LightGBM on CPU, no Ray)."""

import pytest
from jobs.tabular_gbdt import Job

from conformance.job_suite import JobConformance
from streamtune.dev.synthetic import make_sales


class TestTabularGbdt(JobConformance):
    metric = "rmse"

    @pytest.fixture
    def job(self):
        return Job()

    @pytest.fixture
    def data(self):
        return make_sales(800, seed=1), make_sales(200, seed=2), "sales"

    @pytest.fixture
    def config(self):
        return {"num_boost_round": 40, "report_every": 10, "learning_rate": 0.1, "num_leaves": 15}

    def test_binary_objective_reports_logloss(self, tmp_path):
        import pyarrow.compute as pc

        from conformance.job_suite import RecordingContext

        t = make_sales(600, seed=3)
        t = t.set_column(t.schema.get_field_index("sales"), "sales", pc.cast(pc.greater(t["sales"], 45), "int64"))
        ctx = RecordingContext(t, t, "sales", tmp_path / "m")
        Job().train({"objective": "binary", "num_boost_round": 20, "report_every": 10}, ctx)
        assert 0 < ctx.reports[-1]["logloss"] < 0.7 and ctx.reports[-1]["accuracy"] > 0.6
