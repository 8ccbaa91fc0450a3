"""The language-modelling pipeline end to end on a real slice of Shakespeare."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

import hfnn
from hfnn.data.tokenization import train_tokenizer
from hfnn.pipelines import run_lm
from hfnn.pipelines.common import build_config
from hfnn.training.recipes import load_recipe, parse_args

TINY = [
    "--max_steps", "60",
    "--eval_steps", "30",
    "--eval_on_start", "true",
    "--logging_steps", "10",
    "--max_train_samples", "400",
    "--max_eval_samples", "24",
    "--block_size", "64",
    "--per_device_train_batch_size", "16",
    "--learning_rate", "0.01",
    "--sample_max_new_tokens", "20",
    "--max_train_minutes", "3",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "rnn"
    results = run_lm.main(
        ["rnn_shakespeare_char", "--output_dir", str(out),
         "--config_overrides", '{"hidden_size": 48, "embedding_size": 16, "num_hidden_layers": 1, "rnn_type": "gru"}']
        + TINY
    )
    return out, results


def test_training_on_shakespeare_lowers_the_validation_loss(trained):
    out, results = trained
    saved = json.loads((out / "results.json").read_text())
    assert saved["train_steps"] == 60
    # eval_on_start gives the loss of the untrained model; a 60-step run must beat it clearly.
    (first_step, first_loss), (last_step, last_loss) = saved["eval_history"][0], saved["eval_history"][-1]
    assert first_step == 0 and last_step == 60
    assert last_loss < first_loss - 0.5
    assert results["validation_loss"] < 3.9  # uniform over ~80 characters is ~4.4 nats
    assert results["validation_perplexity"] == pytest.approx(torch.tensor(results["validation_loss"]).exp().item(),
                                                             rel=1e-3)


def test_run_leaves_a_complete_model_folder(trained):
    out, _ = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json",
                 "modeling_rnn.py", "configuration_rnn.py", "loss_curve.png", "results.json", "README.md"):
        assert (out / name).exists(), name
    assert not list(out.glob("*.bin")), "no pickled files in the saved folder"


def greedy_by_hand(model, ids: torch.Tensor, steps: int, eos: int | None) -> list[int]:
    """Greedy continuation from plain forward passes over the whole sequence (no cache, no generate)."""
    ids = ids.clone()
    new = []
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=ids).logits[0, -1].argmax())
            new.append(token)
            if token == eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    return new


def test_saved_folder_works_with_auto_classes_generate_and_pipeline(trained):
    out, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.padding_side == "left"
    # greedy generate continues the prompt with the tokens the model's own forward passes rank first
    prompt = tok("ROMEO:", return_tensors="pt")
    width = prompt["input_ids"].shape[1]
    expected = greedy_by_hand(model, prompt["input_ids"], 10, model.generation_config.eos_token_id)
    gen = model.generate(**prompt, max_new_tokens=10, do_sample=False)
    assert gen.shape[1] > width, "generate returned the prompt without new tokens"
    assert gen[0, :width].tolist() == prompt["input_ids"][0].tolist()
    assert gen[0, width:].tolist() == expected
    # a padded batch with beam search: every row gets new tokens after its prompt
    batch = tok(["ROMEO:", "KING LEAR:"], return_tensors="pt", padding=True)
    beams = model.generate(**batch, num_beams=4, max_new_tokens=10)
    assert batch["input_ids"].shape[1] < beams.shape[1] <= batch["input_ids"].shape[1] + 10
    assert beams[:, : batch["input_ids"].shape[1]].tolist() == batch["input_ids"].tolist()
    # the text-generation pipeline gives the prompt followed by the same greedy continuation
    text = pipeline("text-generation", model=str(out))("ROMEO:", max_new_tokens=10, do_sample=False)
    assert text[0]["generated_text"] == "ROMEO:" + tok.decode(expected, skip_special_tokens=True)
    assert len(text[0]["generated_text"]) > len("ROMEO:")
    # a batch of prompts of different lengths (left-padded) gives each prompt's own greedy continuation
    prompts = ["ROMEO:", "KING LEAR:", "O"]
    batched = pipeline("text-generation", model=str(out))(prompts, max_new_tokens=8, do_sample=False, batch_size=3)
    for prompt, result in zip(prompts, batched):
        alone = greedy_by_hand(model, tok(prompt, return_tensors="pt")["input_ids"], 8,
                               model.generation_config.eos_token_id)
        assert result[0]["generated_text"] == prompt + tok.decode(alone, skip_special_tokens=True), prompt
    sampled = pipeline("text-generation", model=str(out))("ROMEO:", max_new_tokens=15, do_sample=True, top_k=20)
    assert sampled[0]["generated_text"].startswith("ROMEO:") and len(sampled[0]["generated_text"]) > len("ROMEO:")


def test_fine_tuning_the_saved_model_on_another_text(trained, tmp_path):
    from tests.reliability_utils import assert_same_weights, load_weights

    out, _ = trained
    text = tmp_path / "sonnets.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 60)
    argv = ["rnn_shakespeare_char", "--model_name_or_path", str(out), "--train_file", str(text), "--block_size", "32",
            "--per_device_train_batch_size", "8", "--sample_max_new_tokens", "5", "--eval_steps", "15",
            "--logging_steps", "1", "--anneal_by_time", "false", "--warmup_steps", "0"]
    # learning rate 0: the run starts from the saved tensors and leaves them as they were
    still = run_lm.main(argv + ["--output_dir", str(tmp_path / "lr0"), "--max_steps", "1", "--learning_rate", "0",
                                "--eval_strategy", "no", "--num_samples", "0"])
    assert still["train_steps"] == 1
    assert_same_weights(load_weights(tmp_path / "lr0"), load_weights(out), "fine-tuned with learning rate 0 vs saved")
    results = run_lm.main(argv + ["--output_dir", str(tmp_path / "ft"), "--max_steps", "15", "--eval_on_start", "true"])
    assert results["train_steps"] == 15
    tuned, saved = load_weights(tmp_path / "ft"), load_weights(out)
    assert tuned.keys() == saved.keys() and any(not torch.equal(tuned[k], saved[k]) for k in saved)
    # the validation loss on the new text falls from the saved model's to the fine-tuned one's
    (first_step, first_loss), (last_step, last_loss) = results["eval_history"][0], results["eval_history"][-1]
    assert (first_step, last_step) == (0, 15) and last_loss < first_loss, results["eval_history"]


def test_existing_output_folder_is_never_overwritten(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        run_lm.main(["rnn_shakespeare_char", "--output_dir", str(tmp_path), "--max_steps", "1"])
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_recipe_keys_are_checked_and_overridable(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("architecture: rnn\nblock_size: 32\noutput_dir: x\n")
    model_args, data_args, run_args, training_args = parse_args(
        (run_lm.ModelArguments, run_lm.DataArguments, hfnn.pipelines.common.RunArguments, run_lm.TrainingArguments),
        [str(recipe), "--block_size", "16"],
    )
    assert data_args.block_size == 16 and training_args.output_dir == "x"
    recipe.write_text("architecture: rnn\nblock_sise: 32\n")
    with pytest.raises(ValueError, match="block_sise"):
        parse_args((run_lm.ModelArguments, run_lm.DataArguments), [str(recipe)])
    assert load_recipe("rnn_shakespeare_char")["architecture"] == "rnn"


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown architecture 'lstm'"):
        build_config("lstm", "language-modeling", {"vocab_size": 10}, {})


def run_as_command(module: str, argv: list[str], monkeypatch) -> int:
    """``python -m MODULE ARGV`` in this process (runpy runs its ``__main__`` block); returns the exit status."""
    import runpy
    import sys
    import warnings

    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exit_, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)  # the module was imported
        runpy.run_module(module, run_name="__main__")
    return exit_.value.code


def test_command_line_user_error_is_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "keep.txt").write_text("user data")
    code = run_as_command("hfnn.pipelines.run_lm", ["rnn_shakespeare_char", "--output_dir", str(tmp_path)], monkeypatch)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"run_lm: error: output_dir {tmp_path} already exists and is not empty")
    code = run_as_command("hfnn.pipelines.run_lm", ["rnn_shakespeare_char", "--output_dir", str(tmp_path / "new"),
                                                    "--num_samples", "-1"], monkeypatch)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and lines == ["run_lm: error: num_samples must be an integer >= 0 (0: print none), got -1"]
    assert (tmp_path / "keep.txt").read_text() == "user data" and not (tmp_path / "new").exists()


def test_only_the_main_process_writes_the_output_folder(tmp_path, monkeypatch):
    from transformers import Trainer

    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 8)
    monkeypatch.setattr(Trainer, "is_world_process_zero", lambda self: False)  # as on process 1 of 2
    out = tmp_path / "out"
    results = run_lm.main(
        ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text), "--block_size", "16",
         "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}',
         "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--sample_max_new_tokens", "2",
         "--report_to", "none", "--disable_tqdm", "true"]
    )
    assert results["train_steps"] == 1 and results["samples"] == [] and "test_loss" in results
    assert sorted(p.name for p in out.iterdir()) == [], "only the main process may write the output folder"


def test_transformer_language_model_trains_under_bf16_autocast(tmp_path):
    """``--bf16 true`` on a CPU: the Trainer runs forward and loss under bfloat16 autocast. The Transformer's
    logits there stay close to its float32 ones, the loss falls and the saved weights are float32."""
    from transformers import AutoModelForCausalLM as Auto

    from tests.reliability_utils import load_weights

    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 20)
    out = tmp_path / "out"
    results = run_lm.main(
        ["transformer_shakespeare_char", "--output_dir", str(out), "--train_file", str(text), "--block_size", "32",
         "--config_overrides", '{"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1, '
                               '"intermediate_size": 32, "max_position_embeddings": 32, "dropout": 0.0}',
         "--max_steps", "12", "--per_device_train_batch_size", "8", "--learning_rate", "0.01", "--warmup_steps", "0",
         "--anneal_by_time", "false", "--bf16", "true", "--use_cpu", "true", "--eval_strategy", "steps",
         "--eval_steps", "12", "--eval_on_start", "true", "--num_samples", "0", "--write_model_card", "false",
         "--report_to", "none", "--disable_tqdm", "true"])
    (first_step, first_loss), (last_step, last_loss) = results["eval_history"][0], results["eval_history"][-1]
    assert (first_step, last_step) == (0, 12) and last_loss < first_loss - 0.3, results["eval_history"]
    assert all(t.dtype == torch.float32 for t in load_weights(out).values())
    model = Auto.from_pretrained(out).eval()
    ids = AutoTokenizer.from_pretrained(out)(["Shall I compare thee"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids, labels=ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(input_ids=ids, labels=ids)
    assert half.logits.dtype in (torch.bfloat16, torch.float32) and torch.isfinite(half.logits).all()
    torch.testing.assert_close(half.logits.float(), full.logits, atol=0.15, rtol=0.05)
    assert half.loss.dtype == torch.float32 and abs(half.loss.item() - full.loss.item()) < 0.05


def test_max_eval_samples_caps_the_validation_and_test_splits(tmp_path, monkeypatch, caplog):
    import logging

    from transformers import Trainer

    caplog.set_level(logging.INFO, logger="hfnn.pipelines")

    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 30)
    sizes = {}
    evaluate = Trainer.evaluate

    def recording(self, eval_dataset=None, *args, metric_key_prefix="eval", **kwargs):
        sizes[metric_key_prefix] = len(eval_dataset if eval_dataset is not None else self.eval_dataset)
        return evaluate(self, eval_dataset, *args, metric_key_prefix=metric_key_prefix, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", recording)
    results = run_lm.main(
        ["rnn_shakespeare_char", "--output_dir", str(tmp_path / "out"), "--train_file", str(text), "--block_size", "8",
         "--config_overrides", '{"hidden_size": 8, "embedding_size": 8, "num_hidden_layers": 1}',
         "--max_steps", "1", "--eval_strategy", "no", "--max_eval_samples", "2", "--num_samples", "0",
         "--write_model_card", "false", "--report_to", "none", "--disable_tqdm", "true"])
    assert sizes.get("validation") == 2 and sizes.get("test") == 2, sizes
    assert "validation_loss" in results and "test_loss" in results
    # the log states the model's size in millions of parameters
    logged = [r.getMessage() for r in caplog.records
              if r.name.startswith("hfnn.pipelines") and "parameters" in r.getMessage()]
    assert any(f": {results['parameters'] / 1e6:.2f}M parameters" in m for m in logged), logged


def test_lstm_recurrence_runs_in_float32_under_bf16_autocast():
    """What ``--bf16`` on a CPU does to an LSTM language model: the recurrence runs in float32 (oneDNN has
    no bfloat16 LSTM on CPUs without native bfloat16), so its hidden states are exactly the float32 ones;
    only the output layer runs in bfloat16."""
    from tests.reliability_utils import build_model

    model = build_model("rnn", "AutoModelForCausalLM").eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [9, 4, 12, 5, 6]])
    with torch.no_grad():
        full = model(input_ids=ids, output_hidden_states=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(input_ids=ids, output_hidden_states=True)
    assert len(half.hidden_states) == len(full.hidden_states) > 1
    for layer, (a, b) in enumerate(zip(full.hidden_states, half.hidden_states)):
        assert b.dtype == torch.float32 and torch.equal(a, b), f"hidden state {layer} under autocast"
    torch.testing.assert_close(half.logits.float(), full.logits, atol=0.1, rtol=0.05)


def test_a_lora_run_saves_the_merged_model_and_the_adapter(tmp_path):
    pytest.importorskip("peft", reason="--lora_r needs peft")
    pytest.importorskip("hfnn.sharing.adapters", reason="--lora_r needs hfnn.sharing.adapters")
    from transformers import AutoModelForCausalLM

    text = tmp_path / "text.txt"
    text.write_text("Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n" * 8)
    base = tmp_path / "base"
    tokenizer = train_tokenizer(text.read_text(), kind="char")
    hfnn.RnnForCausalLM(hfnn.RnnConfig(vocab_size=len(tokenizer), hidden_size=8, embedding_size=8,
                                       num_hidden_layers=1)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "out"
    results = run_lm.main(
        ["rnn_shakespeare_char", "--output_dir", str(out), "--train_file", str(text), "--block_size", "16",
         "--model_name_or_path", str(base),
         "--max_steps", "3", "--learning_rate", "0.05", "--eval_strategy", "no", "--save_strategy", "no",
         "--num_samples", "1", "--sample_max_new_tokens", "2", "--write_model_card", "false", "--report_to", "none",
         "--disable_tqdm", "true", "--lora_r", "4"])
    assert results["adapter"] == {"method": "lora", "r": 4}
    assert 0 < results["trainable_parameters"] < results["parameters"]
    assert ((out / "adapter" / "adapter_config.json").is_file()
            and (out / "adapter" / "adapter_model.safetensors").is_file())
    merged = AutoModelForCausalLM.from_pretrained(out)  # a plain model: the adapter is merged into its weights
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert sum(p.numel() for p in merged.parameters()) == results["parameters"]
    assert "validation_loss" in results and len(results["samples"]) == 1
