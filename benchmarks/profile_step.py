"""Where a keepfit training step's time and memory go: all-MiniLM-L6-v2 on banking77, on this CPU.

    python benchmarks/profile_step.py [DATA_DIR] [--steps 30] [--warmup 5] [--batch-size 32]
        [--precision auto|fp32|bf16] [--threads N] [--freeze-embeddings] [--compile] [--no-profiler]
        [--subset N] [--set train.lr=2e-4 ...] [--out benchmarks/results/profile_step.json]

The job is keepfit's own (``keepfit.train.loop.build_job`` on the 90% fit rows bench_train gives keepfit): the
same model, tokenised rows, precision choice, length-bucketed batches (``epoch_batches``), bf16 autocast, loss,
gradient clipping, fused AdamW and schedule as the loop. After ``--warmup`` steps, ``--steps`` steps are timed
phase by phase (time.perf_counter around collate, forward, loss, backward, grad clip, optimizer step,
zero_grad) under torch.profiler (CPU, no shapes or stacks; ``--no-profiler`` to time them without it), whose
self CPU time is grouped into categories (matmul, attention, layer norm, GELU, dropout, embedding, autocast
casts, optimizer, clip, keepfit's collate and loss, other). Also reported: useful model FLOP/s (6 x
non-embedding params x real tokens / step time) against a measured square-matmul peak; RSS along the way; the
bytes of parameters, gradients and AdamW states for the word-embedding matrix and for the rest, and what the
word embeddings cost in the optimizer step and in clipping (timed on copies). Timings only mean something on
an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

PHASES = ("collate", "forward", "loss", "backward", "clip", "optimizer", "zero_grad")

# profiler categories. A scope claims all self time under its record_function (or op); otherwise the first
# category whose names match the event itself or, nearest first, one of its parents takes its self time, so the
# index_add_ inside embedding_dense_backward counts as embedding and the casts autocast makes inside aten::linear
# as casts. collate and loss are keepfit's phases (input tensors; cross-entropy), kept apart from the model's ops.
_SCOPES = {
    "clip": ("phase::clip",),
    "optimizer": ("phase::optimizer", "Optimizer.step"),
    "collate": ("phase::collate",),
    "loss": ("phase::loss",),
}
_CATEGORIES = {
    "autocast casts": ("aten::to", "aten::_to_copy", "aten::copy_", "aten::_autocast_to_reduced_precision"),
    "loss": ("log_softmax", "nll_loss", "cross_entropy"),
    "attention": ("scaled_dot_product", "aten::_softmax", "aten::softmax", "aten::_softmax_backward_data"),
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul"),
    "layer norm": ("layer_norm",),
    "gelu": ("gelu",),
    "dropout": ("dropout", "bernoulli"),
    "embedding": ("aten::embedding", "embedding_dense_backward", "embedding_backward"),
}
_EXACT = {  # names matched whole; the rest match as substrings
    "aten::to", "aten::_to_copy", "aten::copy_", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
    "aten::linear", "aten::matmul", "aten::_softmax", "aten::softmax", "aten::_softmax_backward_data",
    "aten::embedding",
}


def rss_mb() -> float:
    """Resident set size now, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


MEMORY: dict[str, float] = {"python start": rss_mb()}
TRIM_EVERY = 0  # --malloc-trim N: give freed heap memory back to the OS every N steps
_LIBC = None


# ------------------------------------------------------------------------------------------------- the job


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p if p in _EXACT else p in name for p in patterns)


def category(event) -> str:
    """The category of one profiler event's self time (see _SCOPES and _CATEGORIES)."""
    chain = []
    node = event
    while node is not None:
        chain.append(node.name)
        node = node.cpu_parent
    for scope, patterns in _SCOPES.items():
        if any(_matches(name, patterns) for name in chain):
            return scope
    for name in chain:
        for cat, patterns in _CATEGORIES.items():
            if _matches(name, patterns):
                return cat
    return "other"


def profile_table(prof) -> dict:
    """Per category: self CPU ms, share and its five biggest ops; the 25 ops with the most self CPU time; and
    which scaled_dot_product_attention kernels ran."""
    by_op: dict[tuple[str, str], float] = {}
    for event in prof.events():
        if event.self_cpu_time_total:
            key = (category(event), event.name)
            by_op[key] = by_op.get(key, 0.0) + event.self_cpu_time_total / 1000
    totals: dict[str, float] = {}
    for (cat, _), ms in by_op.items():
        totals[cat] = totals.get(cat, 0.0) + ms
    whole = sum(totals.values()) or 1.0
    table = {}
    for cat, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        ops = sorted(((name, v) for (c, name), v in by_op.items() if c == cat), key=lambda kv: -kv[1])
        table[cat] = {"self_cpu_ms": ms, "share": ms / whole, "top_ops_ms": dict(ops[:5])}
    averages = prof.key_averages()
    ops = sorted(averages, key=lambda e: -e.self_cpu_time_total)[:25]
    top = [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1000} for e in ops]
    # on CPU in training (dropout, padding mask) SDPA may take its math path, whose bmm, softmax and dropout
    # then count as matmul, attention and dropout
    kernels = {e.key: e.count for e in averages if "scaled_dot_product" in e.key}
    return {"categories": table, "top_ops": top, "sdpa_kernels_calls": kernels}


