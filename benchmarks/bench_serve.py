"""Serving under load: keepfit serve (PyTorch, and ONNX Runtime int8) against a plain transformers pipeline behind
FastAPI, the same model and the same load side by side in one run; a hot swap under load; ONNX int8 against the
PyTorch eager predictor (speed and parity on the test split).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_serve.py [--project DIR] [--data ../shared/data/banking77]
        [--seconds 10] [--clients 1,8,32] [--out benchmarks/results/bench_serve.json]

``--project``: a keepfit project whose champion has CLS pooling (a plain Hugging Face folder the pipeline can load
too); it is copied, never changed. Without it one is fitted on banking77 (1 epoch, model.pooling=cls) and cached
under benchmarks/.cache/bench_serve. The load: ``clients`` concurrent closed-loop clients on localhost, each
sending one text per request (texts drawn from the test split), for ``--seconds`` after a 2 s warm-up. The
pipeline runs at its better of two settings (FastAPI's thread pool: concurrent passes; or one pass at a time),
both measured. Run it alone: anything else on the machine distorts the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEEPFIT = [sys.executable, "-c", "from keepfit.cli import main; main()"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
       "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _build_project(folder: Path, data: Path) -> Path:
    if (folder / "keepfit.yaml").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "keepfit.yaml").write_text(
        f"data:\n  train: {data.resolve() / 'train.csv'}\n  test: {data.resolve() / 'test.csv'}\n"
        "model:\n  pooling: cls\ntrain:\n  epochs: 1\nregistry:\n  model_name: bench-serve\n"
    )
    subprocess.run([*KEEPFIT, "fit", "--quiet"], cwd=folder, env=ENV, check=True)
    return folder


def _working_copy(project: Path, into: Path) -> tuple[Path, Path, str]:
    """A copy of ``project`` with its champion registered a second time (same weights), for the hot swap;
    returns the copy, the champion's model folder and the second version."""
    from keepfit import Registry, load_config

    work = into / "project"
    shutil.copytree(project, work, ignore=shutil.ignore_patterns("runs", "downloads", "exports", "serve"))
    cfg = load_config(work / "keepfit.yaml")
    registry = Registry.open(cfg)
    champion = registry.champion()
    model_dir = registry.model_path(champion.version)
    second = registry.register(model_dir, metrics=dict(champion.metrics), lineage=champion.lineage)
    return work, model_dir, second.version


async def _load(url: str, texts: list[str], clients: int, seconds: float, warmup: float = 2.0,
                events: list | None = None) -> dict:
    """Closed-loop clients for ``warmup + seconds``; figures over the last ``seconds``. ``events``: (at s, fn)
    run in a thread during the measured part (the hot swap)."""
    import httpx

    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    latencies: list[float] = []
    failures: list[str] = []
    versions: list[list[str]] = [[] for _ in range(clients)]
    start = time.perf_counter()
    measure_from = start + warmup
    end = measure_from + seconds

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            k = i
            while time.perf_counter() < end:
                text = texts[order[k % len(order)]]
                k += clients
                sent = time.perf_counter()
                try:
                    r = await http.post("/predict", json={"texts": [text]})
                    ok = r.status_code == 200
                    if not ok:
                        failures.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as err:
                    ok = False
                    failures.append(f"{type(err).__name__}: {err}")
                done = time.perf_counter()
                if ok and sent >= measure_from and done <= end:
                    latencies.append(done - sent)
                if ok and "model_version" in (body := r.json()):
                    versions[i].append(body["model_version"])

    async def scheduled() -> None:
        for at, fn in events or []:
            await asyncio.sleep(max(0.0, measure_from + at - time.perf_counter()))
            await asyncio.to_thread(fn)

    await asyncio.gather(*(client(i) for i in range(clients)), scheduled())
    lat = np.array(latencies) * 1000
    changes = [sum(a != b for a, b in zip(v, v[1:], strict=False)) for v in versions]
    return {
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "failed": len(failures),
        "failures": failures[:5],
        "version_changes_per_client": changes,
    }


