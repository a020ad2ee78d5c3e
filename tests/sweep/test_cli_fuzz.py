"""Property-based fuzzing of bad input: study files through ``validate`` and ``run``, and random
option values for every command. Never a traceback; bad input exits 2 with a message naming the
file or option; nothing is written.

Derandomized by default (CI reproducible); ``HYPOTHESIS_EXPLORE=1`` draws fresh examples.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sweep.cli import app
from tests.sweep.studies import write_study
from tests.sweep.synthetic_study import write_synthetic_study

runner = CliRunner()

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class ReachedTheRunner(Exception):
    """Raised by the stubbed runner/trainer: the command accepted its input."""


@pytest.fixture
def stubbed(monkeypatch):
    """No study or training ever starts: the runner raises instead, and so does the trainer
    when it loads the data (after resolving the device and seeding torch)."""
    import infovae_core.trainer
    import sweep.run.runner

    def reached(*args, **kwargs):
        raise ReachedTheRunner

    monkeypatch.setattr(sweep.run.runner, "run_study", reached)
    monkeypatch.setattr(infovae_core.trainer, "load_dataset", reached)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    )
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1, 2), result.output


# ------------------------------------------------------------------------------ study files

with tempfile.TemporaryDirectory() as _folder:
    BASE: dict[str, Any] = yaml.safe_load(write_study(Path(_folder), "fuzz").read_text())


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a nested mapping/list document."""
    found = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*prefix, index))
            found += _paths(child, (*prefix, index))
    return found


PATHS = _paths(BASE)


def _at(document: Any, path: tuple) -> Any:
    for part in path:
        document = document[part]
    return document


MAPPINGS = [()] + [p for p in PATHS if isinstance(_at(BASE, p), dict)]

HUGE = st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1, 1e308, -1e308])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "yes", "nan", "-.inf", "1e-3", "~", "0x1F", "[1, 2", "{a: 1}"]),
)
# Search distributions (sweep.space) with any bounds, steps and choices.
DISTRIBUTIONS = st.one_of(
    st.builds(
        lambda kind, bounds: {kind: bounds},
        st.sampled_from(["uniform", "log_uniform", "int"]),
        st.dictionaries(st.sampled_from(["low", "high", "step", "log"]), SCALARS, max_size=4),
    ),
    st.builds(
        lambda kind, values: {kind: values},
        st.sampled_from(["choice", "grid"]),
        st.lists(SCALARS, max_size=4),
    ),
)
VALUES = st.recursive(
    st.one_of(SCALARS, DISTRIBUTIONS),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_documents(draw) -> Any:
    """The tiny study with one to three mutations drawn from the schema's own keys."""
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "unknown", "deep"]))
        if kind in ("set", "delete"):
            path = draw(st.sampled_from(PATHS))
            try:
                parent = _at(document, path[:-1])
                if kind == "set":
                    parent[path[-1]] = draw(VALUES)
                else:
                    del parent[path[-1]]
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced the path
        else:
            path = draw(st.sampled_from(MAPPINGS))
            try:
                parent = _at(document, path)
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(parent, dict):
                continue
            if kind == "unknown":
                parent[draw(st.text(min_size=1, max_size=12))] = draw(VALUES)
            else:
                depth = draw(st.integers(20, 200))
                nested: Any = draw(SCALARS)
                for _ in range(depth):
                    nested = {"a": nested} if draw(st.booleans()) else [nested]
                key = draw(st.sampled_from(sorted(parent, key=str) or ["x"]))
                parent[key] = nested
    return document


def _dump(document: Any) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode("utf-8")


