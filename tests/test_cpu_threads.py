"""ThreadTuner and CpuLoad: the tuner skips thread counts that other programs leave no room for, times the
others, follows a change of load, and leaves a fixed choice alone. The steps are simulated: a fake clock
advances by the step time that the current thread count has under the current load, and fake /proc files
count the CPU time this process and the other programs use meanwhile."""

from __future__ import annotations

import collections
import types

import pytest

from hfnn.training.cpu_threads import CpuLoad, ThreadTuner, available_cores, room_for, thread_candidates


class Machine:
    """Step time per thread count, under a load the test switches."""

    QUIET = {2: 0.24, 1: 0.32}  # two threads faster on a quiet machine
    BUSY = {2: 0.90, 1: 0.33}  # one core taken: two threads spin-wait

    def __init__(self):
        self.now = 0.0
        self.threads = 2
        self.table = self.QUIET
        self.steps_at = collections.Counter()

    def clock(self):
        return self.now

    def set_threads(self, n):
        self.threads = n

    def get_threads(self):
        return self.threads

    def advance(self, seconds):
        self.now += seconds


class LoadedMachine(Machine):
    """A machine of ``cores`` CPUs with fake /proc files: other programs want ``other`` cores; when the demand
    exceeds the cores, each side gets its share. ``read_text`` serves /proc/stat, /proc/self/stat and, when
    ``quota`` is set, the cgroup's cpu.max and cpu.stat (the cgroup holds this process and ``group_other``
    cores of other programs)."""

    HZ = 100

    def __init__(self, cores=2, other=0.0, quota=None, group_other=0.0):
        super().__init__()
        self.cores, self.quota, self.group_other = cores, quota, group_other
        self.threads = cores
        self.set_other(other)
        self.busy_s = self.own_s = self.group_s = 0.0

    def set_other(self, other, table=None):
        self.other = other
        self.table = table or (Machine.QUIET if other + 2 <= self.cores + 0.25 else Machine.BUSY)

    def advance(self, seconds):
        demand = self.threads + self.other
        share = min(1.0, self.cores / demand)
        own, other = self.threads * share * seconds, self.other * share * seconds
        self.now += seconds
        self.own_s += own
        self.busy_s += own + other
        self.group_s += own + self.group_other * seconds

    def read_text(self, path):
        ticks = lambda s: int(round(s * self.HZ))  # noqa: E731
        if path == "/proc/stat":
            busy = ticks(self.busy_s / self.cores)
            idle = ticks(self.now) - busy
            rows = [f"cpu  {busy * self.cores} 0 0 {idle * self.cores} 0 0 0 0 0 0"]
            rows += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i in range(self.cores)]
            return "\n".join(rows + ["intr 1 2 3", "ctxt 4"]) + "\n"
        if path == "/proc/self/stat":
            # a command name with spaces and a parenthesis: the fields are counted after the last ')'
            return f"4242 (py (tool) x) R 1 1 1 0 -1 0 0 0 0 0 {ticks(self.own_s)} 0 0 0 20 0 3 0\n"
        if path.endswith("cpu.max") and self.quota is not None:
            return f"{int(self.quota * 100000)} 100000\n"
        if path.endswith("cpu.stat") and self.quota is not None:
            return f"usage_usec {int(self.group_s * 1e6)}\nuser_usec 0\nsystem_usec 0\n"
        raise FileNotFoundError(path)

    def load(self):
        return CpuLoad(read_text=self.read_text, cpus=range(self.cores), ticks_per_s=self.HZ)


def _train(tuner, machine, steps, jitter=None):
    args, state, control = (types.SimpleNamespace(device=types.SimpleNamespace(type="cpu")),
                            types.SimpleNamespace(global_step=0), None)
    for _ in range(steps):
        tuner.on_step_begin(args, state, control)
        machine.advance(machine.table[machine.threads] * (jitter() if jitter else 1.0))
        machine.steps_at[machine.threads] += 1
        state.global_step += 1
        tuner.on_step_end(args, state, control)