def _serve_keepfit(project: Path, backend: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [*KEEPFIT, "serve", "--port", str(port), "--backend", backend, "--set", f"serve.threads={threads}",
         "--set", "serve.poll_seconds=0.5"],
        cwd=project, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    return proc, url


def _serve_pipeline(model_dir: Path, mode: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "_pipeline_server.py"), str(model_dir), str(port), "--mode", mode,
         "--threads", str(threads)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    return proc, url


def _system(name: str, start, texts: list[str], clients: list[int], seconds: float) -> list[dict]:
    proc, url = start()
    try:
        rows = []
        for n in clients:
            row = asyncio.run(_load(url, texts, n, seconds))
            rows.append({"system": name, **row})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        _stop(proc)


def _hot_swap(project: Path, second: str, texts: list[str], threads: int, seconds: float) -> dict:
    from keepfit import Registry, load_config

    registry = Registry.open(load_config(project / "keepfit.yaml"))
    first = registry.champion().version
    proc, url = _serve_keepfit(project, "torch", threads)
    try:
        events = [(seconds * 0.25, lambda: registry.promote(second, reason="bench: hot swap", forced=True)),
                  (seconds * 0.6, lambda: registry.rollback(reason="bench: hot swap back", to=first))]
        row = asyncio.run(_load(url, texts, 32, seconds, events=events))
    finally:
        _stop(proc)
    return {"system": "keepfit torch, promote + rollback under load", **row}


def _predictors(project: Path, model_dir: Path, texts: list[str], labels: list[str], threads: int) -> dict:
    """PyTorch eager predictor against ONNX Runtime int8 on the test split: texts/s at batch 32 and 1, parity."""
    from keepfit import load_config
    from keepfit.store import Store
    from keepfit.train.onnx_export import OnnxPredictor, ensure_onnx, measure_speeds, parity
    from keepfit.train.predict import Predictor

    cfg = load_config(project / "keepfit.yaml")
    onnx_path = ensure_onnx(model_dir, Store.at(cfg.store).export("bench") / "onnx", int8=True)
    eager = Predictor(model_dir, precision="fp32", threads=threads)
    auto = Predictor(model_dir, precision="auto", threads=threads)
    onnx = OnnxPredictor(model_dir, onnx_path, threads=threads)
    out: dict = {"onnx_file_mb": round(onnx_path.stat().st_size / 2**20, 1),
                 "torch_file_mb": round((model_dir / "model.safetensors").stat().st_size / 2**20, 1),
                 "auto_precision": auto.precision}
    names = ("torch_eager_fp32", "torch_auto", "onnx_int8")
    # the engines take turns, best of 3 rounds each (onnx_export.measure_speeds), so load hits them alike
    for name, speed in zip(names, measure_speeds([eager, auto, onnx], texts, batch_size=32, max_texts=640,
                                                 single_texts=200), strict=True):
        out[f"{name}_texts_per_s_batch32"] = round(speed.texts_per_second, 1)
        out[f"{name}_ms_per_text_batch1"] = round(speed.ms_per_text_batch1, 2)
    out["speedup_batch32_vs_eager"] = round(out["onnx_int8_texts_per_s_batch32"] /
                                            out["torch_eager_fp32_texts_per_s_batch32"], 2)
    out["speedup_batch32_vs_auto"] = round(out["onnx_int8_texts_per_s_batch32"] /
                                           out["torch_auto_texts_per_s_batch32"], 2)
    out["speedup_batch1_vs_eager"] = round(out["torch_eager_fp32_ms_per_text_batch1"] /
                                           out["onnx_int8_ms_per_text_batch1"], 2)
    report = parity(eager, onnx, texts, labels)
    out["parity"] = report.to_dict() if hasattr(report, "to_dict") else report.__dict__
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip", default="", help="comma list of: pipeline, onnx, swap, predictors")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_serve.json")
    args = parser.parse_args(argv)
    if not (args.data / "test.csv").exists():
        print(f"no test.csv in {args.data}: pass --data FOLDER (banking77)", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    clients = [int(x) for x in args.clients.split(",")]
    test = pd.read_csv(args.data / "test.csv")
    project = args.project or _build_project(ROOT / "benchmarks" / ".cache" / "bench_serve", args.data)
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                     "command": " ".join(["benchmarks/bench_serve.py", *(argv or sys.argv[1:])]),
                     "seconds_per_point": args.seconds, "threads": args.threads, "load": []}
    with tempfile.TemporaryDirectory() as tmp:
        work, model_dir, second = _working_copy(project, Path(tmp))
        from keepfit import load_config

        label_column = load_config(work / "keepfit.yaml").data.label_column
        texts = test["text"].astype(str).tolist()
        labels = test[label_column if label_column in test else test.columns[1]].astype(str).tolist()
        results["load"] += _system("keepfit torch", lambda: _serve_keepfit(work, "torch", args.threads), texts,
                                   clients, args.seconds)
        if "onnx" not in skip:
            results["load"] += _system("keepfit onnx int8", lambda: _serve_keepfit(work, "onnx", args.threads),
                                       texts, clients, args.seconds)
        if "pipeline" not in skip:
            for mode in ("threadpool", "serial"):
                results["load"] += _system(f"pipeline ({mode})", lambda m=mode: _serve_pipeline(model_dir, m,
                                           args.threads), texts, clients, args.seconds)
        if "swap" not in skip:
            results["hot_swap"] = _hot_swap(work, second, texts, args.threads, max(args.seconds, 10))
            print(json.dumps(results["hot_swap"]), flush=True)
        if "predictors" not in skip:
            results["predictors"] = _predictors(work, model_dir, texts, labels, args.threads)
            print(json.dumps(results["predictors"]), flush=True)
    results["ratios"] = _ratios(results["load"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["ratios"], indent=2))
    return 0


def _ratios(rows: list[dict]) -> dict:
    """keepfit's throughput and p99 over the pipeline's better setting, per client count."""
    out = {}
    for n in sorted({r["clients"] for r in rows}):
        at = {r["system"]: r for r in rows if r["clients"] == n}
        peers = [r for s, r in at.items() if s.startswith("pipeline")]
        if not peers:
            continue
        best = max(peers, key=lambda r: r["requests_per_s"])
        for system in ("keepfit torch", "keepfit onnx int8"):
            if system in at and best["requests_per_s"]:
                out[f"{system} / {best['system']} @ {n} clients"] = {
                    "throughput_ratio": round(at[system]["requests_per_s"] / best["requests_per_s"], 2),
                    "p99_ms": at[system]["p99_ms"], "peer_p99_ms": best["p99_ms"],
                }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
