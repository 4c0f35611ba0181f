"""What a person sees in the MLflow UI of a finished search, in headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; no browser is downloaded).  The server is the service
tests' (PostgreSQL + ``mlflow server`` with basic auth).  Screenshots are kept under
``$TAGTUNE_TEST_ARTIFACTS`` (default ``test-artifacts/browser`` in the repository)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from service import USERS, Server, TeamSearch, client_as

from tagtune.tracking import RunKind, Tag, kind_filter, parent_filter

# in the default run (`make test`) where PostgreSQL and Chromium are installed
pytestmark = pytest.mark.service

CHROMIUM = os.environ.get("TAGTUNE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SHOTS = Path(os.environ.get("TAGTUNE_TEST_ARTIFACTS", ARTIFACTS)) / "browser"


@pytest.fixture(scope="module")
def finished(mlflow_server: Server, team_search: TeamSearch):
    """alice's finished search (tests/service.py's ``team_search``: fc1, fc2; 2 trials of 3
    epochs each, its report with the HTML dashboard, its finals registered): the experiment, the
    search run and one trial."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    client = client_as("alice", mlflow_server.url)
    exp = client.get_experiment_by_name(team_search.experiment)
    (search,) = client.search_runs([exp.experiment_id], filter_string=kind_filter(RunKind.SEARCH))
    trials = client.search_runs([exp.experiment_id], filter_string=parent_filter(search.info.run_id))
    trial = next(r for r in trials if r.data.tags.get(Tag.KIND) == RunKind.TRIAL)
    return exp, search, trial


def test_mlflow_ui_shows_a_finished_search(mlflow_server: Server, finished) -> None:
    from playwright.sync_api import expect, sync_playwright

    exp, search, trial = finished
    base = mlflow_server.url
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    profile = SHOTS.parent / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            http_credentials={"username": "alice", "password": USERS["alice"]},
            viewport={"width": 1600, "height": 1000},
        )
        page = browser.new_page()
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)  # 2 shared cores: the UI can take a while

        def shot(name: str) -> None:
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

        # 1. the experiment on its training runs (not the GenAI traces view).  MLflow 3.17's UI
        # picks the view from its GenAI / Model training switch (default GenAI), not from the
        # experiment's mlflow.experimentKind tag: tagtune's links carry the switch's URL value.
        page.goto(f"{base}/#/experiments/{exp.experiment_id}?workflowType=machine_learning")
        expect(page.get_by_text(search.info.run_name).first).to_be_visible()
        shot("01-experiment-runs")
        assert page.get_by_text("No data available").count() == 0
        # 2. the search run with its trials nested under it: MLflow 3.17 shows the parent run's
        # row with an (unlabelled) expand button in its name cell, before the run's colour and
        # link; the trials' rows appear once it is clicked
        assert page.get_by_text(trial.info.run_name).count() == 0  # nested: hidden until expanded
        name_cell = page.get_by_role("gridcell").filter(has=page.get_by_role("link", name=search.info.run_name))
        name_cell.get_by_role("button").first.click()
        expect(page.get_by_role("link", name=trial.info.run_name).first).to_be_visible()
        # beside the trials, the finalize's own run ("finals"), its finals nested under it
        assert page.get_by_role("link", name="final-fc1", exact=True).count() == 0
        group_cell = page.get_by_role("gridcell").filter(has=page.get_by_role("link", name="finals", exact=True))
        shot("02-trials-nested")
        group_cell.get_by_role("button").first.click()
        expect(page.get_by_role("link", name="final-fc1", exact=True).first).to_be_visible()
        shot("02b-finals-nested")
        # 3. a trial's page: family tag, source, user, dataset
        page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{trial.info.run_id}")
        expect(page.get_by_text(Tag.FAMILY).first).to_be_visible()
        expect(page.get_by_text("alice").first).to_be_visible()
        dataset = trial.inputs.dataset_inputs[0].dataset.name  # the data set as an MLflow dataset input
        expect(page.get_by_text(dataset).first).to_be_visible()
        shot("03-trial-overview")
        # 4. its val_mAUC chart, one point per epoch
        page.goto(f"{base}/#/experiments/{exp.experiment_id}/runs/{trial.info.run_id}/model-metrics")
        expect(page.get_by_text("val_mAUC").first).to_be_visible()
        expect(page.locator(".js-plotly-plot").first).to_be_visible()  # the charts are drawn
        shot("04-trial-metrics")
        # 5. the HTML dashboard artifact, rendered
        page.goto(
            f"{base}/#/experiments/{exp.experiment_id}/runs/{search.info.run_id}/artifacts/dashboard/dashboard.html"
        )
        expect(page.get_by_text("dashboard.html").first).to_be_visible()
        # rendered (in the artifact viewer's frame), not offered as a download: its own text shows
        expect(page.frame_locator("iframe").first.get_by_text("fc1").first).to_be_visible()
        page.wait_for_timeout(2000)
        shot("05-dashboard-artifact")
        # 6. the registered models
        page.goto(f"{base}/#/models")
        expect(page.get_by_text(f"{exp.name}-fc1").first).to_be_visible()
        shot("06-registered-models")
        browser.close()
    assert len(list(SHOTS.glob("*.png"))) == 7
    # the chart's points are those of the run's history: one per epoch
    history = client_as("alice", base).get_metric_history(trial.info.run_id, "val_mAUC")
    assert sorted(m.step for m in history) == [1, 2, 3]