def _tuner(machine, candidates=(2, 1), load=None, **kwargs):
    """A tuner on the simulated machine; without ``load`` it has no load signal (as off Linux)."""
    tuner = ThreadTuner(candidates=list(candidates), load=load, clock=machine.clock, get_threads=machine.get_threads,
                        set_threads=machine.set_threads, **kwargs)
    tuner.on_train_begin(types.SimpleNamespace(device=types.SimpleNamespace(type="cpu")), None, None)
    return tuner


@pytest.fixture(autouse=True)
def _no_fixed_threads(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HFNN_THREADS"):
        monkeypatch.delenv(name, raising=False)


def test_quiet_machine_keeps_all_cores():
    machine = Machine()
    tuner = _tuner(machine)
    _train(tuner, machine, 400)
    assert tuner.chosen == 2 and machine.threads == 2
    # the probes' steps on one thread are a small share of the run
    assert machine.steps_at[1] / 400 < 0.05
    assert tuner.history[0]["seconds_per_step"] == {"1": 0.32, "2": 0.24}


def test_busy_core_moves_to_one_thread_and_back():
    machine = Machine()
    tuner = _tuner(machine)
    _train(tuner, machine, 50)
    assert machine.threads == 2
    machine.table = Machine.BUSY  # another program takes a core
    _train(tuner, machine, 30)
    assert machine.threads == 1 and tuner.chosen == 1
    assert "step time" in tuner.history[-1]["reason"]
    busy_start, busy_steps = machine.now, 600
    _train(tuner, machine, busy_steps)
    # throughput while the core is taken stays close to the best fixed choice (one thread)
    assert busy_steps / (machine.now - busy_start) > 0.9 / Machine.BUSY[1]
    machine.table = Machine.QUIET  # the other program ends: the periodic re-check finds two threads faster
    _train(tuner, machine, 3000)
    assert machine.threads == 2


def test_busy_from_the_start():
    machine = Machine()
    machine.table = Machine.BUSY
    tuner = _tuner(machine)
    _train(tuner, machine, 30)
    assert tuner.chosen == 1
    # the spin-waiting count runs one step, not probe_steps: the untimed first steps run on one thread
    assert machine.steps_at[2] == 1


def test_fixed_by_environment_is_left_alone(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    machine = Machine()
    machine.table = Machine.BUSY
    tuner = _tuner(machine)
    _train(tuner, machine, 30)
    assert machine.threads == 2 and tuner.chosen is None and not tuner.history


def test_hfnn_threads_sets_the_count_and_turns_tuning_off(monkeypatch):
    # hfnn's own variable: torch does not read it, so a tuner that only stood aside would leave torch's default
    monkeypatch.setenv("HFNN_THREADS", "1")
    machine = Machine()
    machine.table = Machine.QUIET
    tuner = _tuner(machine)
    _train(tuner, machine, 30)
    assert machine.threads == 1 and tuner.chosen is None and not tuner.history


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_hfnn_threads_must_be_a_positive_count(monkeypatch, value):
    monkeypatch.setenv("HFNN_THREADS", value)
    with pytest.raises(ValueError, match=r"HFNN_THREADS=.*positive whole number"):
        _tuner(Machine())


def test_threads_set_before_training_are_left_alone():
    machine = Machine()
    machine.threads = 1  # e.g. torch.set_num_threads(1) in the user's script
    machine.table = Machine.QUIET
    tuner = _tuner(machine)
    _train(tuner, machine, 30)
    assert machine.threads == 1 and tuner.chosen is None


def test_not_tuned_off_cpu():
    machine = Machine()
    tuner = ThreadTuner(candidates=[2, 1], load=None, clock=machine.clock, get_threads=machine.get_threads,
                        set_threads=machine.set_threads)
    tuner.on_train_begin(types.SimpleNamespace(device=types.SimpleNamespace(type="cuda")), None, None)
    machine.table = Machine.BUSY
    _train(tuner, machine, 30)
    assert machine.threads == 2 and tuner.chosen is None


def test_candidates():
    assert thread_candidates(2) == [2, 1]
    assert thread_candidates(1) == [1]
    assert thread_candidates(8) == [8, 7, 1]
    assert 1 <= available_cores()
    with pytest.raises(ValueError, match="candidates"):
        ThreadTuner(candidates=[0])


def test_steps_of_varied_length_do_not_set_off_measurements():
    """Batches of different lengths (e.g. grouped by length) make single steps 0.5x to 2x the median: only
    the periodic re-check measures again, not every long step."""
    import random

    rng = random.Random(0)
    machine = Machine()
    tuner = _tuner(machine)
    _train(tuner, machine, 1000, jitter=lambda: rng.choice([0.5, 0.8, 1.0, 1.3, 2.0]))
    elapsed = machine.now
    assert machine.threads == 2
    periodic = sum(1 for entry in tuner.history if "since the last measurement" in entry["reason"])
    assert len(tuner.history) == 1 + periodic and periodic <= 1 + elapsed / 60, tuner.history


# ------------------------------------------------------------------------------------------ the load signal


def _reader(files: dict):
    def read_text(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    return read_text


def _stat(rows):
    return "\n".join(" ".join(str(v) for v in row) for row in rows) + "\n"


def test_cpu_load_counts_the_others_time_on_this_process_cpus():
    """Two readings of real-format files: the busy ticks of CPUs 1 and 2 (this process' affinity) less this
    process' own ticks are the others'; CPU 0 and 3 (not ours) and idle, iowait and guest columns do not count."""
    files = {}
    load = CpuLoad(read_text=_reader(files), cpus={1, 2}, ticks_per_s=100)
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    files["/proc/stat"] = _stat([("cpu", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ("cpu0", 500, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                                 ("cpu1", 100, 0, 0, 900, 0, 0, 0, 0, 7, 0), ("cpu2", 100, 0, 0, 900, 0, 0, 0, 0, 0, 0),
                                 ("cpu3", 0, 0, 0, 1000, 0, 0, 0, 0, 0, 0)])
    files["/proc/self/stat"] = "77 (a) b) S " + "0 " * 10 + "40 10 " + "0 " * 30
    before = load.sample()
    assert (before.busy, before.total, before.cpus, before.own) == (200, 2000, 2, 50)
    # 100 ticks later on each CPU: cpu1 busy 60 (user 30, system 10, irq 5, softirq 5, steal 10), cpu2 busy 90;
    # this process used 70 of those 150 ticks: the others 80 ticks of 100, i.e. 0.8 cores
    files["/proc/stat"] = _stat([("cpu", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ("cpu0", 600, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                                 ("cpu1", 130, 0, 10, 930, 10, 5, 5, 10, 99, 0),
                                 ("cpu2", 190, 0, 0, 910, 0, 0, 0, 0, 0, 0), ("cpu3", 0, 0, 0, 1100, 0, 0, 0, 0, 0, 0)])
    files["/proc/self/stat"] = "77 (a) b) S " + "0 " * 10 + "100 20 " + "0 " * 30
    free, other = load.measure(before, load.sample())
    assert other == pytest.approx(0.8) and free == pytest.approx(1.2)
    assert load.measure(before, before) is None  # no time passed


def test_cpu_load_within_a_cgroup_quota():
    """Under a quota of 1.5 cores the free cores are at most the quota less what the rest of the group used."""
    machine = LoadedMachine(cores=4, other=0.0, quota=1.5, group_other=0.5)
    machine.threads = 1
    load = machine.load()
    assert load.quota == 1.5
    before = load.sample()
    machine.advance(10.0)
    free, other = load.measure(before, load.sample())
    assert free == pytest.approx(1.0, abs=0.02) and other == pytest.approx(0.5, abs=0.02)


def test_cpu_load_without_proc_files():
    def missing(path):
        raise FileNotFoundError(path)

    assert CpuLoad(read_text=missing).sample() is None


def test_room_for():
    assert room_for([2, 1], 2.0) == {2: "fits", 1: "fits"}
    assert room_for([2, 1], 1.8) == {2: "fits", 1: "fits"}
    assert room_for([2, 1], 1.5) == {2: "unclear", 1: "fits"}
    assert room_for([2, 1], 1.0) == {2: "no room", 1: "fits"}
    assert room_for([2, 1], 0.0) == {2: "no room", 1: "unclear"}  # the fewest threads are always left


def _loaded_tuner(machine, **kwargs):
    return _tuner(machine, candidates=thread_candidates(machine.cores), load=machine.load(), **kwargs)


def test_busy_core_at_the_start_is_never_timed():
    """Another program keeps one core busy: the load reading of the untimed first steps rules two threads out,
    and one thread is taken without one slow two-thread step."""
    machine = LoadedMachine(other=1.0)
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 300)
    assert tuner.chosen == 1 and machine.steps_at[2] == 0
    assert len(tuner.history) == 1, tuner.history
    entry = tuner.history[0]
    assert entry["reason"] == "start" and entry["seconds_per_step"] == {} and entry["threads"] == 1
    assert entry["other_cores"] == pytest.approx(1.0, abs=0.05) and entry["free_cores"] == pytest.approx(1.0, abs=0.05)


def test_quiet_machine_times_both_once_and_keeps_two():
    """Quiet: both counts fit, the step times decide (two threads); the load stays the same, so nothing is
    timed again however long the run."""
    machine = LoadedMachine(other=0.0)
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 3000)
    assert tuner.chosen == 2 and machine.threads == 2
    assert len(tuner.history) == 1 and tuner.history[0]["seconds_per_step"] == {"1": 0.32, "2": 0.24}
    assert machine.steps_at[1] == 2 + 3  # the untimed first steps and the probe's


def test_load_that_comes_and_goes_is_followed_from_the_readings():
    machine = LoadedMachine(other=0.0)
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 100)
    assert machine.threads == 2
    machine.set_other(1.0)  # another program starts
    start, steps_at_2 = machine.now, machine.steps_at[2]
    while tuner.chosen == 2:
        _train(tuner, machine, 1)
    # found by the next readings (every 5 s), not by a drift window of 20 slow steps
    assert machine.now - start < 2 * tuner.load_every_s + 3 * Machine.BUSY[2]
    assert machine.steps_at[2] - steps_at_2 <= 12
    assert "load changed" in tuner.history[-1]["reason"]
    busy_start, busy_steps = machine.now, 1000
    _train(tuner, machine, busy_steps)
    assert machine.threads == 1
    # while the core stays taken, no two-thread step is tried again: the speed is one thread's
    assert busy_steps / (machine.now - busy_start) == pytest.approx(1 / Machine.BUSY[1])
    machine.set_other(0.0)  # it ends
    start = machine.now
    while tuner.chosen == 1:
        _train(tuner, machine, 1)
    assert machine.now - start < 2 * tuner.load_every_s + 10 * Machine.BUSY[1]
    _train(tuner, machine, 100)
    assert tuner.chosen == 2 and tuner.history[-1]["seconds_per_step"] == {"1": 0.32, "2": 0.24}


def test_unclear_load_is_judged_by_step_times():
    """Another program uses half a core: two threads may or may not be faster, so both are timed."""
    machine = LoadedMachine(other=0.5)
    machine.table = {2: 0.28, 1: 0.32}
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 50)
    assert tuner.chosen == 2 and set(tuner.history[0]["seconds_per_step"]) == {"1", "2"}
    assert tuner.history[0]["other_cores"] == pytest.approx(0.5, abs=0.05)
    machine2 = LoadedMachine(other=0.5)
    machine2.table = {2: 0.9, 1: 0.32}
    tuner2 = _loaded_tuner(machine2)
    _train(tuner2, machine2, 50)
    assert tuner2.chosen == 1 and machine2.steps_at[2] == 1  # one slow step, then no more


def test_short_first_steps_time_every_count_until_the_load_is_read():
    """Steps too short for a load reading: every count is timed (cheap, the steps are short); the first
    reading then rules out the choice when it has no room."""
    machine = LoadedMachine(other=1.0)
    machine.table = {2: 0.01, 1: 0.01}  # 2 threads not slower on such steps: the timing keeps them
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 20)
    assert tuner.history[0]["seconds_per_step"] == {"1": 0.01, "2": 0.01} and tuner.history[0]["free_cores"] is None
    _train(tuner, machine, 1000)
    assert tuner.chosen == 1 and "load changed" in tuner.history[-1]["reason"]


def test_first_reading_that_agrees_does_not_measure_again():
    machine = LoadedMachine(other=0.0)
    machine.table = {2: 0.01, 1: 0.02}
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 5000)
    assert tuner.chosen == 2 and len(tuner.history) == 1


def test_drift_with_one_count_left_takes_it_without_timing():
    """Step times drift while the load still leaves room for one count only: it is kept, nothing is timed."""
    machine = LoadedMachine(other=1.0)
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 100)
    machine.table = {2: 1.8, 1: 0.66}  # e.g. longer batches
    _train(tuner, machine, 100)
    assert machine.steps_at[2] == 0 and tuner.chosen == 1
    assert any("step time" in entry["reason"] for entry in tuner.history)


