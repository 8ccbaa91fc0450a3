"""Training speed beside a busy core: the README's main-job model (the rnn_shakespeare_char recipe's GRU
2 x 256, batch 32 x 128 characters) trained with a fixed 1 or 2 torch threads and with
:class:`hfnn.cpu_threads.ThreadTuner`, on the quiet machine and beside one process that keeps a core
busy. Steps per second over equal windows, the settings alternated (A B C A B C), medians of the rounds;
the tuner's probing steps count against it. The ``*_job`` function runs in a child process (see
:mod:`bench.run_all`)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import types

__all__ = ["bench_threads", "threads_job"]

SETTINGS = ("1 thread", "2 threads", "tuned")
LOADS = ("quiet", "one busy core")


def _recipe_model(quick: bool):
    import torch

    from hfnn import RnnConfig, RnnForCausalLM
    from hfnn.pipelines.common import load_recipe

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

    from hfnn.cpu_threads import ThreadTuner

    model, optimizer, ids = _recipe_model(quick)
    window = 2.0 if quick else 25.0
    rounds = 1 if quick else 2

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def measure(setting: str) -> float:
        # the tuned setting is one run cut into windows: its tuner (made per machine load) keeps its state
        # across the rounds, as in a training run, and its probing steps fall in the windows
        tuner = tuners.get(setting)
        if tuner is not None and tuner.chosen is not None:
            torch.set_num_threads(tuner.chosen)
        elif tuner is None:
            torch.set_num_threads(int(setting.split()[0]))
        args, state = types.SimpleNamespace(device=types.SimpleNamespace(type="cpu")), types.SimpleNamespace(global_step=0)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < window:
            if tuner:
                tuner.on_step_begin(args, state, None)
            step()
            steps += 1
            state.global_step = steps
            if tuner:
                tuner.on_step_end(args, state, None)
        rate = steps / (time.perf_counter() - start)
        if tuner:
            chosen.append(tuner.chosen)
        return rate

    for _ in range(3):  # allocation and first-call costs, outside the windows
        step()
    results = {}
    for load in LOADS:
        busy = None
        if load != "quiet":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        chosen: list = []
        tuner = ThreadTuner(candidates=[2, 1])
        tuner.enabled = True  # the bench's own thread settings are not a user's fixed choice
        tuner._reset()
        tuner._start_probe("start")
        tuners = {"tuned": tuner}
        try:
            values = {s: [] for s in SETTINGS}
            for _ in range(rounds):
                for setting in SETTINGS:
                    values[setting].append(measure(setting))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
        results[load] = {s: {"steps_per_s": statistics.median(v), "rounds": v} for s, v in values.items()}
        results[load]["tuned"]["chosen"] = chosen
        results[load]["tuned"]["history"] = tuner.history
    quiet_best = max(results["quiet"][s]["steps_per_s"] for s in ("1 thread", "2 threads"))
    return {"results": results, "window_s": window, "rounds": rounds, "quiet_reference": quiet_best,
            "batch": list(ids.shape), "model": f"{model.config.rnn_type.upper()} {model.config.num_hidden_layers} x "
                                               f"{model.config.hidden_size}"}


def bench_threads(runner) -> dict:
    return runner.run("threads", "main-job GRU steps/s, quiet and beside a busy core", threads_job,
                      quick=runner.quick)
