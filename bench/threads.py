"""Training speed beside a busy core: the README's main-job model (the rnn_shakespeare_char recipe's GRU
2 x 256, batch 32 x 128 characters) trained with a fixed 1 or 2 torch threads and with
:class:`hfnn.training.cpu_threads.ThreadTuner`, on the quiet machine and beside one process that keeps a core
busy. Steps per second over windows, the settings alternated (A B C A B C), medians of the rounds.

The tuned setting is one training run per machine load, cut into windows: its tuner keeps its state
between them, as in a run, and its start (the untimed first steps, the load reading, any timing of thread
counts) falls in its first window and counts against it. Its windows are longer than the fixed settings'
(whose speed does not change over a run) so that the two rounds add up to a run of a few minutes, like
the main job's. Two fixed threads beside a busy core take seconds per step; their window is short.
The whole benchmark takes about 9 minutes; ``HFNN_BENCH_THREADS_WINDOW=5`` makes every window 5 seconds
(a smoke run of the real model, about a minute). The ``*_job`` function runs in a child process (see
:mod:`bench.run_all`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import types

__all__ = ["WINDOWS_S", "bench_threads", "threads_job", "windows"]

SETTINGS = ("1 thread", "2 threads", "tuned")
LOADS = ("quiet", "one busy core")
ROUNDS = 2
# seconds per window: (setting, load) -> seconds, "*" for any load
WINDOWS_S = {("tuned", "*"): 75.0, ("1 thread", "*"): 35.0, ("2 threads", "quiet"): 35.0,
             ("2 threads", "one busy core"): 15.0}
QUICK_WINDOW_S = 2.0
WINDOW_ENV = "HFNN_BENCH_THREADS_WINDOW"


def windows(quick: bool = False) -> dict[tuple[str, str], float]:
    """The window of every (setting, load): the defaults, or one length for all (quick mode, or the
    environment variable ``HFNN_BENCH_THREADS_WINDOW`` in seconds)."""
    value = os.environ.get(WINDOW_ENV)
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise ValueError(f"{WINDOW_ENV} must be a number of seconds > 0, got {value!r}")
    else:
        seconds = QUICK_WINDOW_S if quick else None
    return {(s, load): seconds or WINDOWS_S.get((s, load)) or WINDOWS_S[(s, "*")] for s in SETTINGS for load in LOADS}


def _recipe_model(quick: bool):
    import torch

    from hfnn import RnnConfig, RnnForCausalLM
    from hfnn.training.recipes import load_recipe

    recipe = load_recipe("rnn_shakespeare_char")
    overrides = dict(recipe["config_overrides"])
    if quick:
        overrides.update(hidden_size=32, embedding_size=16)
    config = RnnConfig(vocab_size=96, **overrides)
    model = RnnForCausalLM(config)
    batch = 4 if quick else recipe["per_device_train_batch_size"]
    block = 32 if quick else recipe["block_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"])
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 96, (batch, block), generator=generator)
    return model, optimizer, ids


def threads_job(quick: bool = False) -> dict:
    import torch

    from hfnn.training.cpu_threads import FIXED_BY, ThreadTuner

    for name in FIXED_BY:  # this child sets its own thread counts; the tuned setting must not see a fixed one
        os.environ.pop(name, None)
    model, optimizer, ids = _recipe_model(quick)
    window_of = windows(quick)
    rounds = 1 if quick else ROUNDS
    args = types.SimpleNamespace(device=types.SimpleNamespace(type="cpu"))

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def measure(setting: str, load: str, tuner, state) -> float:
        if tuner is None:
            torch.set_num_threads(int(setting.split()[0]))
        else:
            tuner.resume()  # the fixed settings changed torch's count since its last window
        window = window_of[(setting, load)]
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < window:
            if tuner is not None:
                tuner.on_step_begin(args, state, None)
            step()
            steps += 1
            if tuner is not None:
                state.global_step += 1
                tuner.on_step_end(args, state, None)
        return steps / (time.perf_counter() - start)

    for _ in range(3):  # allocation and first-call costs, outside the windows
        step()
    results = {}
    for load in LOADS:
        busy = None
        if load != "quiet":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)  # the interpreter has started and spins
        try:
            # one tuner per machine load: a training run that starts on that machine
            torch.set_num_threads(2)
            tuner, state = ThreadTuner(candidates=[2, 1]), types.SimpleNamespace(global_step=0)
            tuner.on_train_begin(args, state, None)
            values, chosen = {s: [] for s in SETTINGS}, []
            for _ in range(rounds):
                for setting in SETTINGS:
                    values[setting].append(measure(setting, load, tuner if setting == "tuned" else None, state))
                    if setting == "tuned":
                        chosen.append(tuner.chosen)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        results[load] = {s: {"steps_per_s": statistics.median(v), "rounds": v, "window_s": window_of[(s, load)]}
                         for s, v in values.items()}
        results[load]["tuned"].update(chosen=chosen, history=tuner.history, tuned_steps=state.global_step)
    quiet_best = max(results["quiet"][s]["steps_per_s"] for s in ("1 thread", "2 threads"))
    return {"results": results, "window_s": window_of[("tuned", "quiet")], "rounds": rounds,
            "windows_s": {f"{s} / {load}": w for (s, load), w in window_of.items()},
            "quiet_reference": quiet_best, "batch": list(ids.shape),
            "model": f"{model.config.rnn_type.upper()} {model.config.num_hidden_layers} x {model.config.hidden_size}"}


def bench_threads(runner) -> dict:
    return runner.run("threads", "main-job GRU steps/s, quiet and beside a busy core", threads_job,
                      quick=runner.quick)
