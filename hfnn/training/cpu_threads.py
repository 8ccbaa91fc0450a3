"""CPU threading that keeps training fast when other programs take cores.

torch runs its CPU kernels on an OpenMP pool of one thread per core. When another busy process holds
one of those cores, every parallel region waits for the thread that shares it, and a step can become
several times slower than the same step on fewer threads. Which thread count is fastest depends on what
else the machine runs *now*. Two signals decide it:

- the CPU time other programs use (:class:`CpuLoad`: the busy time of the cores this process may run on,
  from ``/proc/stat``, less this process' own time from ``/proc/self/stat``; within a cgroup CPU quota,
  the group's usage too). It is free to read, so it is read at the start and every few seconds, and a
  thread count that would need a core another program keeps busy is never tried;
- the measured step time (:class:`ThreadTuner`), the judge among the counts that may fit: a few training
  steps with each, interleaved, and the fastest kept.

A change of the other programs' load (one starts or ends) or a drift of the step time makes the tuner
decide again. Without ``/proc`` (not Linux) only the step times decide, measured again after a while.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import statistics
import time

from transformers import TrainerCallback

from hfnn.models.errors import OptionError

__all__ = ["CpuLoad", "CpuSample", "ThreadTuner", "available_cores", "env_threads", "room_for", "thread_candidates"]

_logger = logging.getLogger(__name__)

# environment variables by which a user fixes the thread count; the tuner then leaves it alone
FIXED_BY = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HFNN_THREADS")
CPU_MAX = "/sys/fs/cgroup/cpu.max"
CPU_STAT = "/sys/fs/cgroup/cpu.stat"


def env_threads() -> int | None:
    """The thread count ``HFNN_THREADS`` asks for, or None when it is unset. torch reads ``OMP_NUM_THREADS``
    and ``MKL_NUM_THREADS`` itself; ``HFNN_THREADS`` is hfnn's own, so the trainer applies it."""
    value = os.environ.get("HFNN_THREADS", "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise OptionError(f"HFNN_THREADS={value!r}: expected a positive whole number of CPU threads")
    return count


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def cgroup_quota(read_text=_read_text) -> float | None:
    """Cores' worth of CPU time the cgroup v2 quota (``cpu.max``) allows, or None without a quota."""
    try:
        quota, period = read_text(CPU_MAX).split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota when there is one."""
    cpus = _affinity()
    cores = len(cpus) if cpus else os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)


def thread_candidates(cores: int | None = None) -> list[int]:
    """Thread counts worth timing: all cores, one fewer than that, and one."""
    cores = available_cores() if cores is None else cores
    return sorted({cores, max(1, cores - 1), 1}, reverse=True)


# --------------------------------------------------------------------------------------------- load


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU counters at one moment (clock ticks unless said)."""

    busy: int  # busy time of the CPUs this process may run on, all programs together
    total: int  # busy + idle time of those CPUs
    cpus: int  # how many CPUs ``busy`` and ``total`` cover
    own: int  # this process' user + system time, all its threads
    group_us: int | None = None  # the cgroup's usage (microseconds), read only under a quota


class CpuLoad:
    """How many cores other programs keep busy, from Linux's cumulative CPU counters.

    ``sample()`` reads the counters (None where they cannot be read: not Linux); :meth:`measure` turns two
    samples into ``(free, other)``: the cores left to this process and those other programs used between
    them. The busy time of the CPUs in this process' affinity set (``/proc/stat``, per CPU: user, nice,
    system, irq, softirq, steal) less this process' own time (``/proc/self/stat`` utime + stime, spin-waiting
    threads included) is the others' time. Under a cgroup quota (``cpu.max``) the free cores are also at most
    the quota less what the rest of the group used (``cpu.stat`` usage_usec). ``read_text``, ``cpus`` and
    ``ticks_per_s`` are there for tests.
    """

    saturated = 0.1  # idle cores below which the CPUs count as fully used

    def __init__(self, read_text=_read_text, cpus=None, ticks_per_s: int | None = None):
        self._read = read_text
        self.cpus = set(cpus) if cpus is not None else _affinity()
        if ticks_per_s is None:
            try:
                ticks_per_s = os.sysconf("SC_CLK_TCK")
            except (AttributeError, ValueError, OSError):
                ticks_per_s = 100
        self.ticks_per_s = ticks_per_s
        self.quota = cgroup_quota(read_text)

    def sample(self) -> CpuSample | None:
        try:
            lines = [line.split() for line in self._read("/proc/stat").splitlines() if line.startswith("cpu")]
            own_fields = self._read("/proc/self/stat").rsplit(")", 1)[1].split()
            own = int(own_fields[11]) + int(own_fields[12])  # utime, stime (fields 14, 15)
            per_cpu = {int(f[0][3:]): f for f in lines if f[0] != "cpu"}
            mine = [per_cpu[c] for c in sorted(self.cpus or ()) if c in per_cpu]
            if not mine:  # no per-CPU lines for the affinity set: the whole machine
                mine = [f for f in lines if f[0] == "cpu"]
                count = max(1, len(per_cpu))
            else:
                count = len(mine)
            busy = total = 0
            for f in mine:
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in (f[1:9] + ["0"] * 8)[:8])
                busy += user + nice + system + irq + softirq + steal
                total += user + nice + system + idle + iowait + irq + softirq + steal
        except (OSError, ValueError, IndexError):
            return None
        group_us = None
        if self.quota is not None:
            try:
                stat = dict(line.split()[:2] for line in self._read(CPU_STAT).splitlines() if line.strip())
                group_us = int(stat["usage_usec"])
            except (OSError, ValueError, KeyError):
                group_us = None
        return CpuSample(busy=busy, total=total, cpus=count, own=own, group_us=group_us)

    def measure(self, before: CpuSample, after: CpuSample, threads: int | None = None) -> tuple[float, float] | None:
        """(free cores, cores other programs want) between two samples; None when no time passed.

        When the CPUs had no idle time left (less than ``saturated`` of a core), the others got only a share:
        with ``threads`` runnable threads of this process beside them, a fair scheduler gives each side CPU
        time in proportion to its threads, so the others want ``threads * their cores / our cores``."""
        span = (after.total - before.total) / after.cpus  # ticks that passed on each CPU
        if span <= 0 or after.cpus != before.cpus:
            return None
        own_ticks = after.own - before.own
        own = max(0.0, own_ticks / span)
        got = min(float(after.cpus), max(0.0, (after.busy - before.busy) / span - own))
        other = got
        if threads and own > 0 and after.cpus - own - got < self.saturated:
            other = min(float(after.cpus), max(got, threads * got / own))
        free = after.cpus - other
        if self.quota is not None:
            free = min(free, self.quota)
            if before.group_us is not None and after.group_us is not None:
                seconds = span / self.ticks_per_s
                group_other = max(0.0, (after.group_us - before.group_us) / 1e6
                                       - own_ticks / self.ticks_per_s) / seconds
                free = min(free, self.quota - group_other)
                other = max(other, group_other)
        return max(0.0, free), other


