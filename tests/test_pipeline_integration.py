"""The training pipelines wire hfnn's parts together: text-only tokenizers, pipeline task markers,
tokenizer lengths capped to the model, Space files beside the model, CPU thread tuning."""

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from hfnn.pipelines import run_classification, run_lm, run_seq2seq
from tests.reliability_utils import shakespeare_text

TINY_RNN = '{"hidden_size": 12, "embedding_size": 8, "num_hidden_layers": 1}'
TINY_TRANSFORMER = ('{"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, '
                    '"intermediate_size": 16, "max_position_embeddings": 32}')
QUIET = ["--num_samples", "0", "--eval_strategy", "no", "--logging_steps", "1", "--report_to", "none",
         "--save_strategy", "no"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "play.txt"
    path.write_text(shakespeare_text(3000), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory, text_file) -> Path:
    out = tmp_path_factory.mktemp("lm") / "transformer"
    run_lm.main(["transformer_shakespeare_char", "--output_dir", str(out), "--train_file", str(text_file),
                 "--config_overrides", TINY_TRANSFORMER, "--max_steps", "2", "--block_size", "16",
                 "--per_device_train_batch_size", "4", "--max_train_minutes", "1", *QUIET])
    return out


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cls")
    train = root / "train.csv"
    train.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40)))
    out = root / "rnn"
    run_classification.main(["rnn_rotten_tomatoes", "--output_dir", str(out), "--train_file", str(train),
                             "--config_overrides", TINY_RNN, "--max_steps", "2", "--load_best_model_at_end", "false",
                             *QUIET])
    return out


def _front_matter(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return text.split("---\n", 2)[1]


# ------------------------------------------------------------------------------------------ pipeline tasks


def test_language_model_and_classifier_folders_name_their_pipeline(lm_folder, classifier_folder):
    for folder, task in ((lm_folder, "hfnn-text-generation"), (classifier_folder, "hfnn-text-classification")):
        config = json.loads((folder / "config.json").read_text())
        assert config.get("custom_pipelines"), f"{folder.name}: no custom_pipelines entry in config.json"
        pipe = pipeline(model=str(folder), trust_remote_code=True)
        assert pipe.task == task


# ------------------------------------------------------------------------------------------ tokenizers


def test_a_loaded_tokenizer_reads_special_token_strings_as_text(tmp_path, lm_folder, text_file):
    # a tokenizer saved without split_special_tokens (as one from elsewhere would be)
    source = tmp_path / "tok"
    AutoTokenizer.from_pretrained(lm_folder).save_pretrained(source)
    config_path = source / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["split_special_tokens"] = False
    config_path.write_text(json.dumps(config))
    plain = AutoTokenizer.from_pretrained(source)
    assert plain(plain.bos_token, add_special_tokens=False)["input_ids"] == [plain.bos_token_id]  # the hazard

    out = tmp_path / "run"
    run_lm.main(["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text_file),
                 "--tokenizer_name", str(source), "--config_overrides", TINY_RNN, "--max_steps", "1",
                 "--block_size", "16", "--per_device_train_batch_size", "4", *QUIET])
    saved = AutoTokenizer.from_pretrained(out)
    ids = saved(saved.bos_token, add_special_tokens=False)["input_ids"]
    assert saved.bos_token_id not in ids and len(ids) == len(saved.bos_token)


def test_seq2seq_loads_both_tokenizers_as_text_only(monkeypatch):
    seen = []

    class Fake:
        split_special_tokens = False
        padding_side = "left"

        def __init__(self):
            self.init_kwargs = {}

    def fake_from_pretrained(name, *args, **kwargs):
        seen.append(Fake())
        return seen[-1]

    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    source, target = (common.load_tokenizer(name, None, "right") for name in ("src", "tgt"))
    assert len(seen) == 2
    assert source.split_special_tokens and target.split_special_tokens
    assert source.init_kwargs["split_special_tokens"] and target.init_kwargs["split_special_tokens"]


def test_the_saved_tokenizer_is_capped_to_the_model_positions(lm_folder):
    config = json.loads((lm_folder / "config.json").read_text())
    assert config["max_position_embeddings"] == 32
    assert AutoTokenizer.from_pretrained(lm_folder).model_max_length == 32
    assert json.loads((lm_folder / "tokenizer_config.json").read_text())["model_max_length"] == 32


# ------------------------------------------------------------------------------------------ Space files


def test_a_saved_folder_carries_its_space_files_and_a_model_card(lm_folder, classifier_folder):
    for folder in (lm_folder, classifier_folder):
        for name in ("app.py", "requirements.txt", "hfnn_demo.py", "registry.py"):
            assert (folder / name).is_file(), f"{folder.name}: {name} missing"
        readme = folder / "README.md"
        front = _front_matter(readme)
        assert "sdk:" not in front and "app_file:" not in front, "the model card must stay a model card"
        assert "pipeline_tag:" in front
        assert f"hfnn demo {folder.name}" in readme.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ CPU threads


def test_results_record_the_thread_tuning(tmp_path, text_file, monkeypatch):
    import hfnn.training.cpu_threads as cpu_threads

    for name in cpu_threads.FIXED_BY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 2)
    # no load reading: the step-time probe decides (a reading on a busy machine could rule out 2 threads untimed)
    monkeypatch.setattr(cpu_threads.CpuLoad, "sample", lambda self: None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "run"
        results = run_lm.main(["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text_file),
                               "--config_overrides", TINY_RNN, "--max_steps", "9", "--block_size", "16",
                               "--per_device_train_batch_size", "2", *QUIET])
    finally:
        torch.set_num_threads(before)
    saved = json.loads((out / "results.json").read_text())
    assert saved["cpu_threads"] == results["cpu_threads"]
    assert len(saved["cpu_threads"]) >= 1
    entry = saved["cpu_threads"][0]
    assert entry["threads"] in (1, 2) and set(entry["seconds_per_step"]) == {"1", "2"}
    assert "free_cores" in entry and entry["free_cores"] is None  # recorded; unknown without a reading


def test_a_fixed_thread_count_is_used_and_left_alone(tmp_path, text_file, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("HFNN_THREADS", "1")
    try:
        torch.set_num_threads(2)
        results = run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp_path / "run"), "--train_file",
                               str(text_file), "--config_overrides", TINY_RNN, "--max_steps", "9", "--block_size",
                               "16", "--per_device_train_batch_size", "2", *QUIET])
        assert results["cpu_threads"] == [] and torch.get_num_threads() == 1
        monkeypatch.setenv("HFNN_THREADS", "none")
        with pytest.raises(ValueError, match="HFNN_THREADS='none'"):
            run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp_path / "bad"), "--train_file",
                         str(text_file), "--config_overrides", TINY_RNN, "--max_steps", "2", *QUIET])
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ time budgets

