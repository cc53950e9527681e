"""File-system, permission and input faults: each made real where this machine allows.

A read-only folder is a chmod for an ordinary user; root ignores permission bits, so for root
it is a read-only bind mount. A full disk is a small tmpfs (root only). Unreadable files are
mode 0600 files owned by someone else: for root, the check runs with another effective uid.
Each fault is skipped, with the reason, where the machine cannot make it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fault_tools
import pandas as pd
import pytest
from conftest import synthetic_frame
from fault_tools import IS_ROOT, as_other_user, fill
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.data.storage import (
    check_free_space,
    check_writable,
    os_error_message,
    share_like_umask,
)
from imdb_sentiment.errors import DataError, ModelError, StorageError

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line(result) -> str:
    """The error line, checked to be the only error and free of a traceback."""
    text = result.output.strip()
    assert "Traceback" not in text, text
    assert "error:" in text, text
    message = text[text.rindex("error:") :]
    assert "\n" not in message, message
    return message


@contextlib.contextmanager
def _skip_unavailable() -> Iterator[None]:
    try:
        yield
    except fault_tools.Unavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` (and everything under it) read-only for this process, then undo it."""
    with _skip_unavailable(), fault_tools.read_only(folder):
        yield


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (root only), removed afterwards."""
    with _skip_unavailable(), fault_tools.tiny_disk(folder, size) as disk:
        yield disk


@pytest.fixture()
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the shared run, free to be made read-only or damaged (without earlier evals)."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("eval"))
    return copy


# ------------------------------------------------------------------------------ the library


def test_os_errors_become_one_line_naming_the_path() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out.csv")
    assert os_error_message(full).startswith("/data/out.csv: no space left on the device;")
    assert "kept" in os_error_message(full)
    ro = OSError(errno.EROFS, "Read-only file system", "/runs/x")
    assert os_error_message(ro) == "/runs/x: read-only file system; choose a writable location"
    blocked = NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/b")
    assert "a file is in the way" in os_error_message(blocked)


def test_check_writable_and_free_space(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "deeper")  # missing folders are fine: they will be made
    assert not list(tmp_path.iterdir())  # the probe leaves nothing behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "out")
    with pytest.raises(StorageError, match="not enough space"):
        check_free_space(tmp_path, 1 << 60, "everything")


def test_check_writable_sees_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder), pytest.raises(StorageError, match=r"cannot write to .*ro"):
        check_writable(folder / "sub")


def test_share_like_umask(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # what safetensors leaves
    old = os.umask(0o027)
    try:
        share_like_umask(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o640


def test_trained_model_files_follow_the_umask(trained_run: Path) -> None:
    # Trained under the test process's umask: every model file, the weights included, must
    # carry the mode that umask gives, or another user (a container's uid) cannot read it.
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (trained_run / "model").iterdir()
        if p.is_file()
    }
    assert modes["model.safetensors"] == 0o666 & ~mask, modes
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_unreadable_weights_name_the_real_cause(trained_run: Path) -> None:
    from imdb_sentiment.modeling.loading import find_model_dir

    # A folder every user can enter (pytest's own temp folders are 0700).
    root = Path(tempfile.mkdtemp(prefix="imdb-perm-"))
    try:
        root.chmod(0o755)
        model = root / "model"
        shutil.copytree(trained_run / "model", model)
        model.chmod(0o755)
        for p in model.iterdir():
            p.chmod(0o644)
        (model / "model.safetensors").chmod(0o600 if IS_ROOT else 0o000)
        with as_other_user(), pytest.raises(ModelError) as refused:
            find_model_dir(model)
        message = str(refused.value)
        assert "permission denied" in message and "model.safetensors" in message
        assert "chmod a+r" in message and "No such file" not in message
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------- read-only and missing


def test_eval_on_a_read_only_run_refuses_before_scoring(
    run_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.inference import predictor

    def no_load(*_a, **_k):
        raise AssertionError("the model was loaded before the destination was checked")

    with read_only(run_copy):
        with monkeypatch.context() as m:
            m.setattr(predictor.Predictor, "from_path", no_load)
            refused = invoke("eval", str(run_copy), "--split", "validation", "--no-report")
        assert refused.exit_code == StorageError.exit_code
        message = one_line(refused)
        assert "read-only" in message and "--output-dir" in message
        assert not (run_copy / "eval").exists()
        out = tmp_path / "results"
        done = invoke(
            "eval",
            str(run_copy),
            "--split",
            "validation",
            "--max-samples",
            "20",
            "--output-dir",
            str(out),
        )
        assert done.exit_code == 0, done.output
        assert "model card not refreshed" in done.output
    assert json.loads((out / "metrics.json").read_text())["n"] == 20


def test_export_on_a_read_only_run_refuses_before_loading(run_copy: Path) -> None:
    pytest.importorskip("onnxruntime")
    with read_only(run_copy):
        refused = invoke("export", str(run_copy), "--max-samples", "5")
    assert refused.exit_code == StorageError.exit_code
    assert "read-only" in one_line(refused)
    assert not (run_copy / "model" / "onnx").exists()


def test_predict_output_checks_its_folder_first(trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    blocked = invoke(
        "predict",
        "--model",
        str(trained_run),
        "--output",
        str(tmp_path / "a-file" / "out.csv"),
        "great film",
    )
    assert blocked.exit_code == StorageError.exit_code
    assert "is a file, not a folder" in one_line(blocked)
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        refused = invoke(
            "predict", "--model", str(trained_run), "--output", str(ro / "out.csv"), "great film"
        )
    assert refused.exit_code == StorageError.exit_code and "--output" in one_line(refused)
    made = invoke(
        "predict",
        "--model",
        str(trained_run),
        "--output",
        str(tmp_path / "new" / "folder" / "out.csv"),
        "great film",
    )
    assert made.exit_code == 0, made.output
    assert len(pd.read_csv(tmp_path / "new" / "folder" / "out.csv")) == 1


def test_predict_output_on_a_full_disk_keeps_the_old_file(
    trained_run: Path, tmp_path: Path
) -> None:
    with tiny_disk(tmp_path / "disk", "256k") as disk:
        old = disk / "out.csv"
        old.write_text("text,label\nearlier,positive\n")
        fill(disk)
        result = invoke(
            "predict",
            "--model",
            str(trained_run),
            "--output",
            str(old),
            "--overwrite",
            *(["a long enough review of a great film " * 40] * 20),
        )
        assert result.exit_code == StorageError.exit_code, result.output
        message = one_line(result)
        assert "no space left" in message and str(old) in message
        assert old.read_text() == "text,label\nearlier,positive\n"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "out.csv"]


def test_download_checks_its_destination_first(synthetic_source: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        refused = invoke(
            "download", "--source", str(synthetic_source), "--output", str(ro / "imdb")
        )
    assert refused.exit_code == StorageError.exit_code
    assert "read-only" in one_line(refused) or "permission denied" in one_line(refused)
    (tmp_path / "a-file").write_text("x")
    blocked = invoke(
        "download", "--source", str(synthetic_source), "--output", str(tmp_path / "a-file" / "imdb")
    )
    assert blocked.exit_code == StorageError.exit_code


def test_download_onto_a_small_disk_keeps_the_old_data(
    synthetic_source: Path, prepared_data: Path, tmp_path: Path
) -> None:
    with tiny_disk(tmp_path / "disk", "512k") as disk:
        shutil.copytree(prepared_data, disk / "imdb")
        before = (disk / "imdb" / "manifest.json").read_text()
        result = invoke(
            "download", "--source", str(synthetic_source), "--output", str(disk / "imdb"), "--force"
        )
        assert result.exit_code == StorageError.exit_code, result.output
        assert "not enough space" in one_line(result)
        assert (disk / "imdb" / "manifest.json").read_text() == before
        assert sorted(p.name for p in disk.iterdir()) == ["imdb"]


def test_train_into_a_read_only_folder_is_one_line(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    ro = tmp_path / "runs"
    ro.mkdir()
    with read_only(ro):
        result = invoke(
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(prepared_data),
            "--output-dir",
            str(ro),
            "--run-name",
            "x",
            "--max-length",
            "32",
            "--epochs",
            "1",
            "--report-to",
            "none",
        )
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "x" not in os.listdir(ro)
    one_line(result)


# ------------------------------------------------------------------- inputs that slipped past


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.drop(columns=["label"]), "no 'label' column"),
        (lambda f: f.assign(label=[2] * len(f)), "must hold 0 (negative) or 1 (positive)"),
    ],
)
def test_prepared_data_with_bad_labels_fails_before_a_run_exists(
    change, reason: str, prepared_data: Path, tiny_model: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(prepared_data, data)
    change(pd.read_parquet(data / "train.parquet")).to_parquet(data / "train.parquet")
    result = invoke(
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(data),
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        "bad",
        "--report-to",
        "none",
    )
    assert result.exit_code == DataError.exit_code
    message = one_line(result)
    assert reason in message and "train.parquet" in message
    # Nothing was claimed, so nothing can be offered for --resume.
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "model.safetensors is damaged: truncated"),
        ("settings-json", "imdb_sentiment.json is not valid JSON"),
        ("settings-list", "imdb_sentiment.json holds list"),
        ("settings-type", "max_length must be a positive number"),
        ("status", "status.json is damaged"),
    ],
)
def test_damaged_run_files_are_one_line_errors(damage: str, reason: str, run_copy: Path) -> None:
    model = run_copy / "model"
    if damage == "truncate":
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "settings-json":
        (model / "imdb_sentiment.json").write_text('{"max_length": ')
    elif damage == "settings-list":
        (model / "imdb_sentiment.json").write_text("[1, 2]")
    elif damage == "settings-type":
        (model / "imdb_sentiment.json").write_text('{"max_length": "long"}')
    else:
        shutil.rmtree(model)
        (run_copy / "status.json").write_text('{"state": ')
    result = invoke("predict", "--model", str(run_copy), "great film")
    assert result.exit_code == ModelError.exit_code
    assert reason in one_line(result)


def test_corrupt_latest_pointer_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "LATEST").write_bytes(b"\xff\xfe\x00garbage")
    result = invoke("predict", "great film")
    assert result.exit_code != 0 and "LATEST" in one_line(result)


def test_eval_of_one_class_writes_null_and_says_why(trained_run: Path, tmp_path: Path) -> None:
    frame = synthetic_frame(30, seed=5)
    path = tmp_path / "positive.csv"
    frame[frame["label"] == 1].to_csv(path, index=False)
    out = tmp_path / "out"
    result = invoke("eval", str(trained_run), "--file", str(path), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "written as null" in result.output

    def no_nan(name: str) -> None:
        raise AssertionError(f"bare {name} in metrics.json")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=no_nan)
    assert metrics["roc_auc"] is None
    assert "roc_auc" in metrics["undefined"]["metrics"]
    assert "every evaluated review is positive" in metrics["undefined"]["reason"]


def test_read_fraction_uses_the_cut_the_encoder_really_made(tiny_model: Path) -> None:
    from imdb_sentiment.modeling.loading import load_tokenizer
    from imdb_sentiment.modeling.tokenization import encode

    tok = load_tokenizer(str(tiny_model))  # model_max_length 512
    review = " ".join(["great film"] * 400)  # 800 tokens
    # A saved max length above the encoder's: the cut is at 512, not 1000.
    enc = encode(tok, [review], max_length=1000)
    assert len(enc.input_ids[0]) == 512 and enc.truncated == [True]
    assert enc.read_fraction(0, 1000) == pytest.approx(510 / 800)


def test_invisible_only_text_is_empty_and_cleaning_stays_idempotent() -> None:
    from imdb_sentiment.text import clean_text

    assert clean_text("\u200b\u200c\u200d\u2060\ufeff\u00ad \u3164") == ""
    assert clean_text("great\u200b film<\u200bbr>ok") == "great film ok"
    assert clean_text("and \x96 wow") == "and wow"  # cp1252 dashes IMDB holds as C1 controls
    for raw in ("a\u200bb<br/>c", "<<br>br>", "x\u200d\u200d<br\u200b/>y", "\x85\x96z"):
        once = clean_text(raw)
        assert clean_text(once) == once


def test_predict_refuses_an_invisible_only_review(trained_run: Path) -> None:
    result = invoke("predict", "--model", str(trained_run), "\u200b\u200b")
    assert result.exit_code == DataError.exit_code and "empty" in one_line(result)


# ------------------------------------------------------------- train: checks before the work


@contextlib.contextmanager
def small_disk(folder: Path, free: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A disk with about ``free`` bytes: a real tmpfs for root, else the free-space probe
    patched to say so (the check reads it; the write test still really writes)."""
    if IS_ROOT and shutil.which("mount") is not None:
        with tiny_disk(folder, f"{free // 1024}k") as disk:
            yield disk
        return
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr("imdb_sentiment.data.storage.free_bytes", lambda _f: free)
    yield folder


