"""Model cards: metadata read back with huggingface_hub.ModelCard equals the run's results; the text ties the
model to its seed concept and says how to load it with and without hfnn."""

import json
import math

import pytest
from huggingface_hub import ModelCard
from transformers import TrainingArguments

from hfnn.sharing.cards import find_template, templates_dir, write_model_card
from tests.test_hub import save_tiny_model

LM_RESULTS = {
    "architecture": "hfnn-rnn",
    "parameters": 4321,
    "train_seconds": 12.5,
    "train_steps": 30,
    "train_loss": 2.91,
    "validation_loss": 2.4567891234,
    "validation_perplexity": 11.667,
    "test_loss": 2.5,
    "test_perplexity": 12.182493960703473,
    "eval_runtime": 1.5,
    "validation_samples_per_second": 100.0,
    "corpus": "shakespeare",
    "block_size": 64,
    "samples": ["Romeo. what light through yonder"],
}


def load_card(path):
    card = ModelCard.load(path)
    values = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results or []}
    return card, values


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cards")
    out = {}
    for key, arch, auto in (("lm", "rnn", "AutoModelForCausalLM"), ("cnn", "cnn", "AutoModelForSequenceClassification"),
                            ("g2p", "rnn_seq2seq", "AutoModelForSeq2SeqLM"),
                            ("tlm", "transformer", "AutoModelForCausalLM")):
        save_tiny_model(arch, auto, root / key)
        out[key] = root / key
    return out


def test_templates_are_found_in_the_checkout():
    assert templates_dir().name == "model_cards"
    assert find_template("model_card").read_text().startswith("---\n{{ card_data }}\n---")


def test_language_model_card(folders):
    folder = folders["lm"]
    args = TrainingArguments(output_dir=str(folder / "tmp"), learning_rate=3e-3, max_steps=30, report_to="none")
    path = write_model_card(folder, task="text-generation", results=LM_RESULTS, training_args=args)
    assert path == folder / "README.md"
    card, values = load_card(path)
    data = card.data
    assert data.pipeline_tag == "text-generation"
    assert data.library_name == "transformers"
    assert data.license == "apache-2.0"
    assert data.datasets == ["shakespeare"]
    assert {"hfnn", "rnn", "recurrent-neural-network", "gru", "custom_code"} <= set(data.tags)
    assert values == {
        ("validation", "loss"): LM_RESULTS["validation_loss"],
        ("validation", "perplexity"): LM_RESULTS["validation_perplexity"],
        ("test", "loss"): LM_RESULTS["test_loss"],
        ("test", "perplexity"): LM_RESULTS["test_perplexity"],
    }
    assert {r.task_type for r in data.eval_results} == {"text-generation"}
    assert {r.dataset_type for r in data.eval_results} == {"shakespeare"}
    text = card.text
    assert "h_i = tanh(W_x x_i + W_h h_{i-1} + b)" in text and "gated GRU cell" in text
    assert "import hfnn" in text and "AutoModelForCausalLM.from_pretrained" in text
    assert "trust_remote_code=True" in text
    assert "| `hidden_size` | 16 |" in text and "| `rnn_type` | gru |" in text  # from config.json
    assert "| `learning_rate` | 0.003 |" in text and "| `max_steps` | 30 |" in text  # from training_args
    assert "Romeo. what light through yonder" in text  # the run's sample
    assert "Project Gutenberg" in text  # the corpus description
    assert "runtime" not in json.dumps([r.metric_type for r in data.eval_results])


def test_classifier_card(folders):
    folder = folders["cnn"]
    results = {"validation_accuracy": 0.71, "validation_f1": 0.7, "test_accuracy": 0.695, "test_f1": 0.69,
               "test_majority_class_accuracy": 0.578, "validation_epoch": 3.0, "corpus": "rotten_tomatoes",
               "samples": [{"text": "a fine film", "label": "fresh", "predicted": "fresh", "score": 0.9}]}
    card, values = load_card(write_model_card(folder, task="text-classification", results=results,
                                              training_args={"learning_rate": 0.001, "seed": 1}))
    assert card.data.pipeline_tag == "text-classification"
    assert {"hfnn", "cnn", "convolutional-neural-network"} <= set(card.data.tags)
    assert values == {("validation", "accuracy"): 0.71, ("validation", "f1"): 0.7,
                      ("test", "accuracy"): 0.695, ("test", "f1"): 0.69}  # no baseline, no epoch
    assert "majority class accuracy (baseline)" in card.text
    assert "Labels: rotten, fresh." in card.text
    assert "AutoModelForSequenceClassification" in card.text and "window widths" in card.text
    assert "predicted: fresh" in card.text


def test_seq2seq_card_with_attention_and_source_tokenizer(folders):
    folder = folders["g2p"]
    results = {"test_wer": 0.45, "test_per": 0.12, "validation": {"wer": 0.5, "per": 0.13}, "corpus": "cmudict"}
    card, values = load_card(write_model_card(folder, task="seq2seq", results=results))
    assert card.data.pipeline_tag == "text2text-generation"
    assert {"hfnn", "rnn-seq2seq", "encoder-decoder", "attention", "bahdanau-attention"} <= set(card.data.tags)
    assert values == {("test", "wer"): 0.45, ("test", "per"): 0.12,
                      ("validation", "wer"): 0.5, ("validation", "per"): 0.13}
    assert 'subfolder="source_tokenizer"' in card.text
    assert "additive, Bahdanau" in card.text and "seq2seq-generation" in card.text
    translation, _ = load_card(write_model_card(folder, task="translation", results={"test_bleu": 3.2}))
    assert translation.data.pipeline_tag == "translation"


def test_task_inferred_from_config_and_results_read_from_results_json(folders):
    folder = folders["tlm"]
    (folder / "results.json").write_text(json.dumps({"validation_loss": 1.25, "test_loss": float("nan"),
                                                     "corpus": "my_text.txt"}))
    card, values = load_card(write_model_card(folder, task=None, results=None,
                                              extra={"repo_id": "me/tiny-transformer", "license": "mit"}))
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.license == "mit"
    assert "transformer" in card.data.tags
    assert values == {("validation", "loss"): 1.25}  # the non-finite test loss is left out
    assert card.data.datasets is None  # a local file is not a Hub dataset
    assert 'from_pretrained("me/tiny-transformer"' in card.text
    assert "decoder-only language model" in card.text
    assert not math.isnan(values[("validation", "loss")])


def test_errors(folders, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        write_model_card(tmp_path, task="text-generation", results={})
    with pytest.raises(ValueError, match="unknown task"):
        write_model_card(folders["lm"], task="painting", results={})
