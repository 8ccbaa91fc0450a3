"""Test-session settings: tiny models run fastest on one thread (and do not fight over 2 cores)."""

import os

import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
torch.set_num_threads(1)