from types import SimpleNamespace  # noqa: E402

from transformers import TrainerControl  # noqa: E402

from hfnn import training  # noqa: E402
from hfnn.pipelines import common  # noqa: E402
from hfnn.training import recipes


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _optimizer(lr=0.01):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _run_budget(callback, clock, seconds_per_step, until_seconds, state=None):
    """Steps ``callback`` like the Trainer would, one step every ``seconds_per_step`` of the fake clock, until
    ``until_seconds`` of training time; returns (training time at the step's start, lr used) per step."""
    optimizer, scheduler = _optimizer()
    state = state or SimpleNamespace(global_step=0, max_steps=100000, stateful_callbacks={}, log_history=[],
                                     is_world_process_zero=True)
    control = TrainerControl()
    callback.on_train_begin(None, state, control)
    seen = []
    while callback.elapsed() < until_seconds and not control.should_training_stop:
        callback.on_step_begin(None, state, control, optimizer=optimizer, lr_scheduler=scheduler)
        seen.append((callback.elapsed(), optimizer.param_groups[0]["lr"]))
        clock.now += seconds_per_step
        state.global_step += 1
        callback.on_step_end(None, state, control)
    return seen, state


def spy_on_trainers(monkeypatch) -> list:
    """The Trainers whose ``train`` is called from now on (their callbacks as they trained)."""
    from transformers import Trainer

    trainers, real = [], Trainer.train
    monkeypatch.setattr(Trainer, "train", lambda self, *a, **k: (trainers.append(self), real(self, *a, **k))[1])
    return trainers


@pytest.mark.parametrize("seconds_per_step", [0.05, 0.5, 2.0])
def test_warmup_reaches_the_full_rate_after_its_share_of_the_budget_at_any_step_speed(seconds_per_step):
    clock = FakeClock()
    budget = training.TimeBudgetCallback(2, warmup=0.1, clock=clock)  # 120 s, warm-up 12 s
    seen, _ = _run_budget(budget, clock, seconds_per_step, 30)
    for t, lr in seen:
        if t >= 12:
            assert lr == pytest.approx(0.01)
        else:
            assert lr == pytest.approx(0.01 * t / 12)
    assert any(t < 12 for t, _ in seen) and any(t >= 12 for t, _ in seen)


