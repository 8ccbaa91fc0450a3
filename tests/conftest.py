"""Test-session settings: tiny models run fastest on one thread (and do not fight over 2 cores)."""

import os

import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
# HFNN_TEST_THREADS: .ci/run repeats the numerics-sensitive tests (marker `numerics`) on 2 threads as well,
# where reductions are split differently.
torch.set_num_threads(int(os.environ.get("HFNN_TEST_THREADS", "1")))
