"""Mutation testing of the modeling files, the pipelines and the CLI (outside CI).

A mutant is a copy of the code with one small change (an operator, a comparison, a constant, a
removed decorator, an exception type...); the tests aimed at the changed file must fail on it
("killed"), else the mutant "survived" and shows behaviour no test pins down. The mutants come from
cosmic-ray's operators (``pip install cosmic-ray``); this script only chooses and runs them:

* everything happens in a copy of the repository (``--workdir``, default /tmp/hfnn-mutation), never
  in the working tree; ``hfnn.pipelines`` and ``hfnn.model_cards`` are linked into the copy's
  package so that the copy, not the installed tree, is imported;
* per target file (bench/mutation.toml) the unmutated targeted tests run once under coverage: they
  must pass, and only mutants on lines they execute are candidates;
* ``sample`` code sites are drawn per file with a fixed seed (one mutant per site: cosmic-ray's
  operator variants of one site, e.g. ``+`` -> ``-``/``*``/``//``..., count as one site), each
  applied alone and the file's tests run with ``pytest -x`` (a timeout counts as killed);
* the ``[[fixed]]`` mutations of the config, faults that once went unnoticed, are re-applied every
  time and must all be killed.

Run (about 15-25 minutes on one free core with the shipped config; ``nice -n 10``):

    python -m venv /tmp/crvenv && /tmp/crvenv/bin/pip install cosmic-ray coverage
    /tmp/crvenv/bin/python bench/mutation.py --python .venv/bin/python

``--coverage-path DIR`` adds a folder holding the ``coverage`` package to the test interpreter's
path when it lacks one (without coverage every line of a target is a candidate). ``--only NAME``
runs some targets or fixed mutations; ``--list`` shows the sampled mutants without running them;
``--replay OLD/results.json`` re-runs only the mutants that survived an earlier run (from their diffs,
e.g. after tests were added); ``--check-fixed`` checks that the fixed mutations still apply.
The results go to ``<workdir>/results.json``; the summary is printed (Markdown).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("mutation.toml")
LINKS = {"hfnn/pipelines": "../pipelines", "hfnn/model_cards": "../model_cards"}
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "*.egg-info", "runs", "*.png")
SKIPPED_OPERATORS = {"core/NoOp"}  # changes nothing by construction


# ------------------------------------------------------------------------------------------------ the copy


def make_copy(workdir: Path) -> Path:
    tree = workdir / "repo"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(REPO, tree, ignore=IGNORE, symlinks=True)
    for link, target in LINKS.items():
        if (tree / link).exists() or (tree / link).is_symlink():
            (tree / link).unlink()
        os.symlink(target, tree / link)
    return tree


def test_env(tree: Path, extra_path: str | None = None) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(tree), extra_path) if p), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", HF_HUB_OFFLINE="1")
    return env


def check_copy_is_imported(python: str, tree: Path) -> None:
    code = ("import hfnn, hfnn.pipelines, hfnn.apps.cli; print(hfnn.__file__); print(hfnn.pipelines.__file__); "
            "print(hfnn.apps.cli.__file__)")
    out = subprocess.run([python, "-c", code], cwd=tree, env=test_env(tree), capture_output=True, text=True, check=True)
    files = out.stdout.split()
    stray = [f for f in files if not f.startswith(str(tree))]
    if stray:
        raise SystemExit(f"the copy is not what gets imported: {stray}")


# ------------------------------------------------------------------------------------------------ running tests


def pytest_command(python: str, group: list[str]) -> list[str]:
    return [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *group]


def run_tests(python: str, tree: Path, groups: list[list[str]], timeout: float, env: dict | None = None,
              wrap=None) -> tuple[str, float, str]:
    """Runs the groups one after the other: ("passed" | "failed" | "timeout" | "error", seconds, tail)."""
    start = time.monotonic()
    for group in groups:
        command = pytest_command(python, group)
        if wrap is not None:
            command = wrap(command)
        left = timeout - (time.monotonic() - start)
        try:
            proc = subprocess.run(command, cwd=tree, env=env or test_env(tree), capture_output=True, text=True,
                                  timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - start, f"timeout after {timeout:.0f} s in {' '.join(group)}"
        output = proc.stdout + proc.stderr
        first_error = next((ln for ln in output.splitlines() if ln.startswith("E ")), "")
        tail = (f"{first_error}\n" if first_error else "") + output[-1500:]
        if proc.returncode == 1:
            return "failed", time.monotonic() - start, tail
        if proc.returncode != 0:  # 2: interrupted/collection error, 4: usage, 5: nothing collected
            return ("failed" if proc.returncode == 2 else "error"), time.monotonic() - start, tail
    return "passed", time.monotonic() - start, ""


class BaselineFailed(Exception):
    """The target's tests fail without any mutation: its mutants would all look killed."""


