"""GPUs by default: the pure choice (tagtune.resources.choose_gpus) and where a search applies it."""

from __future__ import annotations

import pytest

from tagtune.resources import RULE, GpuChoice, choose_gpus
from tagtune.trainables.models import get_family, list_families

# -- the pure function -----------------------------------------------------------------------------


def test_no_gpu_in_the_cluster_means_cpu():
    choice = choose_gpus({"CPU": 16.0}, ["fc1", "attention"], 1.0)
    assert choice == GpuChoice(0.0, 0, "no GPU in the cluster: trials train on CPU")
    assert choose_gpus({"CPU": 16.0, "GPU": 0.0}, ["fc1"], 1.0).gpus_per_trial == 0.0


def test_one_gpu_packs_the_fully_connected_families_sixteen_to_a_gpu():
    choice = choose_gpus({"CPU": 16.0, "GPU": 1.0}, ["fc1", "fc2"], 1.0)
    assert (choice.gpus_per_trial, choice.trials_per_gpu) == (1 / 16, 16)
    assert choice.line == (
        "GPUs: 1 in the cluster, 16 trials per GPU (fc1, fc2 share 16 each); --gpus-per-trial 0 forces CPU"
    )


def test_eight_gpus_pack_the_same_per_gpu():
    choice = choose_gpus({"CPU": 128.0, "GPU": 8.0, "memory": 1e12, "node:10.0.0.1": 1.0}, ["attention"], 2.0)
    assert (choice.gpus_per_trial, choice.trials_per_gpu) == (0.125, 8)
    assert choice.line.startswith("GPUs: 8 in the cluster, 8 trials per GPU (attention share 8 each)")


def test_mixed_families_pack_the_fewest():
    choice = choose_gpus({"CPU": 16.0, "GPU": 1.0}, ["fc1", "lstm", "fc500"], 1.0)
    assert (choice.gpus_per_trial, choice.trials_per_gpu) == (0.125, 8)
    assert "the fewest of fc1 16, lstm 8, fc500 16" in choice.line
    assert choose_gpus({"CPU": 16.0, "GPU": 1.0}, ["fc2", "densenet_audio"], 1.0).gpus_per_trial == 1.0


def test_never_more_trials_per_gpu_than_the_cpus_feed():
    # 8 CPUs over 4 GPUs = 2 CPUs per GPU: fc1 wants 16 trials per GPU, 1-CPU trials allow 2
    choice = choose_gpus({"CPU": 8.0, "GPU": 4.0}, ["fc1"], 1.0)
    assert (choice.gpus_per_trial, choice.trials_per_gpu) == (0.5, 2)
    assert "capped by 2 CPUs per GPU at 1 per trial" in choice.line
    # 2-CPU trials on 2 CPUs per GPU: one trial per GPU; fewer CPUs than a trial: still one
    assert choose_gpus({"CPU": 8.0, "GPU": 4.0}, ["fc1"], 2.0).gpus_per_trial == 1.0
    assert choose_gpus({"CPU": 1.0, "GPU": 1.0}, ["fc1"], 2.0).gpus_per_trial == 1.0
    # fractional CPUs per trial pack more: 0.5 CPU each on 2 CPUs per GPU allow 4
    assert choose_gpus({"CPU": 2.0, "GPU": 1.0}, ["fc1"], 0.5).trials_per_gpu == 4


@pytest.mark.parametrize("gpus", [0.0, 1.0, 8.0])
def test_an_explicit_value_is_used_as_given(gpus):
    resources = {"CPU": 16.0, "GPU": gpus}
    assert choose_gpus(resources, ["fc1"], 1.0, requested=0.0) == GpuChoice(
        0.0, 0, "GPUs: --gpus-per-trial 0: trials train on CPU"
    )
    for requested in (0.25, 0.3, 1.0, 2.0):
        choice = choose_gpus(resources, ["fc1", "lstm"], 1.0, requested=requested)
        assert choice.gpus_per_trial == requested and "as given" in choice.line
    assert "4 trials per GPU" in choose_gpus(resources, ["fc1"], 1.0, requested=0.25).line
    if not gpus:
        assert "trials wait for one" in choose_gpus(resources, ["fc1"], 1.0, requested=0.5).line