def test_warmup_in_steps_of_an_annealed_budget_is_capped_to_a_tenth_of_it():
    # the reviewer's case: 200 warm-up steps when only ~270 steps fit in the budget
    clock = FakeClock()
    budget = training.TimeBudgetCallback(1.5, anneal=True, warmup=200, clock=clock)  # 90 s, 1/3 s a step
    seen, _ = _run_budget(budget, clock, 1 / 3, 90)
    assert 260 <= len(seen) <= 275
    anneal = lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t / 90))  # noqa: E731
    late = [(t, lr) for t, lr in seen if t >= 9.1]
    assert late and all(lr == pytest.approx(0.01 * anneal(t), rel=1e-6) for t, lr in late)
    assert max(lr for _, lr in seen) > 0.9 * 0.01


def test_warmup_continues_where_a_resumed_run_left_it():
    clock = FakeClock()
    first = training.TimeBudgetCallback(2, warmup=0.5, clock=clock)  # warm-up over 60 s
    seen, state = _run_budget(first, clock, 1.0, 20)
    saved = first.state()
    assert saved["args"]["warmup"] == 0.5 and saved["attributes"]["elapsed_before"] == pytest.approx(20)
    # the Trainer rebuilds the callback from the checkpoint's args and attributes; the process starts later
    clock.now += 500
    resumed = training.TimeBudgetCallback(**saved["args"], clock=clock)
    state.stateful_callbacks = {"TimeBudgetCallback": saved}
    more, _ = _run_budget(resumed, clock, 1.0, 70, state=state)
    assert more[0][0] == pytest.approx(20)  # the budget's clock went on from the checkpoint
    assert more[0][1] == pytest.approx(0.01 * 20 / 60)
    assert all(lr == pytest.approx(0.01 * min(1.0, t / 60)) for t, lr in more)


def test_a_budgeted_run_moves_a_fractional_warmup_from_the_scheduler_to_the_clock():
    args = SimpleNamespace(warmup_steps=0.05, disable_tqdm=False)
    budget = training.TimeBudgetCallback(1.5, anneal=True)
    budget.take_over_warmup(args)
    assert budget.warmup == 0.05 and args.warmup_steps == 0  # the Trainer's scheduler does not warm up again
    budget.on_train_end(args, None, None)
    assert args.warmup_steps == 0.05  # restored for the model card and results
    # a step count with a step-based schedule stays with the scheduler: such a run is reproducible
    args = SimpleNamespace(warmup_steps=2, disable_tqdm=False)
    budget = training.TimeBudgetCallback(10, anneal=False)
    budget.take_over_warmup(args)
    assert budget.warmup == 0 and args.warmup_steps == 2
    # no budget: nothing changes
    args = SimpleNamespace(warmup_steps=0.05, disable_tqdm=False)
    training.TimeBudgetCallback(None, anneal=False).take_over_warmup(args)
    assert args.warmup_steps == 0.05


def test_shipped_annealed_recipes_give_their_warmup_as_a_fraction():
    for name in recipes.list_recipes():
        recipe = recipes.load_recipe(name)
        if recipe.get("max_train_minutes") and recipe.get("anneal_by_time"):
            assert 0 <= recipe.get("warmup_steps", 0) < 1, f"{name}: warm-up in steps in a time-budgeted recipe"


def test_the_progress_bar_of_a_budgeted_run_counts_minutes(capsys):
    clock = FakeClock()
    progress = training.BudgetProgressCallback(4, clock=clock)
    state = SimpleNamespace(global_step=0, max_steps=100000, stateful_callbacks={}, is_world_process_zero=True)
    progress.on_train_begin(None, state, None)
    bar = progress.training_bar
    clock.now += 60
    state.global_step = 250
    progress.on_step_end(None, state, None)
    assert bar.total == 100 and bar.n == pytest.approx(25)
    assert "step 250" in bar.postfix and "~03:00 left" in bar.postfix  # not 7 hours to max_steps
    state.max_steps = 300  # the step limit comes first: 50 more steps at 0.24 s
    clock.now += 0
    progress.on_step_end(None, state, None)
    assert "~00:12 left" in bar.postfix
    progress.on_train_end(None, state, None)
    assert progress.training_bar is None


def test_a_budgeted_pipeline_run_shows_the_budget_bar_instead_of_the_step_bar(tmp_path, text_file, monkeypatch):
    from transformers.trainer_callback import ProgressCallback

    kinds = []
    trainers = spy_on_trainers(monkeypatch)
    run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp_path / "run"), "--train_file", str(text_file),
                 "--config_overrides", TINY_RNN, "--max_steps", "2", "--block_size", "16",
                 "--per_device_train_batch_size", "4", "--max_train_minutes", "1", *QUIET])
    kinds = [type(cb) for cb in trainers[0].callback_handler.callbacks]
    assert training.BudgetProgressCallback in kinds and ProgressCallback not in kinds


# ------------------------------------------------------------------------------------------ structure