def word_embeddings(model):
    """The word-embedding matrix: the nn.Embedding with one row per vocabulary entry."""
    import torch

    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    found = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    for m in found:
        if vocab is None or m.num_embeddings == vocab:
            return m
    raise SystemExit(f"no word-embedding matrix ({vocab} rows) in {type(model).__name__}: {found}")


def build(args: argparse.Namespace, workdir: Path):
    """keepfit's training job for the fit rows bench_train gives keepfit, on the CPU."""
    import pandas as pd
    import torch
    from bench_train import keepfit_overrides, keepfit_snapshot, load_data

    from keepfit.config import load_config
    from keepfit.train.loop import build_job

    train, _ = load_data(Path(args.data), args.subset)
    snapshot = keepfit_snapshot(train, pd.DataFrame(columns=["text", "label"]), workdir, "banking77-profile")
    overrides = keepfit_overrides(None, None, args.overrides)
    overrides += [f"train.batch_size={args.batch_size}", f"train.precision={args.precision}"]
    config = load_config(None, overrides)
    job = build_job(
        snapshot, config, workdir, init_from=None, teacher=None, replay=None, device=torch.device("cpu")
    )
    return job


def plan(job, n: int) -> list:
    """The first ``n`` batches of row indices the loop would train on (epochs 0, 1, ... as needed)."""
    import numpy as np

    from keepfit.train.batching import epoch_batches, sample_indices

    tc = job.config.train
    out, epoch = [], 0
    while len(out) < n:
        rng = np.random.default_rng([tc.seed, epoch])  # the loop seeds each epoch's order the same way
        rows = sample_indices(len(job.train.ids), job.train.class_ids, tc.imbalance, rng)
        out += epoch_batches(rows, job.train.lengths, tc.batch_size, rng, bucketing=tc.length_bucketing)
        epoch += 1
    return out[:n]


class Stepper:
    """One training step of keepfit's loop, timed phase by phase."""

    def __init__(self, job, model, optimizer, scheduler) -> None:
        self.job, self.model, self.optimizer, self.scheduler = job, model, optimizer, scheduler
        self.params = [p for p in job.model.parameters() if p.requires_grad]
        self.grad_bytes: dict[str, int] | None = None

    def __call__(self, rows, *, measure_grads: bool = False) -> dict[str, float]:
        import torch
        from torch.profiler import record_function

        from keepfit.train.inference import autocast
        from keepfit.train.losses import task_loss

        job, tc = self.job, self.job.config.train
        times: dict[str, float] = {}
        tick = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            times[name] = now - tick
            tick = now

        with record_function("phase::collate"):
            inputs = job.inputs(rows)
        lap("collate")
        with record_function("phase::forward"), autocast(job.precision, "cpu"):
            logits = self.model(**inputs).logits
        lap("forward")
        with record_function("phase::loss"):  # outside autocast, as in the loop
            target = job.train.targets[torch.from_numpy(rows)]
            loss = task_loss(logits, target, job.task, class_weights=job.weights, label_smoothing=tc.label_smoothing)
        lap("loss")
        with record_function("phase::backward"):
            loss.backward()
        lap("backward")
        with record_function("phase::clip"):
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, tc.grad_clip)
        lap("clip")
        if measure_grads:
            self.grad_bytes = split_bytes(self.job.model, lambda p: [p.grad] if p.grad is not None else [])
        with record_function("phase::optimizer"):
            self.optimizer.step()
            self.scheduler.step()
        lap("optimizer")
        with record_function("phase::zero_grad"):
            self.optimizer.zero_grad(set_to_none=True)
        lap("zero_grad")
        times["loss_value"] = float(loss.detach())
        return times


def split_bytes(model, tensors_of) -> dict[str, int]:
    """Bytes of ``tensors_of(param)`` summed for the word-embedding matrix and for every other parameter."""
    word = word_embeddings(model).weight
    out = {"word_embeddings": 0, "rest": 0}
    for p in model.parameters():
        size = sum(t.numel() * t.element_size() for t in tensors_of(p) if t is not None)
        out["word_embeddings" if p is word else "rest"] += size
    return out


