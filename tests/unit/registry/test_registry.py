"""The registry on SQLite, read back through a plain ``mlflow.MlflowClient`` wherever it matters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from keepfit.errors import RegistryError
from keepfit.registry import Lineage, Registry
from keepfit.registry import mlflow_registry as mr
from keepfit.store import Store


def _plain_client(config) -> MlflowClient:
    uri = Store.at(config.store).default_registry_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def _register(registry, make_model, make_lineage, name: str, **kwargs):
    weights = name.encode() * 10
    return registry.register(
        make_model(name, weights), metrics=kwargs.pop("metrics", {"accuracy": 0.8}),
        lineage=kwargs.pop("lineage", make_lineage()), **kwargs,
    )


def test_register_two_versions_readable_with_plain_mlflow_client(registry, config, make_model, make_lineage,
                                                                  tmp_path):
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text('{"accuracy": 0.81}')
    v1 = registry.register(
        make_model("m1", b"weights-one"), metrics={"accuracy": 0.81, "macro f1": 0.7, "nan": float("nan")},
        lineage=make_lineage("snap-1"), evaluation_dir=evaluation, alias="champion",
        tags={"keepfit.kind": "fit"},
    )
    v2 = _register(registry, make_model, make_lineage, "m2", lineage=make_lineage("snap-2", parent="1"))
    assert (v1.version, v2.version) == ("1", "2")
    assert (v1.status, v2.status) == ("champion", "candidate")

    client = _plain_client(config)
    assert _aliases(client, registry.name) == {"champion": "1"}
    mv1 = client.get_model_version(registry.name, "1")
    assert mv1.run_id == v1.run_id and mv1.source == v1.source
    assert mv1.tags["keepfit.lineage.data_snapshot"] == "snap-1"
    assert mv1.tags["keepfit.kind"] == "fit"
    run = client.get_run(v1.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["config_hash"] == "cfg0123456789abc"
    assert run.data.params["data_snapshot"] == "snap-1"
    assert run.data.metrics == {"accuracy": 0.81, "macro f1": 0.7}  # NaN is not logged
    assert json.loads(run.data.tags["keepfit.lineage.labels"]) == ["billing", "refund", "other"]
    assert client.get_experiment(run.info.experiment_id).name == registry.name
    files = sorted(a.path for a in client.list_artifacts(v1.run_id, "model"))
    assert files == ["model/config.json", "model/model.safetensors", "model/tokenizer.json"]
    assert [a.path for a in client.list_artifacts(v1.run_id, "evaluation")] == ["evaluation/metrics.json"]
    local = Path(client.download_artifacts(v1.run_id, "model/model.safetensors", str(tmp_path)))
    assert local.read_bytes() == b"weights-one"
    # artifacts live in the project store, not in ./mlruns
    assert registry.model_path("1").is_relative_to(Store.at(config.store).registry_artifacts)
    assert (registry.model_path("v1") / "model.safetensors").read_bytes() == b"weights-one"
    assert v2.metrics == {"accuracy": 0.8}


def test_lineage_round_trips_through_tags_and_registry(registry, make_model, make_lineage):
    lineage = make_lineage("snap-xyz", parent="7", labels=["a", "b", "ü"])
    assert Lineage.from_tags(lineage.to_tags(8000)) == lineage
    assert Lineage.from_dict(lineage.to_dict()) == lineage
    root = make_lineage(parent=None)
    assert "keepfit.lineage.parent_version" not in root.to_tags(8000)
    assert Lineage.from_tags(root.to_tags(8000)).parent_version is None

    info = _register(registry, make_model, make_lineage, "m", lineage=lineage)
    assert registry.get(info.version).lineage == lineage


def test_labels_too_long_for_a_tag_are_read_from_lineage_json(registry, make_model, make_lineage,
                                                               monkeypatch):
    monkeypatch.setattr(mr, "MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH", 10)
    labels = [f"label-{i}" for i in range(50)]
    info = _register(registry, make_model, make_lineage, "m", lineage=make_lineage(labels=labels))
    assert info.tags["keepfit.lineage.labels"] == "@lineage.json"
    assert info.lineage.labels == labels


def test_refs_resolve_numbers_aliases_and_latest(registry, make_model, make_lineage):
    for name in ("a", "b", "c"):
        _register(registry, make_model, make_lineage, name)
    registry.promote("2", reason="best so far")
    registry.set_challenger("3", reasons=["negative flip rate 3.1% > 2.0%"])
    assert [registry.get(r).version for r in ("1", "v1", "V2", " 3 ", "latest")] == ["1", "1", "2", "3", "3"]
    assert registry.get("champion").version == "2"
    assert registry.get("challenger").version == "3"
    assert registry.champion().version == "2"
    assert [(i.version, i.status) for i in registry.list()] == [
        ("1", "candidate"), ("2", "champion"), ("3", "challenger")
    ]


@pytest.mark.parametrize("ref", ["9", "v9", "nonsense"])
def test_unknown_ref_lists_the_versions_that_exist(registry, make_model, make_lineage, ref):
    _register(registry, make_model, make_lineage, "a")
    _register(registry, make_model, make_lineage, "b")
    with pytest.raises(RegistryError, match=r"Versions that exist: 1, 2") as err:
        registry.get(ref)
    assert repr(ref) in str(err.value)
    with pytest.raises(RegistryError):
        registry.model_path(ref)


def test_empty_registry_says_how_to_get_a_version(registry):
    assert registry.list() == [] and registry.champion() is None and registry.history() == []
    for ref in ("latest", "champion", "1"):
        with pytest.raises(RegistryError, match="keepfit fit"):
            registry.get(ref)
    with pytest.raises(RegistryError, match="no version is champion"):
        registry.rollback(reason="x")


def test_promote_and_rollback_round_trip_through_mlflow(registry, config, make_model, make_lineage):
    v1 = _register(registry, make_model, make_lineage, "a", alias="champion")
    _register(registry, make_model, make_lineage, "b")
    client = _plain_client(config)

    promoted = registry.promote("2", reason="gate passed")
    assert promoted.status == "champion" and promoted.aliases == ["champion"]
    assert _aliases(client, registry.name) == {"champion": "2"}
    tags2 = client.get_model_version(registry.name, "2").tags
    assert tags2["keepfit.promote_reason"] == "gate passed"
    assert tags2["keepfit.forced"] == "false"
    assert tags2["keepfit.promoted_at"].endswith("Z") and tags2["keepfit.promoted_by"]
    assert client.get_model_version(registry.name, "1").tags["keepfit.status"] == "archived"
    assert registry.get("1").status == "archived"
    assert (registry.model_path("1") / "model.safetensors").read_bytes() == b"a" * 10  # nothing deleted

    back = registry.rollback(reason="complaints from support")
    assert back.version == "1" and back.status == "champion"
    assert _aliases(client, registry.name) == {"champion": "1"}
    tags2 = client.get_model_version(registry.name, "2").tags
    assert tags2["keepfit.status"] == "rolled-back"
    assert tags2["keepfit.rollback_reason"] == "complaints from support"
    assert registry.model_path("2").is_dir()
    assert len(client.search_model_versions(f"name = '{registry.name}'")) == 2

    history = registry.history()
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [
        ("rollback", "1", "2"), ("promote", "2", "1"), ("promote", "1", None)
    ]
    assert history[0]["reason"] == "complaints from support"
    # the event log is plain registered-model tags, readable in MLflow
    raw = client.get_registered_model(registry.name).tags
    events = [json.loads(v) for k, v in sorted(raw.items()) if k.startswith("keepfit.event.")]
    assert [e["action"] for e in events] == ["promote", "promote", "rollback"]

    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(reason="again")
    assert _aliases(client, registry.name) == {"champion": "1"}
    assert v1.version == "1"


def test_rollbacks_undo_promotions_in_order(registry, make_model, make_lineage):
    _register(registry, make_model, make_lineage, "a", alias="champion")
    for name in ("b", "c"):
        info = _register(registry, make_model, make_lineage, name)
        registry.promote(info.version, reason=f"promote {name}")
    assert registry.champion().version == "3"
    assert registry.rollback(reason="r1").version == "2"
    assert registry.rollback(reason="r2").version == "1"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(reason="r3")
    assert registry.rollback(reason="explicit", to="v3").version == "3"
    assert registry.rollback(reason="undo explicit").version == "1"


def test_promote_refuses_the_champion_and_needs_a_reason(registry, make_model, make_lineage):
    _register(registry, make_model, make_lineage, "a", alias="champion")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote("1", reason="again")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote("1", reason="  ")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.rollback(reason="x", to="1")


def test_challenger_keeps_gate_reasons_and_forced_promotion_is_recorded(registry, config, make_model,
                                                                        make_lineage):
    _register(registry, make_model, make_lineage, "a", alias="champion")
    _register(registry, make_model, make_lineage, "b")
    _register(registry, make_model, make_lineage, "c")
    reasons = ["negative flip rate 3.1% > 2.0%", "class refund: -8.0 points"]
    first = registry.set_challenger("2", reasons=reasons)
    assert first.status == "challenger" and first.gate["decision"] == "rejected"
    assert first.gate["reasons"] == reasons
    client = _plain_client(config)
    assert json.loads(client.get_model_version(registry.name, "2").tags["keepfit.gate"])["reasons"] == reasons
    with pytest.raises(RegistryError, match="is the champion"):
        registry.set_challenger("1", reasons=[])

    registry.set_challenger("3", reasons=["accuracy -1.2 points"])
    assert _aliases(client, registry.name) == {"champion": "1", "challenger": "3"}
    assert registry.get("2").status == "rejected"

    forced = registry.promote("challenger", reason="forced past the gate: accuracy -1.2 points", forced=True)
    assert forced.version == "3" and forced.aliases == ["champion"]  # no longer challenger
    assert forced.gate["decision"] == "forced" and forced.gate["reasons"] == ["accuracy -1.2 points"]
    assert forced.promotion["forced"] is True
    assert client.get_model_version(registry.name, "3").tags["keepfit.forced"] == "true"
    assert _aliases(client, registry.name) == {"champion": "3"}
    assert registry.history()[0]["forced"] is True


def test_register_validates_its_inputs(registry, make_model, make_lineage, tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register(tmp_path / "missing", metrics={}, lineage=make_lineage())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistryError, match="is empty"):
        registry.register(empty, metrics={}, lineage=make_lineage())
    with pytest.raises(RegistryError, match="alias must be"):
        registry.register(make_model("a"), metrics={}, lineage=make_lineage(), alias="prod")
    with pytest.raises(RegistryError, match="comparison folder"):
        registry.register(make_model("a"), metrics={}, lineage=make_lineage(),
                          comparison_dir=tmp_path / "nope")
    assert registry.list() == []


def test_model_path_downloads_when_the_store_is_remote(registry, make_model, make_lineage, monkeypatch):
    _register(registry, make_model, make_lineage, "a", alias="champion")
    monkeypatch.setattr(mr, "_local_path", lambda uri: None)  # behave as if artifacts were on a server
    path = registry.model_path("champion")
    assert path.is_relative_to(Store.at(registry.store.root).registry_db.parent / "downloads")
    assert (path / "model.safetensors").read_bytes() == b"a" * 10
    assert registry.model_path("1") == path  # downloaded once


def test_model_name_defaults_to_the_project_folder(tmp_path):
    from keepfit.config import KeepfitConfig

    config = KeepfitConfig(store=str(tmp_path / "My Project!" / ".keepfit"))
    assert mr.model_name_for(config) == "My Project"
    with pytest.raises(RegistryError, match="not a valid MLflow model name"):
        mr.model_name_for(KeepfitConfig(registry={"model_name": "a/b"}))


def test_open_reuses_one_client_per_uri(config):
    first, second = Registry.open(config), Registry.open(config)
    assert first.client is second.client


def test_store_removed_and_made_again_in_one_process(tmp_path, make_model, make_lineage):
    """A project folder deleted and recreated at the same path must not write into the deleted database."""
    import shutil

    from keepfit.config import KeepfitConfig

    config = KeepfitConfig(store=str(tmp_path / "again" / ".keepfit"))
    Registry.open(config).register(make_model("a"), metrics={}, lineage=make_lineage(), alias="champion")
    shutil.rmtree(tmp_path / "again")
    fresh = Registry.open(config)
    assert fresh.list() == [] and Store.at(config.store).registry_db.exists()
    assert fresh.register(make_model("b"), metrics={}, lineage=make_lineage()).version == "1"
    assert len(_plain_client(config).search_model_versions(f"name = '{fresh.name}'")) == 1
