"""Model versions in MLflow's model registry: register with lineage, resolve, promote, roll back.

Layout in MLflow (all readable with a plain ``mlflow.MlflowClient(tracking_uri)`` and the MLflow UI):

- one experiment named after the registered model; each registration is one run in it, with params
  (config hash, snapshot, ...), metrics, lineage tags and artifacts ``model/`` (the Hugging Face folder),
  ``evaluation/``, ``comparison/`` and ``lineage.json``;
- one registered model; each version's source is its run's ``model/`` folder and carries the lineage tags;
- aliases ``champion`` and ``challenger``; version tags ``keepfit.status``, ``keepfit.gate`` (JSON),
  ``keepfit.promoted_at|promote_reason|promoted_by|forced``, ``keepfit.rolled_back_at|rollback_reason``;
- the event log as registered-model tags ``keepfit.event.*`` (see :mod:`keepfit.registry.events`).

Atomicity: artifacts are written first, the model version is created from the finished upload, and the
run is marked FINISHED last. A version whose run is not FINISHED is half-made: it is never listed, an
exception during registration deletes it (and its run and files) before re-raising, and opening the
registry sweeps away what a killed process left.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import re
import shutil
import socket
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

# Library code stays quiet: no telemetry, no "View run at" lines or progress bars written by MLflow itself.
# MLflow's HTTP defaults (7 retries, backoff factor 2) make an unreachable tracking server take about four
# minutes to report; 3 retries with factor 1 report it in seconds. setdefault: explicit settings win.
for _var, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}.items():
    os.environ.setdefault(_var, _value)

import psutil  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunStatus, ViewType  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.utils.file_utils import local_file_uri_to_path  # noqa: E402
from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH, MAX_TAG_VAL_LENGTH  # noqa: E402

from keepfit._io import atomic_dir  # noqa: E402
from keepfit.config import KeepfitConfig  # noqa: E402
from keepfit.errors import RegistryError  # noqa: E402
from keepfit.lock import DEFAULT_LOCK_TIMEOUT_S, project_lock  # noqa: E402
from keepfit.registry.events import events_from_tags, new_event_key, previous_champion  # noqa: E402
from keepfit.registry.lineage import LABELS_IN_ARTIFACT, LINEAGE_TAG_PREFIX, Lineage, ModelVersionInfo  # noqa: E402
from keepfit.registry.naming import model_name_from_folder  # noqa: E402
from keepfit.store import Store  # noqa: E402

__all__ = ["Registry", "ChampionMoved", "CHAMPION", "CHALLENGER", "UNSET", "model_name_for"]

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

STATUS = "keepfit.status"
GATE = "keepfit.gate"
PROMOTED_AT = "keepfit.promoted_at"
PROMOTE_REASON = "keepfit.promote_reason"
PROMOTED_BY = "keepfit.promoted_by"
FORCED = "keepfit.forced"
ROLLED_BACK_AT = "keepfit.rolled_back_at"
ROLLBACK_REASON = "keepfit.rollback_reason"
REGISTRATION = "keepfit.registration"  # run tag marking a keepfit registration run
OWNER = "keepfit.owner"  # run tag: JSON {host, pid, started} of the registering process

# A RUNNING registration from another host is only presumed dead after this long (seconds).
STALE_AFTER_S = 24 * 3600
_MODEL_ARTIFACT = "model"
_METRIC_OK = re.compile(r"[^\w.\- /]+")
_CLIENTS: dict[str, MlflowClient] = {}
_DB_IDENTITY: dict[str, tuple[int, int] | None] = {}  # SQLite file (device, inode) each cached client uses
_CHECK_URI = "Check registry.uri in keepfit.yaml (and that the tracking server is reachable, if it is one)."
_T = TypeVar("_T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # ``expected_champion`` not given: promote whatever the champion is now


class ChampionMoved(RegistryError):
    """A compare-and-swap promotion was refused: the champion is no longer the version the candidate was
    judged against. ``expected`` and ``actual`` are version numbers (None: no champion)."""

    def __init__(self, message: str, *, candidate: str, expected: str | None, actual: str | None) -> None:
        self.candidate = candidate
        self.expected = expected
        self.actual = actual
        super().__init__(message)


def _quiet_mlflow() -> None:
    # Creating the SQLite schema logs every alembic migration at INFO; keep the user's terminal clean.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _client_for(uri: str, db_file: Path | None = None) -> MlflowClient:
    """One client per tracking URI per process (creating an SQLite store runs migrations: seconds).

    ``db_file`` is the SQLite file behind ``uri``: if it was deleted or replaced since the client was made
    (a project folder removed and made again in one process), the cached stores would keep writing to the
    old, deleted file, so they are dropped and rebuilt.
    """
    cached = _CLIENTS.get(uri)
    if cached is not None and db_file is not None and _DB_IDENTITY.get(uri) != _file_identity(db_file):
        _forget_stores(cached)
        cached = None
    if cached is None:
        _quiet_mlflow()
        cached = _CLIENTS[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return cached


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (None for in-memory or non-SQLite URIs)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _forget_stores(client: MlflowClient) -> None:
    # MLflow caches one store per URI (lru_cache in its store registries); both must be rebuilt.
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for store_of in (lambda: client._tracking_client.store, lambda: client._get_registry_client().store):
        with contextlib.suppress(Exception):
            store_of().engine.dispose()
    TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
    ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()


def _now_iso(ms: int | None = None) -> str:
    stamp = datetime.now(timezone.utc) if ms is None else datetime.fromtimestamp(ms / 1000, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _is_local_uri(uri: str) -> bool:
    """A URI whose artifacts keepfit keeps in the project store (a database or folder, not a server)."""
    scheme = urllib.parse.urlparse(uri).scheme.split("+")[0]
    return scheme in {"", "file", "sqlite", "postgresql", "mysql", "mssql"}


def _local_path(uri: str) -> Path | None:
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("", "file"):
        return Path(local_file_uri_to_path(uri))
    return None


def model_name_for(config: KeepfitConfig) -> str:
    """``registry.model_name``, else the project folder's name (the folder holding the store), with a warning:
    a folder's name changes when the project is renamed or copied, and its versions would not be found."""
    if config.registry.model_name:
        name = config.registry.model_name
        if any(c in name for c in "/:'\"") or not name.strip():
            raise RegistryError(
                f"registry.model_name {name!r} is not a valid MLflow model name: expected a name without "
                "'/', ':' or quotes. Change registry.model_name in keepfit.yaml."
            )
        return name
    name = model_name_from_folder(Store.at(config.store).root.parent.name)
    log.warning(
        "registry.model_name is not set; using the project folder's name %r. A renamed or copied project "
        "would find no versions under another name: add `registry: {model_name: %s}` to keepfit.yaml.",
        name, name,
    )
    return name