def optimizer_state_bytes(model, optimizer) -> dict[str, int]:
    import torch

    def states(p):
        return [v for v in optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor)]

    return split_bytes(model, states)


def embedding_costs(job, tc, frozen: bool) -> dict[str, float]:
    """ms of a fused AdamW step and of grad-norm clipping over copies of the word embeddings, and of the rest."""
    import torch

    from keepfit.train.optim import build_optimizer

    word = word_embeddings(job.model).weight
    parts = {
        "word_embeddings": [word],
        "rest": [p for p in job.model.parameters() if p is not word and p.requires_grad],
    }
    out: dict[str, float] = {}
    for name, params in parts.items():
        if name == "word_embeddings" and frozen:
            continue
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for c in copies:
            c.grad = torch.randn_like(c) * 1e-3
        holder = torch.nn.Module()
        for i, c in enumerate(copies):
            holder.register_parameter(f"p{i}", c)
        optimizer = build_optimizer(holder, tc)
        optimizer.step()  # states allocated, kernels warm
        out[f"{name}_optimizer_step_ms"] = 1000 * min(_timed(optimizer.step) for _ in range(5))
        clip = lambda copies=copies: torch.nn.utils.clip_grad_norm_(copies, 1.0)  # noqa: E731
        clip()
        out[f"{name}_clip_ms"] = 1000 * min(_timed(clip) for _ in range(5))
        out[f"{name}_params"] = sum(c.numel() for c in copies)
        del optimizer, copies, holder
    return out


def compile_seconds() -> float:
    """Seconds torch.compile has spent so far in this process (forward and backward graphs)."""
    try:
        from torch._dynamo.utils import calculate_time_spent
    except ImportError:
        return 0.0
    return float(calculate_time_spent().get("total_wall_time", 0.0))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _error_text(err: BaseException) -> str:
    lines = traceback.format_exception_only(type(err), err)
    return "".join(lines).strip()[-2000:]


# ------------------------------------------------------------------------------------------------- the run


class Runner:
    """Runs steps and records each: phase times, batch shape, RSS, time spent compiling.

    With ``--compile``, a step whose compiled model raises keeps the error and runs eagerly from then on.
    """

    def __init__(self, job, optimizer, scheduler, compiled: bool) -> None:
        import torch

        self.job, self.optimizer = job, optimizer
        self.compile: dict | None = None
        model = job.model
        if compiled:
            started = time.perf_counter()
            try:
                # dynamic shapes from the start, as keepfit's loop compiles (train.compile): batches differ in length
                model = torch.compile(job.model, dynamic=True)
                self.compile = {"ok": True, "wrap_seconds": time.perf_counter() - started}
            except Exception as err:  # noqa: BLE001 - a compile failure is a result to report, not a crash
                self.compile = {"ok": False, "error": _error_text(err)}
        self.stepper = Stepper(job, model, optimizer, scheduler)
        self.records: list[dict[str, float]] = []
        self.optimizer_states: dict[str, int] = {}

    def step(self, rows) -> dict[str, float]:
        first = not self.records
        compiling = compile_seconds() if self.compile else 0.0
        times = self._guarded(rows, measure_grads=first)
        if TRIM_EVERY and (len(self.records) + 1) % TRIM_EVERY == 0:
            _LIBC.malloc_trim(0)
        times |= {
            "rows": len(rows),
            "width": int(self.job.train.lengths[rows].max()),
            "real_tokens": int(self.job.train.lengths[rows].sum()),
            "rss_mb": rss_mb(),
            "compile_s": compile_seconds() - compiling if self.compile else 0.0,
        }
        if first:
            MEMORY["after the first step"] = times["rss_mb"]
            self.optimizer_states = optimizer_state_bytes(self.job.model, self.optimizer)
        self.records.append(times)
        return times

    def _guarded(self, rows, **kw) -> dict[str, float]:
        try:
            return self.stepper(rows, **kw)
        except Exception as err:  # noqa: BLE001 - see the class docstring
            if self.stepper.model is self.job.model:
                raise
            self.compile |= {"ok": False, "error": _error_text(err), "failed_at_step": len(self.records)}
            self.stepper.model = self.job.model
            self.optimizer.zero_grad(set_to_none=True)
            return self.stepper(rows, **kw)


def _step_ms(t: dict[str, float]) -> float:
    return 1000 * sum(t[p] for p in PHASES)