def room_for(candidates, free: float, fits: float = 0.25, no_room: float = 0.75) -> dict[int, str]:
    """For each thread count: ``"fits"`` (it is short of at most ``fits`` of a core), ``"no room"`` (short of
    more than ``no_room`` cores: a thread would wait for a core another program keeps busy; never said of the
    fewest threads) or ``"unclear"`` (between: only measuring tells)."""
    fewest = min(candidates)
    room = {}
    for n in candidates:
        short = n - free
        room[n] = "fits" if short <= fits else "no room" if short > no_room and n != fewest else "unclear"
    return room


# --------------------------------------------------------------------------------------------- tuner


class ThreadTuner(TrainerCallback):
    """Chooses torch's intra-op thread count for CPU training from the load of other programs and measured
    step times.

    At the start the first ``skip_steps`` steps (allocation, warm caches) run untimed on the fewest threads
    while :class:`CpuLoad` (``load``; None: no load signal) measures the cores other programs want. The counts
    tried are the ``candidates`` and the number of free cores; one with no room (:func:`room_for`) is not
    tried, and when one count is left it is taken without timing anything. Otherwise the counts left run
    ``probe_steps`` steps each (interleaved); the median step time of each decides, and a count must be
    ``margin`` faster than the current one to replace it (no flapping). A count ``clear_loss`` times slower
    than the fastest after one step each is not timed again (its steps are the expensive ones). When the
    untimed steps took less than ``load_window_s`` the load is not known yet and every candidate is timed
    (such steps are cheap).

    After a decision the chosen count runs. Every ``load_every_s`` seconds the load is read again; when it
    changes which counts have room (a program started or ended), the tuner decides again. It also decides
    again when the median step time of a window of ``drift_window`` steps is more than ``drift`` above that of
    its first window. Without a load signal (not Linux) it times the candidates again every ``recheck_s``
    seconds instead (doubling, up to ``max_recheck_s``, while the choice stays the same). Every decision is
    logged with its reason and kept in :attr:`history` (the threads, the median step times, the other
    programs' and the free cores).
    """

    def __init__(self, candidates: list[int] | None = None, probe_steps: int = 3, skip_steps: int = 2,
                 recheck_s: float = 60.0, max_recheck_s: float = 480.0, drift: float = 0.5, drift_window: int = 20,
                 margin: float = 0.05, clear_loss: float = 1.5, load="auto", load_window_s: float = 0.5,
                 load_every_s: float = 5.0, fits: float = 0.25, no_room: float = 0.75,
                 clock=time.perf_counter, get_threads=None, set_threads=None):
        import torch

        self.candidates = list(candidates) if candidates is not None else thread_candidates()
        if not self.candidates or any(not isinstance(n, int) or n < 1 for n in self.candidates):
            raise ValueError(f"ThreadTuner: candidates must be positive integers, got {self.candidates}")
        self.probe_steps, self.skip_steps = probe_steps, skip_steps
        self.base_recheck_s, self.max_recheck_s = recheck_s, max_recheck_s
        self.drift, self.drift_window, self.margin, self.clear_loss = drift, drift_window, margin, clear_loss
        self.load = CpuLoad() if load == "auto" else load
        self.load_window_s, self.load_every_s, self.fits, self.no_room = load_window_s, load_every_s, fits, no_room
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
        self._probing: list[int] = []
        self._times: dict[int, list[float]] = {}
        self._recent: list[float] = []
        self._expected = None
        self._probe_end = None
        self._step_start = None
        self._running = None
        self._reason = None
        self._sample = self._sample_at = None  # start of the current load window
        self._reading = None  # (free, other) of the last load window
        self._room = None  # room_for() behind the current choice; None: chosen without a load reading

    def resume(self):
        """Continues after a pause in which something else ran: sets the thread count again at the next step,
        and the next load reading covers only the time from now."""
        self._running = None
        if self._sample is not None:
            self._start_load_window()

    # ---- Trainer hooks

    def on_train_begin(self, args, state, control, **kwargs):
        device = getattr(args, "device", None)
        fixed = [f"{name} is set" for name in FIXED_BY if os.environ.get(name)]
        wanted = env_threads()
        if wanted is not None and getattr(device, "type", "cpu") == "cpu" and self._get() != wanted:
            self._set(wanted)
            _logger.info("cpu threads: %d, from HFNN_THREADS", wanted)
        elif self._get() != max(self.candidates):  # torch.set_num_threads was called: a choice already made
            fixed.append(f"torch uses {self._get()} threads, set before training")
        if getattr(device, "type", "cpu") != "cpu":
            fixed.append(f"training on {device}")
        if fixed:
            if self.enabled:
                _logger.info("cpu threads: not tuned (%s)", fixed[0])
            self.enabled = False
        self._reset()
        if self.enabled:
            self._reason = "start"
            self._start_load_window()
            if self.skip_steps <= 0:
                self._plan()

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.enabled:
            return
        if self._skipped < self.skip_steps:
            # the untimed first steps run on the fewest threads: cheap on a quiet machine, and no spin-waiting
            # on a busy one
            self._use(min(self.candidates))
        elif self._queue:
            self._use(self._queue[0])
        elif self.chosen is not None:
            self._use(self.chosen)
        self._step_start = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if not self.enabled or self._step_start is None:
            return
        elapsed = self.clock() - self._step_start
        self._step_start = None
        if self._skipped < self.skip_steps:
            self._skipped += 1
            if self._skipped == self.skip_steps:
                self._plan(state)
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
                self._reason = f"step time {recent:.3g} s against {self._expected:.3g} s"
                self._plan(state)
                return
        if self._sample is not None:
            if self.clock() - self._sample_at >= self.load_every_s:
                self._check_load(state)
        elif self.clock() - self._probe_end >= self.recheck_s:
            self._reason = f"{self.recheck_s:.0f} s since the last measurement"
            self._plan(state)

    # ---- load

    def _start_load_window(self):
        sample = self.load.sample() if self.load is not None else None
        self._sample, self._sample_at = sample, self.clock()

    def _read_load(self):
        """(free, other) since the start of the load window, which starts again; None when the window was
        shorter than ``load_window_s`` (the previous reading is kept) or the counters cannot be read."""
        if self._sample is None or self.clock() - self._sample_at < self.load_window_s:
            return None
        before = self._sample
        self._start_load_window()
        reading = self.load.measure(before, self._sample, self._running) if self._sample is not None else None
        if reading is not None:
            self._reading = reading
        return reading

    def _check_load(self, state):
        reading = self._read_load()
        if reading is None:
            return
        room = self._room_for(reading[0])
        if self._room is None and room.get(self.chosen) not in (None, "no room"):
            self._room = room  # chosen by timing alone, and the first reading agrees
        elif room != self._room:
            self._reason = f"load changed: other programs use {reading[1]:.2f} cores"
            self._plan(state, reading)

    # ---- deciding

    def _use(self, n: int):
        if self._running != n:
            self._set(n)
            self._running = n

    def _plan(self, state=None, reading=None):
        """Decides from the load where it rules counts out, else starts timing the counts left."""
        reading = reading or self._read_load()
        self._times, self._recent = {}, []
        if reading is None:
            self._room, left = None, list(self.candidates)
        else:
            self._room = self._room_for(reading[0])
            left = [n for n in self._room if self._room[n] != "no room"]
        if len(left) == 1:
            self._decide(state, only=left[0])
            return
        self._probing = left
        # interleave the counts (a b c a b c ...) so that a change of load during the probe hits all alike
        self._queue = [n for _ in range(self.probe_steps) for n in left]

    def _room_for(self, free: float) -> dict[int, str]:
        """room_for() of the candidates and of the free cores' count (six threads when two of eight cores are
        taken), largest first."""
        counts = set(self.candidates) | {min(max(self.candidates), max(1, int(free + self.fits)))}
        return room_for(sorted(counts, reverse=True), free, self.fits, self.no_room)

    def _drop_clear_losers(self):
        """Once every count has a step, one far slower than the fastest (``clear_loss`` times) is not timed
        again: a count whose threads spin-wait for a taken core costs several normal steps per step."""
        if len(self._times) < len(self._probing):
            return
        best = min(min(ts) for ts in self._times.values())
        losers = {n for n, ts in self._times.items() if min(ts) > self.clear_loss * best}
        self._queue = [n for n in self._queue if n not in losers]

    def _decide(self, state=None, only: int | None = None):
        medians = {n: statistics.median(ts) for n, ts in self._times.items()}
        previous = self.chosen
        if only is not None:
            best = only
        else:
            best = min(medians, key=medians.get)
            if previous is not None and previous in medians and medians[best] > (1 - self.margin) * medians[previous]:
                best = previous  # not clearly faster: keep the current count
        if previous is not None:
            self.recheck_s = min(2 * self.recheck_s, self.max_recheck_s) if best == previous else self.base_recheck_s
        self.chosen = best
        self._expected = None
        self._use(best)
        self._probe_end = self.clock()
        if self._sample is not None:
            self._start_load_window()  # the next reading sees the chosen count, not the probe
        free, other = self._reading if self._room is not None else (None, None)
        entry = {"step": getattr(state, "global_step", None), "reason": self._reason, "threads": best,
                 "seconds_per_step": {str(n): round(t, 5) for n, t in sorted(medians.items())},
                 "other_cores": None if other is None else round(other, 2),
                 "free_cores": None if free is None else round(free, 2)}
        self.history.append(entry)
        if only is not None:
            how = f"the only count with room: {free:.2f} free cores"
        elif self._room is None:
            how = "load not measured; median s/step " + _times_text(medians)
        else:
            how = f"{free:.2f} free cores; median s/step " + _times_text(medians)
        _logger.info("cpu threads: %d (%s; %s)", best, self._reason, how)


def _times_text(medians: dict[int, float]) -> str:
    return ", ".join(f"{n} thread{'s' if n > 1 else ''} {t:.3g}" for n, t in sorted(medians.items()))