def _translate_errors(method: Callable[..., _T]) -> Callable[..., _T]:
    """MLflow's exceptions become RegistryError with the registry's URI and what to check."""

    @functools.wraps(method)
    def wrapper(self: Registry, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except MlflowException as err:
            raise RegistryError(
                f"The MLflow registry at {self.uri} failed in {method.__name__}: {err.message}. "
                + _CHECK_URI
            ) from err

    return wrapper


class Registry:
    """Model versions of one project in MLflow's model registry (see the module docstring for the layout).

    Every write (register, promote, set_challenger, rollback, removing half-made versions) holds the project
    lock (:func:`keepfit.lock.project_lock`), waiting at most ``lock_timeout`` seconds for another process.
    """

    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT_S

    def __init__(self, client: MlflowClient, uri: str, name: str, experiment_id: str, store: Store) -> None:
        self.client = client
        self.uri = uri
        self.name = name
        self.experiment_id = experiment_id
        self.store = store

    # -- opening ---------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, config: KeepfitConfig) -> Registry:
        """Connect to the registry in ``config`` (SQLite in the store by default), creating what is missing,
        and remove half-made versions a killed registration left behind."""
        store = Store.at(config.store)
        uri = config.registry.uri or store.default_registry_uri
        name = model_name_for(config)
        artifacts = store.registry_artifacts.as_uri() if _is_local_uri(uri) else None
        db_file = _sqlite_file(uri)
        if db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
        try:
            client = _client_for(uri, db_file)
            experiment_id = _ensure_experiment(client, name, artifacts)
            _ensure_registered_model(client, name)
            if db_file is not None:
                _DB_IDENTITY[uri] = _file_identity(db_file)
        except MlflowException as err:
            raise RegistryError(
                f"Cannot open the MLflow registry at {uri}: {err.message}. "
                + _CHECK_URI
            ) from err
        registry = cls(client, uri, name, experiment_id, store)
        if artifacts is not None and db_file is not None and db_file == store.registry_db:
            registry._follow_moved_store(db_file, artifacts)
        registry.sweep()
        return registry

    def _follow_moved_store(self, db_file: Path, artifacts: str) -> None:
        """Re-point the registry's file paths when the project folder was renamed or copied.

        MLflow stores absolute artifact paths; after a move they name the old folder, so reading a version
        would fail and new registrations would write into the old (or the original) project. The database
        lives in this store, so the files beside it are the ones it means.
        """
        old = self.client.get_experiment(self.experiment_id).artifact_location.rstrip("/")
        if old == artifacts.rstrip("/") or not old.endswith("/registry/artifacts"):
            return
        with self._locked("re-pointing a moved registry"):
            moved = _replace_prefix(db_file, self.name, self.experiment_id, old, artifacts.rstrip("/"))
        log.warning(
            "The project store moved (registry files were recorded under %s); re-pointed %d registered "
            "version(s) of %r at %s.", old, moved, self.name, artifacts,
        )

    # -- registering -----------------------------------------------------------------------------------------

    @_translate_errors
    def register(
        self,
        model_dir: Path,
        *,
        metrics: dict[str, float],
        lineage: Lineage,
        evaluation_dir: Path | None = None,
        comparison_dir: Path | None = None,
        alias: str | None = None,
        tags: dict[str, str] | None = None,
        expected_champion: str | None | Any = UNSET,
    ) -> ModelVersionInfo:
        """Register ``model_dir`` (a Hugging Face model folder) as a new version, all or nothing.

        One MLflow run gets params, ``metrics``, the lineage and user ``tags`` as tags, and the folders as
        artifacts (``model/``, ``evaluation/``, ``comparison/``); the version is created from ``model/``.
        ``alias`` "champion" promotes it (recorded as an event; ``expected_champion`` as in :meth:`promote`,
        and when that check fails the version stays registered without an alias and ChampionMoved is
        raised), "challenger" makes it the challenger. If anything fails before the version is complete, the
        partial run, files and version are removed and the error is re-raised. Holds the project lock.
        """
        folders = {_MODEL_ARTIFACT: Path(model_dir), "evaluation": evaluation_dir,
                   "comparison": comparison_dir}
        for what, folder in folders.items():
            if folder is not None and not Path(folder).is_dir():
                raise RegistryError(
                    f"Cannot register: the {what} folder {folder} does not exist or is not a folder. "
                    "Pass the folder the training/evaluation step wrote."
                )
        if not any(Path(model_dir).iterdir()):
            raise RegistryError(f"Cannot register: the model folder {model_dir} is empty; expected files.")
        if alias not in (None, CHAMPION, CHALLENGER):
            raise RegistryError(f"alias must be {CHAMPION!r}, {CHALLENGER!r} or None, got {alias!r}.")
        with self._locked("registering a model version"):
            version = self._register_files(folders, metrics, lineage, tags or {})
            if alias == CHAMPION:
                return self.promote(version, reason="registered as champion", expected_champion=expected_champion)
            if alias == CHALLENGER:
                return self.set_challenger(version, reasons=[])
            return self.get(version)

    def _register_files(
        self, folders: dict[str, Path | None], metrics: dict[str, float], lineage: Lineage, tags: dict[str, str]
    ) -> str:
        run_id: str | None = None
        version: str | None = None
        try:
            run_id = self._start_run(lineage, tags)
            self._log_run_data(run_id, metrics, lineage)
            for artifact_path, folder in folders.items():
                if folder is not None:
                    self.client.log_artifacts(run_id, str(folder), artifact_path)
            self.client.log_dict(run_id, lineage.to_dict(), "lineage.json")
            version = self._create_version(run_id, lineage, tags)
            self.client.update_run(run_id, name=f"{self.name}-v{version}")
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))  # the commit point
        except BaseException:
            self._discard(run_id, [version] if version else [])
            raise
        return version

    def _start_run(self, lineage: Lineage, tags: dict[str, str]) -> str:
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
        run_tags = {
            **{str(k): str(v) for k, v in tags.items()},
            **lineage.to_tags(MAX_TAG_VAL_LENGTH),
            REGISTRATION: "true",
            OWNER: json.dumps(owner),
            "mlflow.user": _user(),  # the UI's "User" column
        }
        run = self.client.create_run(self.experiment_id, tags=run_tags, run_name=f"{self.name}-registering")
        return run.info.run_id

    def _log_run_data(self, run_id: str, metrics: dict[str, float], lineage: Lineage) -> None:
        params = {
            "config_hash": lineage.config_hash,
            "data_snapshot": lineage.data_snapshot,
            "parent_version": lineage.parent_version or "",
            "task": lineage.task,
            "num_labels": str(len(lineage.labels)),
            "code_version": lineage.code_version,
        }
        stamp = int(time.time() * 1000)
        values = [
            Metric(_metric_key(k), float(v), stamp, 0)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and float(v) == float(v) and abs(float(v)) != float("inf")
        ]
        self.client.log_batch(run_id, metrics=values, params=[Param(k, v) for k, v in params.items()])

    def _create_version(self, run_id: str, lineage: Lineage, tags: dict[str, str]) -> str:
        run = self.client.get_run(run_id)
        version_tags = {
            **{str(k): str(v) for k, v in tags.items()},
            **lineage.to_tags(MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH),
            STATUS: "candidate",
        }
        parent = f"v{lineage.parent_version}" if lineage.parent_version else "the pre-trained model"
        description = (
            f"{lineage.task} model from {parent}; data snapshot {lineage.data_snapshot[:12]}, "
            f"config {lineage.config_hash}, keepfit {lineage.code_version}."
        )
        mv = self.client.create_model_version(
            self.name,
            source=f"{run.info.artifact_uri.rstrip('/')}/{_MODEL_ARTIFACT}",
            run_id=run_id,
            tags=version_tags,
            description=description,
            await_creation_for=0,
        )
        return str(mv.version)

    def _discard(self, run_id: str | None, versions: list[str]) -> None:
        """Remove a half-made registration: its versions, its run (marked FAILED, then deleted), its files."""
        for version in versions:
            with contextlib.suppress(Exception):
                self.client.delete_model_version(self.name, version)
        if run_id is None:
            return
        artifact_uri = None
        with contextlib.suppress(Exception):
            run = self.client.get_run(run_id)
            artifact_uri = run.info.artifact_uri
            if run.info.status == "RUNNING":
                self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            self.client.delete_run(run_id)
        local = _local_path(artifact_uri) if artifact_uri else None
        if local is not None and local.parent.name == run_id:
            shutil.rmtree(local.parent, ignore_errors=True)

    @_translate_errors
    def sweep(self) -> list[str]:
        """Remove registrations that never finished (their process died); returns the run ids removed.

        A RUNNING registration run counts as dead when its process no longer exists on this host, or when
        it started more than a day ago on another host; FAILED or KILLED ones always count.
        """
        runs = _all_pages(
            lambda token: self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{REGISTRATION}` = 'true' and attributes.status != 'FINISHED'",
                run_view_type=ViewType.ACTIVE_ONLY,
                page_token=token,
            )
        )
        dead = [r for r in runs if not _owner_alive(r)]
        if not dead:
            return []
        dead_ids = {r.info.run_id for r in dead}
        by_run: dict[str, list[str]] = {}
        with self._locked("removing half-made registrations"):
            for mv in self._all_versions():
                if mv.run_id in dead_ids:
                    by_run.setdefault(mv.run_id, []).append(str(mv.version))
            for run in dead:
                self._discard(run.info.run_id, by_run.get(run.info.run_id, []))
                log.warning(
                    "Removed a half-made registration left by a killed process: run %s (version(s) %s).",
                    run.info.run_id, ", ".join(by_run.get(run.info.run_id, [])) or "none",
                )
        return sorted(dead_ids)

    # -- reading ---------------------------------------------------------------------------------------------

    @_translate_errors
    def list(self) -> list[ModelVersionInfo]:
        """Every complete version, oldest first (half-made ones from a crash are never listed)."""
        aliases = self._aliases()
        runs = self._runs_by_id()
        infos = []
        for mv in self._all_versions():
            run = runs.get(mv.run_id) if mv.run_id else None
            if mv.run_id and run is None:
                run = self._get_run(mv.run_id)
            if mv.run_id and not _complete(run):
                continue
            infos.append(self._info(mv, run, aliases))
        return sorted(infos, key=lambda i: int(i.version))

    @_translate_errors
    def get(self, ref: str) -> ModelVersionInfo:
        """The version ``ref`` names: "3", "v3", an alias ("champion", "challenger") or "latest"."""
        text = str(ref).strip()
        if text.lower() == "latest":
            versions = self.list()
            if not versions:
                raise self._unknown(text)
            return versions[-1]
        aliases = self._aliases()
        number = _version_number(text)
        if number is None:
            number = aliases.get(text) or aliases.get(text.lower())
            if number is None:
                raise self._unknown(text)
        try:
            mv = self.client.get_model_version(self.name, str(number))
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise self._unknown(text) from None
            raise
        run = self._get_run(mv.run_id) if mv.run_id else None
        if mv.run_id and not _complete(run):
            raise self._unknown(text, half_made=True)
        return self._info(mv, run, aliases)

    @_translate_errors
    def alias_target(self, ref: str) -> str | None:
        """The version number an alias names now (None when it names none), or ``ref``'s own number for
        "3"/"v3"; one cheap query, for callers that poll (the server follows ``champion`` this way)."""
        number = _version_number(str(ref).strip())
        if number is not None:
            return number
        aliases = self._aliases()
        return aliases.get(str(ref).strip()) or aliases.get(str(ref).strip().lower())

    def champion(self) -> ModelVersionInfo | None:
        """The version the ``champion`` alias points to, or None before the first promotion."""
        return self.get(CHAMPION) if CHAMPION in self._aliases() else None

    def challenger(self) -> ModelVersionInfo | None:
        """The version the ``challenger`` alias points to, or None."""
        return self.get(CHALLENGER) if CHALLENGER in self._aliases() else None

    @_translate_errors
    def history(self) -> list[dict[str, Any]]:
        """The alias events (promote, rollback, challenger), newest first; each a dict with ``action``,
        ``version``, ``previous``, ``reason`` or ``reasons``, ``forced``, ``by`` and ``at`` (ISO 8601 UTC)."""
        return list(reversed(self._events()))

    @_translate_errors
    def model_path(self, ref: str) -> Path:
        """A local folder with the version's model files: the artifact folder itself when the store is local,
        else a copy downloaded once into the project store."""
        info = self.get(ref)
        local = _local_path(info.source)
        if local is not None:
            if not (local.is_dir() and any(local.iterdir())):
                raise RegistryError(
                    f"Version {info.version} is registered but its files are missing at {local}. "
                    "Restore the store's registry/artifacts folder, or roll back to another version."
                )
            return local
        target = self.store.registry_db.parent / "downloads" / self.name / f"v{info.version}"
        if not target.is_dir():
            import mlflow.artifacts

            with atomic_dir(target, overwrite=True) as tmp:
                mlflow.artifacts.download_artifacts(
                    artifact_uri=info.source, dst_path=str(tmp), tracking_uri=self.uri, registry_uri=self.uri
                )
        return target / Path(urllib.parse.urlparse(info.source).path).name

    # -- aliases ---------------------------------------------------------------------------------------------

    @_translate_errors
    def promote(
        self, ref: str, *, reason: str, forced: bool = False, expected_champion: str | None | Any = UNSET
    ) -> ModelVersionInfo:
        """Make ``ref`` the champion. Records who, why and when on the version and in the event log;
        the previous champion keeps its files and becomes ``archived``. ``forced``: promoted past the gate.

        Compare-and-swap: with ``expected_champion`` (a version such as "4" or "v4", or None for "no champion
        yet"), the champion is switched only if it is still that version, checked and switched under the
        project lock; otherwise :class:`ChampionMoved` is raised and nothing in the registry changes.
        """
        if not reason or not reason.strip():
            raise RegistryError("promote needs a reason (e.g. --reason 'gate passed'); the history keeps it.")
        with self._locked(f"promoting version {ref}"):
            info = self.get(ref)
            old = self.champion()
            if expected_champion is not UNSET:
                _check_champion(info, old, expected_champion)
            if old is not None and old.version == info.version:
                raise RegistryError(f"Version {info.version} is already the champion; nothing to promote.")
            now = _now_iso()
            self._set_version_tags(info.version, {
                PROMOTED_AT: now, PROMOTE_REASON: reason, PROMOTED_BY: _user(),
                FORCED: str(bool(forced)).lower(), STATUS: CHAMPION,
            })
            if forced:
                earlier = (info.gate or {}).get("reasons", [])
                self._set_gate(info.version, {"decision": "forced", "reasons": list(earlier), "note": reason})
            self.client.set_registered_model_alias(self.name, CHAMPION, info.version)  # the switch itself
            if CHALLENGER in info.aliases:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            self._append_event({
                "action": "promote", "version": info.version, "previous": old.version if old else None,
                "reason": reason, "forced": bool(forced), "by": _user(), "at": now,
            })
            if old is not None:
                self._set_version_tags(old.version, {STATUS: "archived", "keepfit.archived_at": now})
            return self.get(info.version)

    @_translate_errors
    def set_challenger(self, ref: str, *, reasons: list[str]) -> ModelVersionInfo:
        """Point ``challenger`` at ``ref`` and store the gate's reasons (decision "rejected" when there are
        reasons, "pending" when none). The former challenger becomes ``rejected``/``candidate``."""
        with self._locked(f"setting the challenger to version {ref}"):
            info = self.get(ref)
            if CHAMPION in info.aliases:
                raise RegistryError(
                    f"Version {info.version} is the champion and cannot also be the challenger. "
                    "Roll back or promote another version first."
                )
            old = self.challenger()
            now = _now_iso()
            decision = "rejected" if reasons else "pending"
            self._set_gate(info.version, {"decision": decision, "reasons": [str(r) for r in reasons], "at": now})
            self._set_version_tags(info.version, {STATUS: CHALLENGER})
            self.client.set_registered_model_alias(self.name, CHALLENGER, info.version)
            self._append_event({
                "action": "challenger", "version": info.version, "previous": old.version if old else None,
                "reasons": [str(r) for r in reasons], "by": _user(), "at": now,
            })
            if old is not None and old.version != info.version:
                was_rejected = (old.gate or {}).get("decision") == "rejected"
                self._set_version_tags(old.version, {STATUS: "rejected" if was_rejected else "candidate"})
            return self.get(info.version)

    @_translate_errors
    def rollback(self, *, reason: str, to: str | None = None) -> ModelVersionInfo:
        """Move ``champion`` back to the previous champion (or to ``to``), record why, delete nothing.

        The previous champion comes from the event log: rolling back twice undoes two promotions.
        """
        if not reason or not reason.strip():
            raise RegistryError("rollback needs a reason (e.g. --reason 'accuracy dropped in production').")
        with self._locked("rolling back the champion"):
            current = self.champion()
            if current is None:
                raise RegistryError("Cannot roll back: no version is champion yet. Run `keepfit fit` first.")
            if to is not None:
                target = self.get(to)
            else:
                previous = previous_champion(self._events(), current.version)
                if previous is None:
                    raise RegistryError(
                        f"Cannot roll back: version {current.version} is the champion and there is no previous "
                        "champion to go back to. Promote a version instead: "
                        "`keepfit models promote REF --reason ...`."
                    )
                try:
                    target = self.get(previous)
                except RegistryError:
                    raise RegistryError(
                        f"Cannot roll back: the previous champion, version {previous}, no longer exists in the "
                        f"registry. Name a version: `keepfit models rollback --to REF --reason ...` "
                        f"(versions: {', '.join(i.version for i in self.list())})."
                    ) from None
            if target.version == current.version:
                raise RegistryError(f"Cannot roll back to version {target.version}: it is already the champion.")
            now = _now_iso()
            self._set_version_tags(target.version, {STATUS: CHAMPION})
            self.client.set_registered_model_alias(self.name, CHAMPION, target.version)
            if CHALLENGER in target.aliases:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            self._append_event({
                "action": "rollback", "version": target.version, "previous": current.version,
                "reason": reason, "by": _user(), "at": now,
            })
            self._set_version_tags(
                current.version, {STATUS: "rolled-back", ROLLED_BACK_AT: now, ROLLBACK_REASON: reason}
            )
            return self.get(target.version)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _locked(self, what: str) -> contextlib.AbstractContextManager[None]:
        return project_lock(self.store, what, self.lock_timeout)

    def _aliases(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.client.get_registered_model(self.name).aliases.items()}

    def _events(self) -> list[dict[str, Any]]:
        return events_from_tags(self.client.get_registered_model(self.name).tags)

    def _append_event(self, event: dict[str, Any]) -> None:
        self.client.set_registered_model_tag(self.name, new_event_key(), json.dumps(event, sort_keys=True))

    def _set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def _set_gate(self, version: str, gate: dict[str, Any]) -> None:
        self.client.set_model_version_tag(self.name, version, GATE, json.dumps(gate, ensure_ascii=False))

    def _all_versions(self) -> list[ModelVersion]:
        name = self.name.replace("'", "")
        return _all_pages(
            lambda token: self.client.search_model_versions(f"name = '{name}'", page_token=token)
        )

    def _runs_by_id(self) -> dict[str, Any]:
        runs = _all_pages(
            lambda token: self.client.search_runs(
                [self.experiment_id], run_view_type=ViewType.ALL, page_token=token
            )
        )
        return {r.info.run_id: r for r in runs}

    def _get_run(self, run_id: str) -> Any:
        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def _info(self, mv: ModelVersion, run: Any, aliases: dict[str, str]) -> ModelVersionInfo:
        version = str(mv.version)
        tags = dict(mv.tags or {})
        mine = sorted(a for a, v in aliases.items() if v == version)
        lineage = Lineage.from_tags(tags)
        if tags.get(LINEAGE_TAG_PREFIX + "labels") == LABELS_IN_ARTIFACT and mv.run_id:
            lineage = self._lineage_artifact(mv.run_id) or lineage
        gate = _json_or_none(tags.get(GATE))
        promotion = None
        if PROMOTED_AT in tags:
            promotion = {
                "at": tags[PROMOTED_AT], "reason": tags.get(PROMOTE_REASON, ""),
                "by": tags.get(PROMOTED_BY, ""), "forced": tags.get(FORCED) == "true",
            }
        return ModelVersionInfo(
            version=version,
            aliases=mine,
            lineage=lineage,
            metrics=dict(run.data.metrics) if run is not None else {},
            status=_status(mine, tags.get(STATUS)),
            gate=gate,
            created=_now_iso(mv.creation_timestamp),
            source=mv.source,
            run_id=mv.run_id,
            name=self.name,
            promotion=promotion,
            tags=tags,
        )

    def _lineage_artifact(self, run_id: str) -> Lineage | None:
        import mlflow.artifacts

        with contextlib.suppress(Exception):
            data = mlflow.artifacts.load_dict(f"{self.client.get_run(run_id).info.artifact_uri}/lineage.json")
            return Lineage.from_dict(data)
        return None

    def _unknown(self, ref: str, half_made: bool = False) -> RegistryError:
        versions = [i.version for i in self.list()]
        aliases = self._aliases()
        if half_made:
            head = f"Version {ref!r} of {self.name!r} is half-made (its registration never finished)."
        else:
            head = f"No model version {ref!r} in registered model {self.name!r}."
        if not versions:
            return RegistryError(f"{head} No versions are registered yet: run `keepfit fit` to register one.")
        named = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
        return RegistryError(
            f"{head} Versions that exist: {', '.join(versions)}; aliases: {named}. "
            "Use a number (3 or v3), an alias (champion, challenger) or latest; see `keepfit models list`."
        )


def _replace_prefix(db_file: Path, name: str, experiment_id: str, old: str, new: str) -> int:
    """Rewrite ``old`` to ``new`` at the start of this model's stored paths in MLflow's SQLite tables, in one
    transaction (MLflow has no API to move an experiment's artifact location). Returns the versions moved."""
    import sqlite3

    n = len(old)

    def swap(column: str) -> str:
        return (f"{column} = CASE WHEN substr({column}, 1, {n + 1}) = :old || '/' "
                f"THEN :new || substr({column}, {n + 1}) ELSE {column} END")

    values = {"old": old, "new": new, "experiment": experiment_id, "name": name}
    with contextlib.closing(sqlite3.connect(db_file, timeout=30)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = :new WHERE experiment_id = :experiment "
                   "AND artifact_location = :old", values)
        db.execute(f"UPDATE runs SET {swap('artifact_uri')} WHERE experiment_id = :experiment", values)
        cursor = db.execute(
            f"UPDATE model_versions SET {swap('source')}, {swap('storage_location')} WHERE name = :name "
            f"AND substr(source, 1, {n + 1}) = :old || '/'", values,
        )
        return cursor.rowcount


def _ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)  # created by a process beside us
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
        return
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    with contextlib.suppress(MlflowException):  # created by a process beside us: fine
        client.create_registered_model(
            name, description="Model versions registered by keepfit (aliases: champion, challenger)."
        )
    client.get_registered_model(name)


def _all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        items.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return items


def _owner_alive(run: Any) -> bool:
    """Whether the process that started a RUNNING registration run is still at work."""
    if run.info.status != "RUNNING":
        return False
    try:
        owner = json.loads(run.data.tags.get(OWNER, "{}"))
    except json.JSONDecodeError:
        owner = {}
    if owner.get("host") != socket.gethostname():
        return (time.time() * 1000 - run.info.start_time) < STALE_AFTER_S * 1000
    try:
        process = psutil.Process(int(owner.get("pid", -1)))
        return abs(process.create_time() - float(owner.get("started", 0))) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


def _complete(run: Any) -> bool:
    return run is not None and run.info.status == "FINISHED" and run.info.lifecycle_stage == "active"


def _status(aliases: list[str], tag: str | None) -> str:
    if CHAMPION in aliases:
        return CHAMPION
    if CHALLENGER in aliases:
        return CHALLENGER
    # A status tag of champion/challenger without the alias means the alias was moved outside keepfit.
    return {CHAMPION: "archived", CHALLENGER: "candidate", None: "candidate"}.get(tag, tag or "candidate")


def _version_number(text: str) -> str | None:
    match = re.fullmatch(r"[vV]?(\d+)", text)
    return str(int(match.group(1))) if match else None


def _metric_key(key: str) -> str:
    return _METRIC_OK.sub("_", str(key)).strip("/") or "metric"


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"decision": "unknown", "reasons": [text]}
    return value if isinstance(value, dict) else None


def _check_champion(candidate: ModelVersionInfo, current: ModelVersionInfo | None, expected: str | None) -> None:
    """The compare of compare-and-swap: ChampionMoved unless the champion is still ``expected``."""
    want = None if expected is None else (_version_number(str(expected)) or str(expected))
    have = current.version if current is not None else None
    if want == have:
        return
    c = candidate.version
    stays = f"version {c} was not promoted"
    if want is None:
        message = (
            f"Version {have} became champion while version {c} was waiting to become the first champion; "
            f"{stays}. Compare them with `keepfit compare {have} {c}`, then promote with "
            f"`keepfit models promote {c} --reason ...` if it is better."
        )
    else:
        moved = f"to {have}" if have is not None else "away (no version is champion now)"
        then = f"`keepfit compare {have} {c}`" if have is not None else f"`keepfit models promote {c} --reason ...`"
        message = (
            f"Champion moved from {want} {moved} while version {c} was being judged against {want}; {stays} "
            f"and the registry is unchanged. Run `keepfit update` again, or {then}."
        )
    raise ChampionMoved(message, candidate=c, expected=want, actual=have)