def timing_report(warm: list[dict], timed: list[dict], profiled: bool) -> dict:
    wall = sum(_step_ms(t) for t in timed) / 1000
    real = sum(t["real_tokens"] for t in timed)
    computed = sum(t["width"] * t["rows"] for t in timed)
    return {
        "steps": len(timed),
        "under_profiler": profiled,
        "mean_step_ms": 1000 * wall / len(timed),
        "median_step_ms": statistics.median(_step_ms(t) for t in timed),
        "samples_per_second": sum(t["rows"] for t in timed) / wall,
        "phases_ms_total": {p: 1000 * sum(t[p] for t in timed) for p in PHASES},
        "phases_share": {p: sum(t[p] for t in timed) / wall for p in PHASES},
        "warmup_step_ms": [_step_ms(t) for t in warm],
        "real_tokens_per_step": real / len(timed),
        "padding_overhead": computed / max(real, 1),
        "final_loss": timed[-1]["loss_value"],
        "per_step": [
            {"ms": _step_ms(t)} | {k: t[k] for k in ("rows", "width", "real_tokens", "rss_mb", "compile_s")}
            for t in warm + timed
        ],
    }


def compile_report(info: dict, warm: list[dict], timed: list[dict]) -> dict:
    """Compile time, and the steady step time: the profiled steps in which nothing was (re)compiled."""
    steady = [_step_ms(t) for t in timed if t["compile_s"] < 1e-3]
    info |= {
        "compile_seconds": sum(t["compile_s"] for t in warm + timed),
        "steps_that_compiled": [i for i, t in enumerate(warm + timed) if t["compile_s"] >= 1e-3],
        "steady_steps": len(steady),
        "steady_median_step_ms": statistics.median(steady) if steady else float("nan"),
    }
    try:
        from torch._dynamo.utils import counters

        info["unique_graphs"] = int(counters["stats"]["unique_graphs"])
        info["graph_breaks"] = int(sum(counters["graph_break"].values()))
    except (ImportError, KeyError):
        pass
    return info


def flops_report(job, timing: dict) -> dict:
    """Useful model FLOP/s (6 x non-embedding params x real tokens / step time) against the matmul peak."""
    from bench_train import _non_embedding_params, matmul_peak

    non_embedding = _non_embedding_params(job.model)
    useful = 6 * non_embedding * timing["real_tokens_per_step"] / (timing["mean_step_ms"] / 1000) / 1e9
    peak = matmul_peak()
    against = "bf16" if job.precision == "bf16" else "fp32"
    return {
        "non_embedding_params": non_embedding,
        "useful_gflops_per_second": useful,
        "computed_gflops_per_second": useful * timing["padding_overhead"],
        "matmul_peak_gflops": peak,
        "useful_share_of_peak": useful / peak[against],
        "peak_compared": against,
    }


def memory_report(job, runner: Runner) -> dict:
    word = word_embeddings(job.model).weight
    return {
        "rss_mb": dict(MEMORY),
        "peak_rss_mb": peak_rss_mb(),
        "parameters_bytes": split_bytes(job.model, lambda p: [p]),
        "gradients_bytes": runner.stepper.grad_bytes,
        "optimizer_state_bytes": runner.optimizer_states,
        "word_embeddings_shape": list(word.shape),
        "word_embeddings_trainable": bool(word.requires_grad),
        "parameters": sum(p.numel() for p in job.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in job.model.parameters() if p.requires_grad),
    }


def run(args: argparse.Namespace) -> dict:
    import torch
    import transformers  # noqa: F401  (counted in the RSS after imports)
    from torch.profiler import ProfilerActivity, profile

    import keepfit.train.loop  # noqa: F401
    from keepfit.train.optim import build_optimizer, build_scheduler

    MEMORY["after imports (torch, transformers, keepfit)"] = rss_mb()
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads()}

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        job = build(args, Path(tmp))
        report["build_job_seconds"] = time.perf_counter() - started
    MEMORY["after model load (build_job: model + tokenised rows)"] = rss_mb()
    tc = job.config.train
    report |= {
        "precision": job.precision,
        "strategy": tc.strategy,
        "batch_size": tc.batch_size,
        "max_length": job.max_length,
        "train_rows": len(job.train.ids),
        "model_class": type(job.model).__name__,
    }
    if args.freeze_embeddings:
        word_embeddings(job.model).weight.requires_grad_(False)
    optimizer = build_optimizer(job.model, tc)
    scheduler = build_scheduler(optimizer, tc, args.warmup + args.steps)
    MEMORY["after optimizer creation"] = rss_mb()
    report["optimizer"] = {
        "class": type(optimizer).__name__,
        "fused": bool(optimizer.defaults.get("fused")),
        "groups": [
            {"lr": g["lr"], "weight_decay": g["weight_decay"], "params": len(g["params"])}
            for g in optimizer.param_groups
        ],
    }

    job.model.train()
    runner = Runner(job, optimizer, scheduler, args.compile)
    batches = plan(job, args.warmup + args.steps)
    warm = [runner.step(rows) for rows in batches[: args.warmup]]
    profiler = contextlib.nullcontext() if args.no_profiler else profile(activities=[ProfilerActivity.CPU])
    with profiler as prof:
        timed = [runner.step(rows) for rows in batches[args.warmup :]]
    MEMORY["at the end of the steps"] = rss_mb()

    report["timing"] = timing_report(warm, timed, profiled=prof is not None)
    if runner.compile is not None:
        report["compile"] = compile_report(runner.compile, warm, timed)
    report["flops"] = flops_report(job, report["timing"])
    if prof is not None:
        report["profile"] = profile_table(prof)
    report["memory"] = memory_report(job, runner)
    report["embedding_costs"] = embedding_costs(job, tc, args.freeze_embeddings)
    return report