def test_train_refuses_a_disk_too_small_before_tokenizing(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.training.lifecycle import pretrained_weights_bytes

    weights = pretrained_weights_bytes(str(tiny_model))
    assert weights == (tiny_model / "model.safetensors").stat().st_size
    # Room for the final model and a checkpoint or two, not for the 3 kept at once (10x).
    with small_disk(tmp_path / "disk", 6 * weights, monkeypatch) as disk:
        result = invoke(
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(prepared_data),
            "--output-dir",
            str(disk / "runs"),
            "--run-name",
            "x",
            "--max-length",
            "32",
            "--epochs",
            "1",
            "--report-to",
            "none",
        )
        assert result.exit_code == StorageError.exit_code, result.output
        line = one_line(result)
        assert "not enough space for the model and 3 checkpoints" in line, line
        assert "tokenizing" not in result.output
        assert list(disk.iterdir()) == []  # not even the runs folder


def test_train_checks_the_runs_folder_can_be_written_first(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    result = invoke(
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared_data),
        "--output-dir",
        str(tmp_path / "a-file" / "runs"),
        "--run-name",
        "x",
        "--max-length",
        "32",
        "--epochs",
        "1",
        "--report-to",
        "none",
    )
    assert result.exit_code == StorageError.exit_code, result.output
    assert "is a file, not a folder; choose another --output-dir" in one_line(result)
    assert "tokenizing" not in result.output


def test_checkpoint_files_follow_the_umask(trained_run: Path) -> None:
    # A checkpoint must be readable by whoever may read the run, to resume or inspect it.
    mask = os.umask(0o022)
    os.umask(mask)
    checkpoints = sorted((trained_run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    modes = {
        f"{p.parent.name}/{p.name}": stat.S_IMODE(p.stat().st_mode)
        for c in checkpoints
        for p in c.iterdir()
        if p.is_file()
    }
    assert set(modes.values()) == {0o666 & ~mask}, modes


def test_the_fault_record_makes_faults_with_the_tests_helpers() -> None:
    import fault_injection

    for name in ("read_only", "tiny_disk", "fill", "as_other_user", "Unavailable"):
        assert getattr(fault_injection, name) is getattr(fault_tools, name), name
