"""Real separate processes over the network, with Flower's deployment runtime: `keepfit federate server` runs a
SuperLink and submits the federation to it (`flwr run`, a Flower App whose components are keepfit's
``keepfit.federated.deployed`` apps); each `keepfit federate client` runs a SuperNode holding its own shard file.
Only weights and counts travel between them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from keepfit._io import atomic_write_text
from keepfit.config import KeepfitConfig, save_config
from keepfit.errors import ConfigError, DataError, KeepfitError, ModelError, TrainingError
from keepfit.store import Store

__all__ = ["launch", "serve", "join", "ClientResult", "parse_address", "free_port"]

APP_TOML = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "keepfit-federation"
version = "1.0.0"
description = "keepfit federated fine-tuning: the apps are in the installed keepfit package"
license = "Apache-2.0"
dependencies = ["flwr>=1.42.0"]

[tool.flwr.app]
publisher = "keepfit"

[tool.flwr.app.components]
serverapp = "keepfit.federated.deployed:server_app"
clientapp = "keepfit.federated.deployed:client_app"

[tool.flwr.app.config]
plan = ""
"""
CONNECTION = "keepfit"
SUBMIT_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
ERRORS = {cls.__name__: cls for cls in (ConfigError, DataError, ModelError, TrainingError)}


@dataclass(frozen=True)
class ClientResult:
    """What a `keepfit federate client` did: its rows, the rounds it trained, its work folder and log."""

    rows: int
    rounds: int
    work_dir: Path
    log: Path


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); a ConfigError saying the expected form otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9092.")
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    """A console script of the Flower install next to this Python (the venv's, not another one on PATH)."""
    return str(Path(sys.executable).with_name(name))


def _env(**extra: str) -> dict[str, str]:
    """This environment with the venv's scripts first on PATH: SuperLink and SuperNode start Flower's own
    helpers (flower-superexec, flwr-serverapp, flwr-clientapp) by name."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **extra}


@contextlib.contextmanager
def _child(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A child process writing to ``log_path``; it and everything it started are stopped on the way out."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupted) if main else None
    try:
        yield proc
    finally:
        _stop_tree(proc)
        if main:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(signum, frame) -> None:
    """SIGTERM ends the command like Ctrl-C, so the processes it started are stopped too."""
    raise KeyboardInterrupt


def _stop_tree(proc: subprocess.Popen) -> None:
    """SIGTERM to the process and all its descendants (Flower starts its helpers detached, and the simulation
    runtime starts Ray: an interrupted run must not leave them behind), SIGKILL to any alive after a grace."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S)
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    proc.wait()


def _flower_env(home: Path, address: str) -> dict[str, str]:
    """FLWR_HOME with one SuperLink connection (this run's), so `flwr run` never touches the user's ~/.flwr."""
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(home / "config.toml", f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                            f'address = "{address}"\ninsecure = true\n')
    return _env(FLWR_HOME=str(home), FLWR_DISABLE_UPDATE_CHECK="1")


def _wait_until_listening(host: str, port: int, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrainingError(f"The Flower SuperLink exited with code {proc.returncode} before it listened on "
                                f"{host}:{port}; see {log_path}. Is the port taken? Pick another with --address.")
        if _listening(f"{host}:{port}"):
            return
        time.sleep(0.3)
    raise TrainingError(f"The Flower SuperLink did not listen on {host}:{port} within {timeout:.0f} s; see {log_path}.")


def _submit(app: Path, plan: Path, env: dict[str, str], log_path: Path, federation: dict[str, object]) -> None:
    """`flwr run` of the keepfit Flower App on this run's SuperLink (``federation``: the simulation's settings)."""
    command = [_tool("flwr"), "run", str(app), CONNECTION, "--run-config", f"plan='{plan}'", "--format", "json"]
    if federation:
        command += ["--federation-config", " ".join(f"{k}={json.dumps(v)}" for k, v in federation.items())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=SUBMIT_TIMEOUT_S)
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise TrainingError(f"Flower refused the federation (flwr run exited {done.returncode}); see {log_path}.")


def _await_outcome(path: Path, link: subprocess.Popen, timeout: float, log_path: Path) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if link.poll() is not None:
            raise TrainingError(f"The Flower SuperLink exited with code {link.returncode} mid-federation; see "
                                f"{log_path}.")
        if time.monotonic() > deadline:
            raise TrainingError(f"No result after {timeout:.0f} s (federate.connect_timeout plus rounds x "
                                f"federate.round_timeout); see {log_path}.")
        time.sleep(0.5)
    outcome = json.loads(path.read_text(encoding="utf-8"))
    if not outcome["ok"]:
        raise ERRORS.get(outcome["error"], KeepfitError)(outcome["message"])
    return outcome


def _listening(address: str) -> bool:
    """Whether something accepts connections at ``address`` (HOST:PORT)."""
    try:
        with socket.create_connection(parse_address(address), timeout=1):
            return True
    except OSError:
        return False


def _await_server_end(server: str, proc: subprocess.Popen, timeout: float) -> None:
    """After its last round a client keeps its SuperNode up until the server closes (so the last reply is
    delivered), or at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and _listening(server):
        time.sleep(1.0)


def launch(config: KeepfitConfig, run_dir: Path, plan: dict[str, object], address: str,
           simulation: dict[str, object] | None = None) -> dict:
    """Run the plan's federation on a SuperLink of this run at ``address`` (``simulation``: Flower's simulation
    runtime with these settings, e.g. num-supernodes; else deployed SuperNodes connect to it) and return the
    ServerApp's outcome; the SuperLink is stopped on the way out."""
    from keepfit.federated.run import OUTCOME_FILE, PLAN_FILE

    host, port = parse_address(address)
    save_config(config, run_dir / "config.yaml")
    plan_path = run_dir / PLAN_FILE
    atomic_write_text(plan_path, json.dumps({**plan, "config": str(run_dir / "config.yaml"), "run_dir": str(run_dir)}))
    app = run_dir / "flower-app"
    app.mkdir(exist_ok=True)
    atomic_write_text(app / "pyproject.toml", APP_TOML)
    env = _flower_env(run_dir / "flwr", f"{host}:{port}")
    log_path = run_dir / "superlink.log"
    command = [_tool("flower-superlink"), "--insecure", "--host", host, "--port", str(port),
               "--disable-runtime-dependency-installation", "--database", ":flwr-in-memory:"]
    with _child(command + (["--simulation"] if simulation else []), log_path, env) as link:
        _wait_until_listening(host, port, link, 60.0, log_path)
        _submit(app, plan_path, env, log_path, simulation or {})
        fc = config.federate
        return _await_outcome(run_dir / OUTCOME_FILE, link,
                              fc.connect_timeout + fc.rounds * fc.round_timeout + 120, log_path)