def test_many_cores_with_two_taken_try_the_free_count():
    """Eight cores, two kept busy by others: 8 and 7 threads have no room; the six free cores are tried
    beside one thread."""
    machine = LoadedMachine(cores=8, other=2.0)
    machine.table = {8: 2.0, 7: 1.5, 6: 0.1, 1: 0.4}
    tuner = _loaded_tuner(machine)
    assert tuner.candidates == [8, 7, 1]
    _train(tuner, machine, 100)
    assert tuner.chosen == 6 and machine.steps_at[8] == 0 and machine.steps_at[7] == 0
    assert set(tuner.history[0]["seconds_per_step"]) == {"1", "6"}


def test_cgroup_siblings_leave_no_room():
    """A quota of two cores, one used by another process of the same group: one thread without timing."""
    machine = LoadedMachine(cores=4, other=0.0, quota=2.0, group_other=1.0)
    machine.threads = 2  # torch's default under the quota
    tuner = _tuner(machine, candidates=[2, 1], load=machine.load())
    _train(tuner, machine, 50)
    assert tuner.chosen == 1 and machine.steps_at[2] == 0


def test_without_proc_files_the_step_times_decide():
    def missing(path):
        raise FileNotFoundError(path)

    machine = Machine()
    machine.table = Machine.BUSY
    tuner = _tuner(machine, load=CpuLoad(read_text=missing))
    _train(tuner, machine, 30)
    assert tuner.chosen == 1 and machine.steps_at[2] == 1
    assert tuner.history[0]["free_cores"] is None


