"""The public API is pinned: removing or renaming a name is a breaking change and must show up here."""

import inspect

import keepfit

EXPECTED = {
    "__version__", "KeepfitConfig", "load_config", "save_config", "infer_config", "write_config_file",
    "load_and_validate", "CheckedRows", "check_data", "CheckResult", "split_rows", "snapshot_data",
    "create_snapshot", "load_snapshot", "list_snapshots", "diff_snapshots", "Snapshot", "generate_demo_data",
    "generate_next_week", "fit", "FitResult", "evaluate", "EvaluateResult", "predict", "update", "UpdateResult",
    "compare", "CompareResult", "Registry", "Lineage", "ModelVersionInfo", "KeepfitError", "ConfigError",
    "DataError", "ModelError", "TrainingError", "GateRejected", "RegistryError", "MissingExtraError",
    "LockBusy", "ChampionMoved", "screen_batch", "ScreenResult", "find_training_label_issues",
    "collect_label_issues", "accept_reviewed", "update_from_feedback", "run_monitor", "MonitorReport", "PredictionLog",
    "run_tune", "TuneResult", "run_auto", "AutoResult", "adapt", "AdaptResult", "federate", "FederateResult",
}


def test_all_is_pinned():
    assert set(keepfit.__all__) == EXPECTED
    assert len(keepfit.__all__) == len(set(keepfit.__all__))
    for name in keepfit.__all__:
        assert hasattr(keepfit, name), name


def test_errors_form_one_hierarchy():
    for name in ["ConfigError", "DataError", "ModelError", "TrainingError", "GateRejected", "RegistryError",
                 "MissingExtraError", "LockBusy", "ChampionMoved"]:
        assert issubclass(getattr(keepfit, name), keepfit.KeepfitError)


def test_lifecycle_functions_take_the_config_first():
    for fn in (keepfit.fit, keepfit.evaluate, keepfit.predict, keepfit.update, keepfit.compare,
               keepfit.update_from_feedback, keepfit.run_monitor, keepfit.run_tune, keepfit.run_auto,
               keepfit.adapt, keepfit.federate):
        first = next(iter(inspect.signature(fn).parameters.values()))
        assert first.name == "config", fn.__name__
        assert fn.__doc__, f"{fn.__name__} needs a docstring"


def test_importing_keepfit_does_not_import_torch_or_mlflow():
    import subprocess
    import sys

    code = "import sys, keepfit; print('torch' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], "import keepfit must stay light; import heavy parts inside functions"


def test_stage_packages_do_not_shadow_lifecycle_functions():
    import keepfit.evaluation  # noqa: F401  (importing a stage must not replace keepfit.evaluate)
    import keepfit.federated  # noqa: F401  (nor the federated package keepfit.federate)
    import keepfit.train  # noqa: F401

    assert callable(keepfit.evaluate) and callable(keepfit.fit) and callable(keepfit.update)
    assert callable(keepfit.federate)