def covered_lines(python: str, tree: Path, target: dict, timeout: float, coverage_path: str | None,
                  workdir: Path) -> tuple[set[int] | None, str, float]:
    """The lines of the target file its tests execute (None when coverage is not available), after
    checking that the unmutated tests pass."""
    env = test_env(tree, coverage_path)
    has_coverage = subprocess.run([python, "-c", "import coverage"], env=env, capture_output=True).returncode == 0
    data = workdir / f"coverage-{target['name']}"
    if data.exists():
        data.unlink()
    env["COVERAGE_FILE"] = str(data)
    wrap = None
    if has_coverage:
        def wrap(command):
            return [command[0], "-m", "coverage", "run", "--append", f"--include=*{Path(target['file']).name}",
                    *command[1:]]
    outcome, seconds, tail = run_tests(python, tree, target["tests"], timeout * 3, env=env, wrap=wrap)
    if outcome != "passed":
        raise BaselineFailed(f"the unmutated tests do not pass ({outcome}): {tail[:300]}")
    if not has_coverage:
        return None, "no coverage module: every line is a candidate", seconds
    report = workdir / f"coverage-{target['name']}.json"
    subprocess.run([python, "-m", "coverage", "json", "-q", "-o", str(report)], cwd=tree, env=env, check=True)
    wanted = os.path.realpath(tree / target["file"])
    for name, info in json.loads(report.read_text())["files"].items():
        if os.path.realpath(tree / name) == wanted:
            return set(info["executed_lines"]), "lines executed by the unmutated tests", seconds
    return set(), "the tests execute no line of the file", seconds


# ------------------------------------------------------------------------------------------------ mutants


def operator_family(name: str) -> str:
    """core/ReplaceBinaryOperator_Add_Mul -> core/ReplaceBinaryOperator (the variants of one site)."""
    head = name.split("_")[0]
    return head


def candidate_sites(tree: Path, target: dict, lines: set[int] | None) -> list[list]:
    """Cosmic-ray's mutation specs of the file, grouped by code site (position and operator family)."""
    from cosmic_ray.commands.init import _all_work_items

    cwd = os.getcwd()
    os.chdir(tree)
    try:
        items = list(_all_work_items([Path(target["file"])], {}))
    finally:
        os.chdir(cwd)
    sites: dict[tuple, list] = {}
    for item in items:
        (spec,) = item.mutations
        if spec.operator_name in SKIPPED_OPERATORS:
            continue
        row = spec.start_pos[0]
        if lines is not None and row not in lines:
            continue
        key = (row, spec.start_pos[1], operator_family(spec.operator_name))
        sites.setdefault(key, []).append(spec)
    return [sites[k] for k in sorted(sites)]


def apply_spec(path: Path, spec) -> tuple[str, str | None]:
    from cosmic_ray.mutating import apply_mutation
    from cosmic_ray.plugins import get_operator

    operator = get_operator(spec.operator_name)(**(spec.operator_args or {}))
    original, mutated = apply_mutation(path, operator, spec.occurrence)
    return original, mutated


def short_diff(before: str, after: str, name: str) -> str:
    lines = [ln.rstrip("\n") for ln in difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                              name, name, n=0)]
    return "\n".join(ln for ln in lines[2:] if not ln.startswith("@@"))


def run_mutant(python, tree, target, path, apply, timeout) -> dict:
    before = path.read_text(encoding="utf-8")
    try:
        after = apply(path, before)
        if after is None or after == before:
            return {"outcome": "not applied", "diff": "", "seconds": 0.0}
        path.write_text(after, encoding="utf-8")
        outcome, seconds, tail = run_tests(python, tree, target["tests"], timeout)
    finally:
        path.write_text(before, encoding="utf-8")
    status = {"passed": "survived", "failed": "killed", "timeout": "killed", "error": "error"}[outcome]
    return {"outcome": status, "how": outcome, "seconds": round(seconds, 1),
            "diff": short_diff(before, after, target["file"]),
            "tail": tail[:200] + " ... " + tail[-400:] if len(tail) > 600 else tail}