def test_a_full_machine_shows_what_the_others_want():
    """With no idle time the others got only a share: beside our two runnable threads on two cores a program
    that wants one core gets two thirds of one; the reading says one core. With idle time left, what the
    others got is what they wanted."""
    machine = LoadedMachine(other=1.0)
    load = machine.load()
    before = load.sample()
    machine.advance(10.0)  # two threads of ours beside one busy core
    after = load.sample()
    free, other = load.measure(before, after, threads=2)
    assert other == pytest.approx(1.0, abs=0.02) and free == pytest.approx(1.0, abs=0.02)
    assert load.measure(before, after)[1] == pytest.approx(2 / 3, abs=0.02)  # the thread count unknown
    machine.threads = 1
    machine.set_other(0.5)
    before = load.sample()
    machine.advance(10.0)
    assert load.measure(before, load.sample(), threads=1)[1] == pytest.approx(0.5, abs=0.02)


def test_choices_are_logged_with_their_reason(caplog):
    machine = LoadedMachine(other=1.0)
    tuner = _loaded_tuner(machine)
    with caplog.at_level("INFO", logger="hfnn.training.cpu_threads"):
        _train(tuner, machine, 10)
    assert any("cpu threads: 1 (start; the only count with room: 1.00 free cores)" in r.getMessage()
               for r in caplog.records), caplog.text


def test_resume_reads_the_load_from_then_on():
    """A pause in which something else ran (the bench's fixed-thread windows) is not read as load."""
    machine = LoadedMachine(other=0.0)
    tuner = _loaded_tuner(machine)
    _train(tuner, machine, 100)
    assert tuner.chosen == 2
    machine.set_other(1.0)  # another program runs during the pause only
    machine.threads = 1
    machine.advance(30.0)
    machine.set_other(0.0)
    tuner.resume()
    _train(tuner, machine, 200)
    assert len(tuner.history) == 1 and machine.threads == 2

