"""CPU threading that keeps training fast when other programs take cores.

torch runs its CPU kernels on an OpenMP pool of one thread per core. When another busy process holds
one of those cores, every parallel region waits for the thread that shares it, and a step can become
several times slower than the same step on fewer threads. Which thread count is fastest depends on what
else the machine runs *now*, so it is measured, not guessed: :class:`ThreadTuner` times a few training
steps with each candidate count, keeps the fastest, and measures again when the step time drifts or
after a while (the interval doubles while the choice stays the same).
"""

from __future__ import annotations

import logging
import os
import statistics
import time

from transformers import TrainerCallback

__all__ = ["ThreadTuner", "available_cores", "thread_candidates"]

_logger = logging.getLogger(__name__)

# environment variables by which a user fixes the thread count; the tuner then leaves it alone
FIXED_BY = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HFNN_THREADS")


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def thread_candidates(cores: int | None = None) -> list[int]:
    """Thread counts worth timing: all cores, one fewer than that, and one."""
    cores = available_cores() if cores is None else cores
    return sorted({cores, max(1, cores - 1), 1}, reverse=True)


class ThreadTuner(TrainerCallback):
    """Chooses torch's intra-op thread count from measured training step times (CPU training only).

    Every candidate count runs ``probe_steps`` steps (interleaved); the median step time of each decides,
    and a candidate must be ``margin`` faster than the current count to replace it (no flapping). After a
    probe the chosen count runs until the median step time of a window of ``drift_window`` steps is more than
    ``drift`` above that of its first window (another program took a core), or ``recheck_s`` seconds have
    passed (doubling, up to ``max_recheck_s``, while probes keep
    the same choice). A candidate ``clear_loss`` times slower than the fastest after one step each is not timed
    again (its steps are the expensive ones). The first ``skip_steps`` steps (allocation, warm caches) are not
    timed; they run on the fewest threads. Every
    decision is logged and kept in :attr:`history`.
    """

    def __init__(self, candidates: list[int] | None = None, probe_steps: int = 3, skip_steps: int = 2,
                 recheck_s: float = 60.0, max_recheck_s: float = 480.0, drift: float = 0.5, drift_window: int = 20,
                 margin: float = 0.05,
                 clear_loss: float = 1.5, clock=time.perf_counter, get_threads=None, set_threads=None):
        import torch

        self.candidates = list(candidates) if candidates is not None else thread_candidates()
        if not self.candidates or any(not isinstance(n, int) or n < 1 for n in self.candidates):
            raise ValueError(f"ThreadTuner: candidates must be positive integers, got {self.candidates}")
        self.probe_steps, self.skip_steps = probe_steps, skip_steps
        self.base_recheck_s, self.max_recheck_s = recheck_s, max_recheck_s
        self.drift, self.drift_window, self.margin, self.clear_loss = drift, drift_window, margin, clear_loss
        self.clock = clock
        self._get = get_threads or torch.get_num_threads
        self._set = set_threads or torch.set_num_threads
        self.history: list[dict] = []
        self.enabled = len(self.candidates) > 1
        self._reset()

    def _reset(self):
        self.chosen = None
        self.recheck_s = self.base_recheck_s
        self._skipped = 0
        self._queue: list[int] = []  # counts still to time in the current probe, one entry per step
        self._times: dict[int, list[float]] = {}
        self._recent: list[float] = []
        self._expected = None
        self._probe_end = None
        self._step_start = None
        self._running = None

    # ---- Trainer hooks

    def on_train_begin(self, args, state, control, **kwargs):
        device = getattr(args, "device", None)
        fixed = [f"{name} is set" for name in FIXED_BY if os.environ.get(name)]
        if self._get() != max(self.candidates):  # torch.set_num_threads was called: a choice already made
            fixed.append(f"torch uses {self._get()} threads, set before training")
        if getattr(device, "type", "cpu") != "cpu":
            fixed.append(f"training on {device}")
        if fixed:
            if self.enabled:
                _logger.info("cpu threads: not tuned (%s)", fixed[0])
            self.enabled = False
        self._reset()
        if self.enabled:
            self._start_probe("start")

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.enabled:
            return
        if self._queue:
            # the untimed first steps run on the fewest threads: cheap on a quiet machine, and no spin-waiting
            # on a busy one
            self._use(self._queue[0] if self._skipped >= self.skip_steps else min(self.candidates))
        self._step_start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.enabled or self._step_start is None:
            return
        elapsed = self.clock() - self._step_start
        self._step_start = None
        if self._skipped < self.skip_steps:
            self._skipped += 1
            return
        if self._queue:
            self._times.setdefault(self._queue.pop(0), []).append(elapsed)
            self._drop_clear_losers()
            if not self._queue:
                self._decide(state)
            return
        self._recent.append(elapsed)
        if len(self._recent) >= self.drift_window:  # medians of whole windows: batches of varied length even out
            recent = statistics.median(self._recent)
            self._recent = []
            if self._expected is None:
                self._expected = recent  # the chosen count's steady step time
            elif recent > (1 + self.drift) * self._expected:
                self._start_probe(f"step time {recent:.3g} s against {self._expected:.3g} s")
                return
        if self.clock() - self._probe_end >= self.recheck_s:
            self._start_probe(f"{self.recheck_s:.0f} s since the last measurement")

    # ---- probing

    def _use(self, n: int):
        if self._running != n:
            self._set(n)
            self._running = n

    def _start_probe(self, reason: str):
        self._reason = reason
        self._times = {}
        self._recent = []
        # interleave the candidates (a b c a b c ...) so that a change of load during the probe hits all alike
        self._queue = [n for _ in range(self.probe_steps) for n in self.candidates]

    def _drop_clear_losers(self):
        """Once every candidate has a step, one far slower than the fastest (``clear_loss`` times) is not timed
        again: a count whose threads spin-wait for a taken core costs several normal steps per step."""
        if len(self._times) < len(self.candidates):
            return
        best = min(min(ts) for ts in self._times.values())
        losers = {n for n, ts in self._times.items() if min(ts) > self.clear_loss * best}
        self._queue = [n for n in self._queue if n not in losers]

    def _decide(self, state=None):
        medians = {n: statistics.median(ts) for n, ts in self._times.items()}
        best = min(medians, key=medians.get)
        previous = self.chosen
        if previous is not None and previous in medians and medians[best] > (1 - self.margin) * medians[previous]:
            best = previous  # not clearly faster: keep the current count
        if previous is not None:
            self.recheck_s = min(2 * self.recheck_s, self.max_recheck_s) if best == previous else self.base_recheck_s
        self.chosen = best
        self._expected = None
        self._use(best)
        self._probe_end = self.clock()
        entry = {"step": getattr(state, "global_step", None), "reason": self._reason, "threads": best,
                 "seconds_per_step": {str(n): round(t, 5) for n, t in sorted(medians.items())}}
        self.history.append(entry)
        _logger.info(
            "cpu threads: %d (%s; median s/step %s)", best, self._reason,
            ", ".join(f"{n} thread{'s' if n > 1 else ''} {t:.3g}" for n, t in sorted(medians.items())),
        )