@st.composite
def study_bytes(draw) -> bytes:
    """Bytes of a study file: a mutated document, a non-mapping root, or damaged text."""
    kind = draw(st.sampled_from(["mutated", "root", "bytes", "text", "inserted", "nesting"]))
    if kind == "mutated":
        return _dump(draw(mutated_documents()))
    if kind == "root":
        return _dump(draw(st.one_of(SCALARS, st.lists(VALUES, max_size=3))))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "nesting":  # deeper than any recursive parser's stack
        depth = draw(st.integers(500, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return ("name: deep\narms: " + opener * depth + "1" + closer * depth).encode()
    text = _dump(BASE)
    at = draw(st.integers(0, len(text)))
    junk = draw(
        st.sampled_from(
            [
                b"\x00",
                b"\xff\xfe",
                b"\x1b[31m",
                b"\t",
                b"\r",
                b"&a *a",
                b"!!python/object:os.system",
            ]
        )
    )
    return text[:at] + junk + text[at:]


def _names_the_file(result, path: Path) -> None:
    output = result.output.replace("\n", "")
    assert str(path) in output, result.output
    assert "invalid study" in output or f"{path}:" in output, result.output


@FUZZ
@given(data=study_bytes())
def test_validate_refuses_a_fuzzed_study_file_with_a_message_and_writes_nothing(stubbed, data):
    with _workdir() as work:
        path = work / "study.yaml"
        path.write_bytes(data)
        result = runner.invoke(app, ["validate", str(path)])
        _no_traceback(result)
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            _names_the_file(result, path)
        assert sorted(p.name for p in work.iterdir()) == ["study.yaml"]


@settings(FUZZ, max_examples=15)
@given(data=study_bytes())
def test_run_refuses_a_fuzzed_study_file_before_starting_anything(stubbed, data):
    with _workdir() as work:
        path = work / "study.yaml"
        path.write_bytes(data)
        assume(runner.invoke(app, ["validate", str(path)]).exit_code == 2)  # bad files only
        result = runner.invoke(app, ["run", str(path), "--results", str(work / "results")])
        _no_traceback(result)
        assert result.exit_code == 2, result.output
        _names_the_file(result, path)
        assert sorted(p.name for p in work.iterdir()) == ["study.yaml"]


# ------------------------------------------------------------------------------ arguments

WORDS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "-inf",
            "1.5",
            "99999999999999999999999",
            "",
            "x",
            "1,2,,x",
            "mnist",
            "cuda",
            "none",
            "--",
            "-h",
            "\x00",
        ]
    ),
    st.integers().map(str),
    st.floats().map(str),
)
TRAIN_OPTIONS = [
    "--dataset",
    "--objective",
    "--alpha",
    "--lambda",
    "--divergence",
    "--kernel",
    "--scales",
    "--encoder",
    "--decoder",
    "--width",
    "--depth",
    "--likelihood",
    "--latent-dim",
    "--epochs",
    "--batch-size",
    "--lr",
    "--seed",
    "--binarize",
    "--train-size",
    "--device",
    "--iwae-samples",
]
FOLDER_OPTIONS = {
    "show": ["--top"],
    "report": ["--out"],
    "export": ["--format", "--out", "--top"],
    "summary": ["--by", "--metric", "--phase", "--csv"],
    "resume": ["--address", "--max-concurrent", "--storage"],
    "ls": [],
}
PATH_OPTIONS = {"--out", "--csv"}


@pytest.fixture(scope="module")
def study_template(tmp_path_factory) -> Path:
    return write_synthetic_study(
        tmp_path_factory.mktemp("fuzz") / "results" / "synthetic",
        n_search=3,
        n_seeds=2,
        n_epochs=3,
        artifacts=False,
    )


def _printable(text: str) -> bool:
    return "\x00" not in text  # the OS refuses NUL in argv; CliRunner does not


@FUZZ
@given(pairs=st.lists(st.tuples(st.sampled_from(TRAIN_OPTIONS), WORDS), min_size=1, max_size=4))
def test_train_refuses_fuzzed_option_values_with_exit_2_naming_the_option(stubbed, pairs):
    assume(all(_printable(value) for _, value in pairs))
    argv = ["train", "--epochs", "1"]
    for option, value in pairs:
        argv += [option, value]
    try:
        result = runner.invoke(app, argv, catch_exceptions=False)
    except ReachedTheRunner:
        return  # the values were valid: training would start
    _no_traceback(result)
    assert result.exit_code == 2, result.output
    assert result.output.strip(), "refused without a message"