def test_each_family_declares_its_trials_per_gpu_and_variants_inherit_it():
    per_gpu = {name: get_family(name).trials_per_gpu for name in list_families()}
    assert per_gpu["fc1"] == per_gpu["fc2"] == per_gpu["fc500"] == 16  # fc500 is fc2's variant
    assert per_gpu["densenet_audio"] == 1
    assert {per_gpu[n] for n in per_gpu if n not in ("fc1", "fc2", "fc500", "densenet_audio")} == {8}
    # the --help text states these figures and where they were measured
    assert "16 for fc1/fc2/fc500, 1 for densenet_audio, 8 for the others" in RULE
    assert "measured on an H200" in RULE


def test_a_family_cannot_declare_zero_trials_per_gpu():
    from tagtune.trainables.models import register_family

    with pytest.raises(RuntimeError, match="trials_per_gpu"):
        register_family("never_registered", description="x", trials_per_gpu=0)


# -- the flag and the spec ---------------------------------------------------------------------


def test_the_flag_defaults_to_auto_none_in_the_spec_and_explains_the_rule(capsys):
    from tagtune.cli import build_parser, search_spec_from_args

    spec = search_spec_from_args(build_parser().parse_args(["search", "--train", "t"]))
    assert spec.gpus_per_trial is None
    spec = search_spec_from_args(build_parser().parse_args(["search", "--train", "t", "--gpus-per-trial", "0"]))
    assert spec.gpus_per_trial == 0.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: auto" in help_text and "0 forces CPU" in help_text and "measured on an H200" in help_text


def test_the_recorded_value_round_trips_none_and_numbers():
    from tagtune.tracking import SearchSpec

    for value in (None, 0.0, 0.25):
        spec = SearchSpec(train="/x", families=["fc1"], gpus_per_trial=value)
        assert SearchSpec.from_params(spec.to_params()).gpus_per_trial == value


def test_negative_gpus_per_trial_exits_2_naming_the_flag(tiny_train, workdir, capsys):
    from tagtune.cli import main

    code = main(["search", "--train", str(tiny_train), "--families", "fc1", "--gpus-per-trial", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == "tagtune: error: --gpus-per-trial must be 0 or more, got -1.0"


# -- a real search on this (GPU-less) machine ----------------------------------------------------


def test_a_search_without_the_flag_records_the_chosen_cpu_and_says_so(ray_local, search_spec):
    from mlflow import MlflowClient

    from tagtune.search import run_search

    lines: list[str] = []
    spec = search_spec(experiment="auto")
    assert spec.gpus_per_trial is None
    outcome = run_search(spec, echo=lines.append)
    params = MlflowClient(outcome.tracking_uri).get_run(outcome.parent_run_id).data.params
    assert params["gpus_per_trial"] == "0.0"
    cpu_line = lines.index("no GPU in the cluster: trials train on CPU")
    assert cpu_line < 4 and lines[cpu_line + 1].startswith("searching fc1")  # before the search starts
    assert "0 GPU per trial" in lines[cpu_line + 1]


def test_resume_reuses_an_explicit_value_and_chooses_for_a_run_without_one(ray_local, search_spec, monkeypatch):
    from tagtune import search
    from tagtune.search import resume_search, run_search

    run_search(search_spec(experiment="explicit", gpus_per_trial=0.0), echo=lambda line: None)
    lines: list[str] = []
    resume_search("explicit", None, echo=lines.append)
    assert not any("GPU" in line for line in lines)  # the recorded 0.0 is reused, nothing chosen

    # a parent run that recorded no number (None): the resumed search chooses, after Ray is up
    real = search.CheckedSearchSpec.from_params.__func__  # type: ignore[attr-defined]

    def without_gpus(cls, params, **overrides):
        return real(cls, {k: v for k, v in params.items() if k != "gpus_per_trial"}, **overrides)

    monkeypatch.setattr(search.CheckedSearchSpec, "from_params", classmethod(without_gpus))
    lines.clear()
    resume_search("explicit", None, echo=lines.append)
    assert "no GPU in the cluster: trials train on CPU" in lines
