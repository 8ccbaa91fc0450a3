"""ThreadTuner: picks the thread count whose measured steps are fastest, follows a change of load, and
leaves a fixed choice alone. The steps are simulated: a fake clock advances by the step time that the
current thread count has under the current load."""

from __future__ import annotations

import types

import pytest

from hfnn.cpu_threads import ThreadTuner, available_cores, thread_candidates


class Machine:
    """Step time per thread count, under a load the test switches."""

    QUIET = {2: 0.24, 1: 0.32}  # two threads faster on a quiet machine
    BUSY = {2: 0.90, 1: 0.33}  # one core taken: two threads spin-wait

    def __init__(self):
        self.now = 0.0
        self.threads = 2
        self.table = self.QUIET
        self.steps_at = {1: 0, 2: 0}

    def clock(self):
        return self.now

    def set_threads(self, n):
        self.threads = n

    def get_threads(self):
        return self.threads


def _train(tuner, machine, steps, jitter=None):
    args, state, control = types.SimpleNamespace(device=types.SimpleNamespace(type="cpu")), types.SimpleNamespace(global_step=0), None
    for _ in range(steps):
        tuner.on_step_begin(args, state, control)
        machine.now += machine.table[machine.threads] * (jitter() if jitter else 1.0)
        machine.steps_at[machine.threads] += 1
        state.global_step += 1
        tuner.on_step_end(args, state, control)


def _tuner(machine, **kwargs):
    tuner = ThreadTuner(candidates=[2, 1], clock=machine.clock, get_threads=machine.get_threads,
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


def test_threads_set_before_training_are_left_alone():
    machine = Machine()
    machine.threads = 1  # e.g. torch.set_num_threads(1) in the user's script
    machine.table = Machine.QUIET
    tuner = _tuner(machine)
    _train(tuner, machine, 30)
    assert machine.threads == 1 and tuner.chosen is None


def test_not_tuned_off_cpu():
    machine = Machine()
    tuner = ThreadTuner(candidates=[2, 1], clock=machine.clock, get_threads=machine.get_threads,
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