@FUZZ
@given(
    command=st.sampled_from(sorted(FOLDER_OPTIONS)),
    folder_kind=st.sampled_from(["study", "missing", "file", "empty", "root"]),
    picks=st.lists(st.tuples(st.integers(0, 5), WORDS), max_size=3),
)
def test_folder_commands_refuse_fuzzed_arguments_and_write_nothing(
    stubbed, study_template, command, folder_kind, picks
):
    options = FOLDER_OPTIONS[command]
    assume(all(_printable(value) for _, value in picks))
    with _workdir() as work:
        root = work / "results"
        shutil.copytree(study_template.parent, root)
        (work / "plain.txt").write_text("not a folder")
        (work / "empty").mkdir()
        folder = {
            "study": root / "synthetic",
            "missing": work / "missing",
            "file": work / "plain.txt",
            "empty": work / "empty",
            "root": root,
        }[folder_kind]
        argv = [command, str(folder)]
        for index, value in picks:
            if not options:
                argv.append(value)  # a stray argument
                continue
            option = options[index % len(options)]
            argv += [option, str(work / "out" / value) if option in PATH_OPTIONS else value]
        before = _hashes(work)
        try:
            result = runner.invoke(app, argv, catch_exceptions=False)
        except ReachedTheRunner:
            assert command == "resume" and folder_kind == "study"
            return
        _no_traceback(result)
        if result.exit_code == 2:
            assert result.output.strip(), "refused without a message"
            assert _hashes(work) == before


# ------------------------------------------------------------------------------ regressions
# Bugs the fuzzing found, each pinned by a named test.


@pytest.mark.parametrize("brackets", [("[", "]"), ("{a: ", "}")])
def test_validate_and_run_refuse_a_deeply_nested_study_without_a_traceback(
    stubbed, tmp_path, brackets
):
    """PyYAML recurses once per nesting level: 1,000 levels raised RecursionError."""
    opener, closer = brackets
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\narms: " + opener * 1000 + "1" + closer * 1000)
    for argv in (["validate", str(path)], ["run", str(path), "--results", str(tmp_path / "r")]):
        result = runner.invoke(app, argv)
        _no_traceback(result)
        assert result.exit_code == 2
        assert "nested too deeply" in result.output
        _names_the_file(result, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.yaml"]


def test_summary_of_a_study_with_a_parquet_list_parameter_prints_the_table(tmp_path):
    """A list-valued parameter stored as a Parquet list column (as pandas writes one; the store
    writes JSON text) made ``summary`` crash: numpy arrays are unhashable."""
    folder = write_synthetic_study(tmp_path / "synthetic", n_search=3, n_seeds=2, artifacts=False)
    trials = pd.read_parquet(folder / "trials.parquet")
    trials["param.objective.scales"] = [[1.0, 2.0]] * len(trials)
    trials.to_parquet(folder / "trials.parquet")

    result = runner.invoke(app, ["summary", str(folder)])

    _no_traceback(result)
    assert result.exit_code == 0, result.output
    assert "mean [95% t interval]" in result.output


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--device", "tpu"], "train.device"),  # was a RuntimeError traceback from torch.device
        (["--scales", "1,x"], "--scales"),  # was "could not convert string to float: 'x'"
        (["--width", "99999999999999999999999"], "--width"),  # was a C++ stack trace from torch
        (["--seed", "99999999999999999999999"], "--seed"),  # was an OverflowError traceback
        (["--iwae-samples", "99999999999999999999"], "--iwae-samples"),  # ran out of memory
    ],
)
def test_train_refuses_values_that_reached_torch_naming_the_option(stubbed, argv, says):
    result = runner.invoke(app, ["train", *argv], catch_exceptions=False)
    _no_traceback(result)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output


def test_a_study_with_an_unknown_device_is_refused_at_validation(tmp_path):
    path = write_study(tmp_path, "device")
    path.write_text(path.read_text().replace("batch_size: 256", "batch_size: 256, device: tpu"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "train.device" in result.output and "tpu" in result.output


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        # int() refuses more than 4,300 digits: a ValueError traceback from PyYAML
        ("trials_per_arm: 2", "trials_per_arm: " + "9" * 5000, "4300 digits"),
        # PyYAML builds a date from what looks like one: a ValueError traceback
        ("name: big", "name: big\ndescription: 2024-13-45", "month must be in 1..12"),
        # float(10**400) overflowed inside the TrialConfig corner check
        ("objective.alpha: 0,", "objective.alpha: 1" + "0" * 400 + ",", "float range"),
    ],
)
def test_validate_refuses_scalars_yaml_or_floats_cannot_hold(stubbed, tmp_path, old, new, says):
    path = write_study(tmp_path, "big")
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    result = runner.invoke(app, ["validate", str(path)])
    _no_traceback(result)
    assert result.exit_code == 2, result.output
    assert says in result.output
    _names_the_file(result, path)