def summary(r: dict) -> str:
    t, f, m = r["timing"], r["flops"], r["memory"]
    mb = 2**20
    lines = [
        f"{r['model_class']} {r['strategy']}, {r['precision']}, batch {r['batch_size']}, {r['threads']} threads, "
        f"{t['steps']} steps{' under the profiler' if t['under_profiler'] else ''}"
        f"{', word embeddings frozen' if not m['word_embeddings_trainable'] else ''}",
        f"step {t['mean_step_ms']:.0f} ms mean ({t['median_step_ms']:.0f} median), {t['samples_per_second']:.1f} "
        f"samples/s, {t['real_tokens_per_step']:.0f} real tokens/step, padding {t['padding_overhead']:.2f}",
        "phases: " + ", ".join(f"{p} {100 * s:.0f}%" for p, s in t["phases_share"].items()),
        f"useful {f['useful_gflops_per_second']:.1f} GFLOP/s = {100 * f['useful_share_of_peak']:.1f}% of the "
        f"{f['peak_compared']} matmul peak ({f['matmul_peak_gflops']['fp32']:.0f} fp32, "
        f"{f['matmul_peak_gflops']['bf16']:.0f} bf16 GFLOP/s)",
    ]
    if "profile" in r:
        lines.append(
            "profiler self CPU: "
            + ", ".join(f"{c} {100 * v['share']:.0f}%" for c, v in r["profile"]["categories"].items())
            + f"; attention kernels {r['profile']['sdpa_kernels_calls']}"
        )
    if "compile" in r:
        c = r["compile"]
        lines.append(
            f"compile: {'ok' if c['ok'] else 'FAILED: ' + c.get('error', '')[:300]}; compiling took "
            f"{c['compile_seconds']:.1f} s in steps {c['steps_that_compiled']}; steady step "
            f"{c['steady_median_step_ms']:.0f} ms (median of {c['steady_steps']} profiled steps without compiling)"
        )
    lines.append("RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in m["rss_mb"].items()))

    def split(d):
        return "n/a" if d is None else f"word emb {d['word_embeddings'] / mb:.1f} MB + rest {d['rest'] / mb:.1f} MB"

    lines += [
        f"parameters: {split(m['parameters_bytes'])}; gradients: {split(m['gradients_bytes'])}; "
        f"AdamW states: {split(m['optimizer_state_bytes'])}",
        "word-embedding costs (on copies): "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["embedding_costs"].items() if k.endswith("_ms")),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default="../shared/data/banking77")
    parser.add_argument("--steps", type=int, default=30, help="Profiled (timed) steps.")
    parser.add_argument("--warmup", type=int, default=5, help="Steps before the profiled ones.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's).")
    parser.add_argument("--freeze-embeddings", action="store_true", help="No gradient for the word embeddings.")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (dynamic shapes).")
    parser.add_argument("--no-profiler", action="store_true", help="Time the steps without torch.profiler.")
    parser.add_argument("--malloc-trim", type=int, default=0, help="glibc malloc_trim(0) every N steps.")
    parser.add_argument("--subset", type=int, default=None, help="Build the job from N random training rows.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="keepfit config override.")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile_step.json"))
    args = parser.parse_args()
    global TRIM_EVERY, _LIBC
    if args.malloc_trim:
        import ctypes

        TRIM_EVERY, _LIBC = args.malloc_trim, ctypes.CDLL("libc.so.6")
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    sys.path.insert(0, str(Path(__file__).parent))
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)
    print(summary(report))
    print(f"written {out}")


if __name__ == "__main__":
    main()
