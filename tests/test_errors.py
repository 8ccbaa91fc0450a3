"""A user's mistake is one line and exit status 2; anything else is a bug: its traceback, how to report it, exit 1."""

import errno
import importlib.util
import sys

import pytest

import hfnn.apps.cli as cli
from hfnn.models.errors import (
    BUG_REPORT,
    ColumnError,
    DataError,
    DemoError,
    FileError,
    HfnnError,
    HubError,
    MissingPackageError,
    OptionError,
    OutputDirError,
    UserError,
    first_line,
    is_user_error,
    report_error,
)
from hfnn.pipelines import common, run_lm
from tests.test_hub import save_tiny_model


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("HFNN_DEBUG", raising=False)


def test_hfnn_error_is_a_value_error_and_every_kind_is_one():
    assert isinstance(HfnnError(), ValueError)
    from hfnn.data.corpora import CorpusNotInstalledError
    from hfnn.sharing.hub import HubAuthError, HubConnectionError, ManifestError
    from hfnn.training import NonFiniteTrainingError

    for kind in (OptionError, DataError, ColumnError, FileError, HubError, HubAuthError, HubConnectionError,
                 ManifestError, OutputDirError, DemoError, MissingPackageError, CorpusNotInstalledError,
                 NonFiniteTrainingError, cli.CliError, UserError):
        assert issubclass(kind, HfnnError) and issubclass(kind, ValueError), kind
    # the kinds keep the base their errors had before, so that code catching it keeps working
    assert isinstance(ColumnError("load_corpus: column 'x' not found"), KeyError)
    assert isinstance(OutputDirError("output_dir x is not writable"), OSError)
    assert isinstance(HubError("the Hub cannot be reached"), ConnectionError)
    missing = CorpusNotInstalledError("kjv", "kjv-pkg", "pip install kjv-pkg")
    assert isinstance(missing, ImportError) and missing.name == "kjv-pkg"
    assert first_line(missing) == ("The corpus 'kjv' needs the PyPI package 'kjv-pkg', which is not installed. "
                                   "Install it with: pip install kjv-pkg")
    assert first_line(ColumnError("load_corpus: column 'x' not found")) == "load_corpus: column 'x' not found"


@pytest.mark.parametrize("err,user", [
    (OptionError("--x must be 1"), True),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "data.txt"), True),
    (PermissionError(errno.EACCES, "Permission denied", "runs/x"), True),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "runs"), True),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), True),
    (KeyError("input_ids"), False),
    (ValueError("too many values to unpack"), False),
    (ImportError("cannot import name 'x'"), False),
    (ConnectionError("reset by peer"), False),
    (OSError(errno.EIO, "Input/output error"), False),
])
def test_user_errors_are_hfnn_errors_and_os_errors_about_a_path(err, user):
    assert is_user_error(err) is user


def test_report_error_prints_a_bug_with_its_traceback(capsys):
    try:
        {}["input_ids"]
    except KeyError as err:
        assert report_error("run_x", err) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("Traceback") and "KeyError: 'input_ids'" in err and lines[-1] == f"run_x: {BUG_REPORT}"
    assert report_error("run_x", DataError("d.csv row 3: the label cell is empty\n(fill it)")) == 2
    assert capsys.readouterr().err == "run_x: error: d.csv row 3: the label cell is empty (fill it)\n"


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors") / "lm"
    save_tiny_model("rnn", "AutoModelForCausalLM", folder)
    return folder


@pytest.mark.parametrize("raised,code", [
    (KeyError("pad_token_id"), 1),
    (ValueError("not enough values to unpack"), 1),
    (OptionError("--max-new-tokens 9 is more than the model takes"), 2),
    (PermissionError(errno.EACCES, "Permission denied", "cache/x"), 2),
])
def test_the_command_line_tells_a_bug_in_a_library_from_a_user_error(monkeypatch, capsys, lm_folder, raised, code):
    import transformers

    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(transformers, "pipeline", broken)  # what `hfnn generate` builds the model's pipeline with
    assert cli.main(["generate", str(lm_folder), "hi", "--max-new-tokens", "2"]) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    if code == 2:
        assert lines == [f"hfnn generate: error: {first_line(raised)}"]
    else:
        assert lines[0] == "Traceback (most recent call last):" and f"{type(raised).__name__}: " in captured.err
        assert "in broken" in captured.err and lines[-1] == f"hfnn generate: {BUG_REPORT}"


@pytest.mark.parametrize("raised,code", [
    (KeyError("seed"), 1),
    (DataError("ok.txt row 2: the text cell is empty"), 2),
])
def test_a_pipeline_run_tells_a_bug_in_a_library_from_a_user_error(monkeypatch, capsys, tmp_path, raised, code):
    import transformers

    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(transformers, "set_seed", broken)  # called once the arguments and the folder are checked
    (tmp_path / "ok.txt").write_text("To be, or not to be, that is the question.\n" * 20, encoding="utf-8")
    argv = ["rnn_shakespeare_char", "--output_dir", str(tmp_path / "out"), "--train_file", str(tmp_path / "ok.txt"),
            "--max_steps", "1", "--report_to", "none"]
    assert common.run_command(run_lm.main, argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    if code == 2:
        assert lines[-1] == f"run_lm: error: {first_line(raised)}" and not any("Traceback" in ln for ln in lines)
    else:
        assert "Traceback (most recent call last):" in lines and lines[-1] == f"run_lm: {BUG_REPORT}"
        assert any(ln.startswith("KeyError: ") for ln in lines)


def test_a_bug_is_raised_as_it_is_with_hfnn_debug(monkeypatch, lm_folder):
    import transformers

    def broken(*args, **kwargs):
        raise KeyError("pad_token_id")

    monkeypatch.setattr(transformers, "pipeline", broken)
    monkeypatch.setenv("HFNN_DEBUG", "1")
    with pytest.raises(KeyError, match="pad_token_id"):
        cli.main(["generate", str(lm_folder), "hi"])


def test_the_demo_copied_without_hfnn_keeps_a_value_error_and_one_line(tmp_path, monkeypatch):
    # A Space imports the copied demo as a top-level module: `.errors` cannot be imported, the fallback serves.
    import hfnn.models.demo as demo

    demo.write_space_files(tmp_path)  # the demo and the registry beside it, as a Space holds them
    copy = tmp_path / demo.SPACE_MODULE
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "registry", raising=False)
    spec = importlib.util.spec_from_file_location("hfnn_demo_copy", copy)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "hfnn_demo_copy", module)
    spec.loader.exec_module(module)
    assert module.DemoError is not demo.DemoError and issubclass(module.DemoError, ValueError)
    assert module._one_line(ValueError("a\n  b")) == "a b"
    assert issubclass(demo.DemoError, HfnnError) and demo._one_line is first_line

