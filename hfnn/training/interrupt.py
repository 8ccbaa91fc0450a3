"""Ctrl-C during training: stop after the current step and keep the run."""

from __future__ import annotations

from transformers import TrainerCallback

__all__ = ["InterruptCallback"]


class InterruptCallback(TrainerCallback):
    """Ctrl-C during training stops it after the current step instead of losing the run: a checkpoint of that
    step is saved (when the run saves checkpoints) and the pipeline then saves and scores the model as after
    any other stop. A second Ctrl-C raises ``KeyboardInterrupt`` as usual. Only in a single process, from the
    main thread: processes of a distributed run must stop at the same step, which one signal cannot promise."""

    def __init__(self):
        self.interrupted_at: int | None = None
        self._requested, self._previous, self._state = False, None, None

    def _handle(self, signum, frame):
        import signal

        self._requested = True
        signal.signal(signal.SIGINT, self._previous)  # the next Ctrl-C interrupts as usual
        step = self._state.global_step if self._state is not None else 0
        print(f"\nCtrl-C: stopping after step {step + 1}; the model is then saved and scored (Ctrl-C again to "
              "stop at once)", flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        import signal
        import threading

        if args.world_size == 1 and threading.current_thread() is threading.main_thread():
            self._state, self._previous = state, signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self._requested and self.interrupted_at is None:
            self.interrupted_at = state.global_step
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()
        return control

    def restore(self) -> None:
        """Puts back the Ctrl-C handler that was there before training (also after training failed)."""
        import signal

        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None