def test_checkpoint_integrity_lives_in_its_own_module():
    from hfnn.pipelines import checkpoints

    for name in ("CheckpointCommitCallback", "resolve_resume_checkpoint"):
        assert getattr(common, name) is getattr(checkpoints, name)
    assert checkpoints.CheckpointCommitCallback.__module__ == checkpoints.__name__


@pytest.mark.parametrize("pipeline_module", ["lm", "classification"])
def test_dataset_preprocessing_runs_main_process_first(tmp_path, text_file, monkeypatch, pipeline_module):
    from contextlib import contextmanager

    from transformers import TrainingArguments

    inside, entered = [False], []
    real = TrainingArguments.main_process_first

    @contextmanager
    def spy(self, local=True, desc="work"):
        entered.append(desc)
        with real(self, local=local, desc=desc):
            inside[0] = True
            try:
                yield
            finally:
                inside[0] = False

    mapped_inside = []
    import datasets

    real_map = datasets.Dataset.map  # DatasetDict.map maps each split with it

    def map_spy(self, *args, **kwargs):
        if kwargs.get("desc") == "tokenizing":
            mapped_inside.append(inside[0])
        return real_map(self, *args, **kwargs)

    monkeypatch.setattr(TrainingArguments, "main_process_first", spy)
    monkeypatch.setattr(datasets.Dataset, "map", map_spy)
    if pipeline_module == "lm":
        run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp_path / "run"), "--train_file", str(text_file),
                     "--config_overrides", TINY_RNN, "--max_steps", "1", "--block_size", "16",
                     "--per_device_train_batch_size", "4", *QUIET])
    else:
        train = tmp_path / "train.csv"
        train.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40)))
        run_classification.main(["rnn_rotten_tomatoes", "--output_dir", str(tmp_path / "run"), "--train_file",
                                 str(train), "--config_overrides", TINY_RNN, "--max_steps", "1",
                                 "--load_best_model_at_end", "false", *QUIET])
    assert "dataset preprocessing" in entered
    assert mapped_inside and all(mapped_inside), "tokenisation ran outside main_process_first"


def test_pipelines_read_architectures_from_the_registry():
    assert common.config_class("rnn-seq2seq", "seq2seq").__name__ == "RnnSeq2SeqConfig"  # an alias of the registry
    assert common.config_class("transformer_seq2seq", "g2p").__name__ == "TransformerConfig"
    assert run_seq2seq.ARCHITECTURES["rnn-seq2seq"] == "rnn_seq2seq"
    with pytest.raises(ValueError, match="Architecture 'cnn' has no language-model head"):
        common.build_config("cnn", run_lm.LanguageModelingPipeline.task, {}, {})
    with pytest.raises(ValueError, match="Architecture 'mlp' has no sequence-to-sequence head"):
        common.build_config("mlp", run_seq2seq.Seq2SeqPipeline.task, {}, {})
    with pytest.raises(ValueError, match="Unknown architecture 'lstm'; choose one of"):
        common.build_config("lstm", run_classification.ClassificationPipeline.task, {}, {})


def test_model_cards_read_tasks_from_the_registry():
    from hfnn.models import registry
    from hfnn.sharing import cards
    for entry in registry.TASKS.values():
        for name in entry.names:
            assert cards.normalize_task(name) == registry.hub_pipeline_tag(name)
    assert cards.model_kind({"architectures": ["TransformerForConditionalGeneration"]}) == "seq2seq"
    with pytest.raises(ValueError, match="write_model_card: unknown task 'painting'"):
        cards.normalize_task("painting")


def test_a_budgeted_run_that_max_steps_ends_first_warms_up_over_its_share_of_those_steps(tmp_path, text_file,
                                                                                          monkeypatch):
    """Warm-up in time scales to the run that will happen: here max_steps ends it long before the budget."""
    trainers = spy_on_trainers(monkeypatch)
    out = tmp_path / "run"
    results = run_lm.main(["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text_file),
                           "--config_overrides", TINY_RNN, "--max_steps", "8", "--block_size", "16",
                           "--per_device_train_batch_size", "4", "--max_train_minutes", "10",
                           "--anneal_by_time", "false", "--lr_scheduler_type", "constant_with_warmup",
                           "--warmup_steps", "0.5", "--learning_rate", "0.01", *QUIET])
    assert results["train_steps"] == 8
    (trainer,) = trainers
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert len(lrs) == 8
    # logged as the optimizer used them: rising over the first half of the run, then the full rate
    assert lrs[0] < 0.005 and lrs[-1] == pytest.approx(0.01)
    assert all(a <= b + 1e-12 for a, b in zip(lrs, lrs[1:]))
    assert trainer.args.warmup_steps == 0.5  # the run's setting as given, for the card