def sampled_mutants(tree, target, lines, seed, sample):
    sites = candidate_sites(tree, target, lines)
    rng = random.Random(f"{seed}-{target['name']}")
    chosen = rng.sample(sites, min(sample, len(sites)))
    return len(sites), [rng.choice(site) for site in sorted(chosen, key=lambda s: s[0].start_pos)]


def fixed_apply(edits):
    """Each edit is [regular expression, replacement]: its first match is replaced."""
    import re

    def apply(path, text):
        for pattern, replacement in edits:
            text, count = re.subn(pattern, replacement, text, count=1)
            if not count:
                raise LookupError(f"{path.name}: no match for {pattern!r}: update the fixed mutation")
        return text
    return apply


# ------------------------------------------------------------------------------------------------ main


def summary(results: dict) -> str:
    rows = ["| target | candidate sites | sampled | killed | survived | score |", "|---|---|---|---|---|---|"]
    killed_all = survived_all = 0
    for name, info in results["targets"].items():
        killed = sum(m["outcome"] == "killed" for m in info["mutants"])
        survived = sum(m["outcome"] == "survived" for m in info["mutants"])
        killed_all += killed
        survived_all += survived
        score = f"{100 * killed / (killed + survived):.0f} %" if killed + survived else "-"
        rows.append(f"| {name} | {info['sites']} | {len(info['mutants'])} | {killed} | {survived} | {score} |")
    total = killed_all + survived_all
    rows.append(f"| **all sampled** | | {total} | {killed_all} | {survived_all} | "
                f"**{100 * killed_all / total:.1f} %** |" if total else "| **all sampled** | | 0 | | | - |")
    out = ["\n".join(rows), ""]
    if results["fixed"]:
        out += ["| fixed mutation | file | outcome |", "|---|---|---|"]
        out += [f"| {m['id']} | {m['file']} | {m['outcome']} |" for m in results["fixed"]]
        out.append("")
    survivors = [(name, m) for name, info in results["targets"].items() for m in info["mutants"]
                 if m["outcome"] != "killed"]
    if survivors:
        out.append("Surviving (or erroring) mutants:\n")
        for name, m in survivors:
            out.append(f"- {name}, {m['operator']} line {m['line']} ({m['outcome']}):\n\n```diff\n{m['diff']}\n```")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="interpreter that runs the tests (the project's environment)")
    parser.add_argument("--workdir", default="/tmp/hfnn-mutation")
    parser.add_argument("--coverage-path", default=None, help="folder with the coverage package, if --python lacks it")
    parser.add_argument("--only", nargs="*", default=None, help="target names or fixed-mutation ids to run")
    parser.add_argument("--sample", type=int, default=None, help="sites per target (default: the config's)")
    parser.add_argument("--seed", default=None)
    parser.add_argument("--no-fixed", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no further target after this many minutes (the fixed mutations still run)")
    parser.add_argument("--list", action="store_true", help="show the sampled mutants, run nothing")
    parser.add_argument("--check-fixed", action="store_true", help="only check that the fixed mutations still apply")
    parser.add_argument("--replay", default=None,
                        help="results.json of an earlier run: re-run its surviving mutants only")
    args = parser.parse_args(argv)
    config = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
    seed = args.seed if args.seed is not None else config.get("seed", 0)
    sample = args.sample if args.sample is not None else config.get("sample", 4)
    timeout = float(config.get("timeout_s", 300))
    try:
        os.nice(10)
    except OSError:
        pass
    if args.check_fixed:  # every fixed mutation still applies to the working tree (nothing is written)
        missing = 0
        for fixed in config.get("fixed", []):
            path = REPO / fixed["file"]
            try:
                fixed_apply(fixed["edits"])(path, path.read_text(encoding="utf-8"))
                print(f"applies   {fixed['id']}")
            except LookupError as err:
                missing += 1
                print(f"MISSING   {fixed['id']}: {err}")
        return 1 if missing else 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tree = make_copy(workdir)
    check_copy_is_imported(args.python, tree)
    chosen = set(args.only) if args.only else None
    results = {"seed": seed, "sample": sample, "targets": {}, "fixed": []}
    started = time.monotonic()

    for target in config["target"]:
        if args.replay or (chosen is not None and target["name"] not in chosen):
            continue
        if args.max_minutes and time.monotonic() - started > 60 * args.max_minutes:
            results["targets"][target["name"]] = {"file": target["file"], "sites": 0, "frame": "not run (time)",
                                                  "mutants": []}
            print(f"{target['name']}: not run, --max-minutes reached", flush=True)
            continue
        try:
            lines, frame, base_seconds = covered_lines(args.python, tree, target, timeout, args.coverage_path, workdir)
        except BaselineFailed as err:
            results["targets"][target["name"]] = {"file": target["file"], "sites": 0, "frame": str(err), "mutants": []}
            print(f"{target['name']}: skipped, {err}", flush=True)
            continue
        n_sites, mutants = sampled_mutants(tree, target, lines, seed, sample)
        print(f"[{time.monotonic() - started:6.0f} s] {target['name']}: {n_sites} candidate sites ({frame}; "
              f"tests {base_seconds:.0f} s), {len(mutants)} sampled", flush=True)
        info = results["targets"][target["name"]] = {"file": target["file"], "sites": n_sites, "frame": frame,
                                                      "mutants": []}
        for spec in mutants:
            where = f"{spec.operator_name} line {spec.start_pos[0]}"
            if args.list:
                print("   ", where)
                continue

            def apply(path, text, spec=spec):
                original, mutated = apply_spec(path, spec)
                path.write_text(original, encoding="utf-8")
                return mutated

            record = run_mutant(args.python, tree, target, tree / target["file"], apply, timeout)
            record.update(operator=spec.operator_name, line=spec.start_pos[0], function=spec.definition_name)
            info["mutants"].append(record)
            print(f"    {record['outcome']:<9} {where} ({record['seconds']} s)", flush=True)
            (workdir / "results.json").write_text(json.dumps(results, indent=1))

    if args.replay:  # the surviving mutants of an earlier run, re-applied from their diffs (after new tests)
        earlier = json.loads(Path(args.replay).read_text())
        for name, info in earlier["targets"].items():
            target = next(t for t in config["target"] if t["name"] == name)
            for old in info["mutants"]:
                if old["outcome"] != "survived":
                    continue
                removed = "\n".join(ln[1:] for ln in old["diff"].splitlines() if ln.startswith("-"))
                added = "\n".join(ln[1:] for ln in old["diff"].splitlines() if ln.startswith("+"))

                def apply(path, text, removed=removed, added=added):
                    return text.replace(removed, added, 1) if removed in text else None

                record = run_mutant(args.python, tree, target, tree / target["file"], apply, timeout)
                record.update(operator=old["operator"], line=old["line"], function=old.get("function"))
                results["targets"].setdefault(name, {"file": target["file"], "sites": info["sites"],
                                                     "frame": "replayed survivors",
                                                     "mutants": []})["mutants"].append(record)
                print(f"    replayed {name} {old['operator']} line {old['line']}: {record['outcome']}", flush=True)
        (workdir / "results.json").write_text(json.dumps(results, indent=1))

    if not args.no_fixed and not args.list:
        for fixed in config.get("fixed", []):
            if chosen is not None and fixed["id"] not in chosen:
                continue
            target = {"name": fixed["id"], "file": fixed["file"], "tests": fixed["tests"]}
            try:
                record = run_mutant(args.python, tree, target, tree / fixed["file"], fixed_apply(fixed["edits"]),
                                    timeout)
            except LookupError as err:
                record = {"outcome": "not applied", "diff": "", "tail": str(err), "seconds": 0.0}
            record.update(id=fixed["id"], file=fixed["file"], what=fixed["what"])
            results["fixed"].append(record)
            print(f"[{time.monotonic() - started:6.0f} s] fixed {fixed['id']}: {record['outcome']} "
                  f"({record['seconds']} s)", flush=True)
            (workdir / "results.json").write_text(json.dumps(results, indent=1))

    results["seconds"] = round(time.monotonic() - started)
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    print()
    print(summary(results))
    bad_fixed = [m["id"] for m in results["fixed"] if m["outcome"] != "killed"]
    if bad_fixed:
        print(f"\nfixed mutations not killed: {bad_fixed}")
    return 1 if bad_fixed else 0


if __name__ == "__main__":
    sys.exit(main())