def serve(
    config: KeepfitConfig, *, clients: int, address: str = "127.0.0.1:9092", snapshot: str | None = None,
    register: bool = True,
):
    """The server of a federation of ``clients`` separate client processes (`keepfit federate client`): it
    listens on ``address``, runs federate.rounds rounds once they have all connected (within
    federate.connect_timeout), then exports, evaluates and registers the average through the gate like
    :func:`keepfit.federate`. Holds the project lock."""
    from keepfit.federated.run import base_model, check_settings, finish, require_flower
    from keepfit.lock import project_lock
    from keepfit.pipeline import _new_run_dir, _require_trainable, resolve_snapshot

    require_flower()
    parse_address(address)
    store = Store.at(config.store)
    config = config.model_copy(update={"store": str(store.root.resolve())})  # the ServerApp runs elsewhere
    with project_lock(store, "keepfit federate server", timeout=config.update.lock_timeout):
        started = time.perf_counter()
        snap = resolve_snapshot(config, snapshot)
        check_settings(config, snap, clients)
        _require_trainable(snap)
        base = base_model(config)
        run_dir = _new_run_dir(store, "federate").resolve()
        plan = {"snapshot": snap.id, "base": str(base), "clients": clients}
        outcome = launch(config, run_dir, plan, address)
        return finish(config, snap, run_dir, outcome, register, started)


def join(
    config: KeepfitConfig, *, data: Path, server: str, model: Path | None = None, work_dir: Path | None = None,
) -> ClientResult:
    """A client of a federation: check its own shard file first (a DataError names what is wrong), then run a
    Flower SuperNode that connects to ``server`` (giving up after federate.connect_timeout), trains on the
    shard in each round it is sampled for, and ends after the federation's last round. ``model``: its copy of
    the start model when the server's path is not readable here."""
    from keepfit.federated.run import CLIENT_ERROR_FILE, read_shard, require_flower

    require_flower()
    parse_address(server)
    rows = read_shard(config, Path(data), config.labels)
    work = Path(work_dir or Path(config.store) / "federate-client" / Path(data).stem).resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "done").unlink(missing_ok=True)
    saved = work / "config.yaml"
    save_config(config, saved)
    node = f"keepfit-config='{saved}' data-path='{Path(data).resolve()}' work-dir='{work}'"
    if model is not None:
        node += f" model='{Path(model).resolve()}'"
    log_path = work / "supernode.log"
    fc = config.federate
    command = [_tool("flower-supernode"), "--insecure", "--superlink", server, "--node-config", node,
               "--max-wait-time", str(fc.connect_timeout), "--port", str(free_port())]
    error = work / CLIENT_ERROR_FILE
    error.unlink(missing_ok=True)
    unreachable = (
        f"Could not take part in the federation at {server}: it was not reachable for federate.connect_timeout = "
        f"{fc.connect_timeout:.0f} s. Expected `keepfit federate server` listening there: start it first, or check "
        f"--server. Log: {log_path}"
    )
    with _child(command, log_path, _env(FLWR_DISABLE_UPDATE_CHECK="1")) as proc:
        deadline = time.monotonic() + fc.connect_timeout + fc.rounds * fc.round_timeout + 120
        seen, last_seen = False, time.monotonic()
        while not (work / "done").exists():
            if error.exists():  # its ClientApp refused its rows once the server's labels came
                found = json.loads(error.read_text(encoding="utf-8"))
                raise ERRORS.get(found["error"], KeepfitError)(found["message"])
            if _listening(server):
                seen, last_seen = True, time.monotonic()
            elif time.monotonic() - last_seen > fc.connect_timeout or proc.poll() is not None:
                # the SuperNode gives up on a server never reached; one that went away it would wait for forever
                raise TrainingError(unreachable if not seen else (
                    f"The federation at {server} went away before its last round (unreachable for "
                    f"{fc.connect_timeout:.0f} s); see the server's output. Log: {log_path}"))
            if time.monotonic() > deadline:
                raise TrainingError(f"The federation at {server} did not finish in time; see {log_path}.")
            time.sleep(0.5)
        _await_server_end(server, proc, fc.round_timeout)
    rounds = int((work / "done").read_text(encoding="utf-8").strip())
    return ClientResult(rows=len(rows), rounds=rounds, work_dir=work, log=log_path)
