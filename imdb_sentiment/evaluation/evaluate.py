"""The ``eval`` workflow: score a labelled split or file; write metrics, predictions, a report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.atomic import write_json
from imdb_sentiment.data.storage import check_writable
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.metrics.classification import compute_metrics, predictions_frame
from imdb_sentiment.text import label_name

if TYPE_CHECKING:
    import pandas as pd

    from imdb_sentiment.inference.predictor import Predictor

Log = Callable[[str], None]

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"


@dataclass(frozen=True)
class EvalOptions:
    """What ``eval`` reads and what it writes; the defaults are the CLI's.

    ``file`` (a labelled table) wins over ``split`` (a prepared split of ``data_dir``, by
    default the run's own data). ``long_reviews="chunks"`` reads long reviews whole in
    overlapping windows. ``report`` adds intervals, slices, calibration, the worst errors,
    plots, ``report.md`` and a refreshed model card; ``report_to`` also logs them to W&B.
    """

    split: str = "test"
    file: str | Path | None = None
    data_dir: str | Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_samples: int | None = None
    batch_size: int = 64
    long_reviews: str = "truncate"
    report: bool = True
    robustness: bool = False
    robustness_samples: int = 200
    report_to: str = "none"
    output_dir: str | Path | None = None
    """Where results go instead of ``<run>/eval/<name>/`` (for a run on a read-only mount)."""

    @property
    def name(self) -> str:
        """The results folder under ``<run>/eval/``: the split, or ``file-<stem>``."""
        return f"file-{Path(self.file).stem}" if self.file is not None else self.split

    @property
    def source(self) -> str:
        """What was evaluated, as ``metrics.json`` and the model card show it."""
        return str(self.file) if self.file is not None else f"{self.split} split"


@dataclass
class EvalResult:
    """What ``eval`` measured and where it wrote it."""

    name: str
    metrics: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


@dataclass
class _Scored:
    """One model pass over the evaluated reviews."""

    predictions: pd.DataFrame  # text, label, predicted, probability, n_tokens, truncated[, rating]
    labels: np.ndarray
    probs: np.ndarray  # calibrated, (n, 2)
    raw: np.ndarray  # at T = 1, (n, 2)
    metrics: dict[str, Any]


def evaluate(
    run: str | Path, options: EvalOptions | None = None, *, log: Log = lambda _m: None
) -> EvalResult:
    """Evaluate a trained run on a prepared split or a labelled file; write metrics and predictions.

    Results go to ``<run>/eval/<name>/`` (see :attr:`EvalOptions.name`); ``run`` may also be a
    bare model folder.
    """
    from imdb_sentiment.inference.predictor import Predictor

    opts = options or EvalOptions()
    if opts.robustness_samples < 1:
        raise ConfigError("--robustness-samples must be at least 1")
    run_path = Path(run)
    # A run directory or a bare model folder: results go beside what was evaluated, unless
    # told otherwise. Checked before the model loads: a read-only run fails in one line.
    out_dir = Path(opts.output_dir) if opts.output_dir else run_path / "eval" / opts.name
    check_writable(out_dir, hint="pass --output-dir DIR to write the results elsewhere")
    predictor = Predictor.from_path(
        run_path, batch_size=opts.batch_size, long_reviews=opts.long_reviews
    )
    scored = _score(predictor, _labelled_frame(run_path, opts), opts)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds_path = out_dir / PREDICTIONS_FILE
    _write_parquet(scored.predictions, preds_path)
    files = [preds_path]
    if opts.robustness:
        files.append(_robustness(predictor, scored, opts.robustness_samples, out_dir, log))
    if opts.report:
        title = f"{run_path.name} on {Path(opts.file).name if opts.file else opts.source}"
        files += _report(predictor, scored, out_dir, title, opts.report_to, log)
    scored.metrics = null_undefined(scored.metrics, scored.labels, log)
    metrics_path = out_dir / METRICS_FILE
    write_json(metrics_path, scored.metrics)
    if opts.report and opts.output_dir is None:
        files.append(_refresh_model_card(predictor, run_path))
    elif opts.report:
        log("model card not refreshed: the results were written outside the run")
    return EvalResult(
        name=opts.name, metrics=scored.metrics, out_dir=out_dir, files=[metrics_path, *files]
    )


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write beside ``path`` and rename: a disk that fills keeps the earlier file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # pyarrow drops the path
    finally:
        tmp.unlink(missing_ok=True)


def null_undefined(metrics: dict[str, Any], labels: np.ndarray, log: Log) -> dict[str, Any]:
    """``metrics`` with every NaN or infinite value as ``None`` (JSON ``null``, which strict
    parsers accept, unlike ``NaN``), and an ``undefined`` entry saying which and why."""
    undefined: list[str] = []

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            undefined.append(key)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, key) for v in value]
        return value

    cleaned: dict[str, Any] = clean(metrics, "")
    if undefined:
        classes = np.unique(labels)
        reason = (
            f"every evaluated review is {label_name(int(classes[0]))}; these metrics need "
            "both classes"
            if len(classes) == 1
            else "not defined for these reviews"
        )
        cleaned["undefined"] = {"metrics": undefined, "reason": reason}
        log(f"{', '.join(undefined)}: undefined ({reason}); written as null")
    return cleaned


def _labelled_frame(run_path: Path, opts: EvalOptions) -> pd.DataFrame:
    """The reviews to evaluate (a seeded sample of ``max_samples`` when given)."""
    from imdb_sentiment.data.files import read_labelled_file
    from imdb_sentiment.data.splits import SPLITS, load_split
    from imdb_sentiment.runs import run_data_dir

    if opts.file is not None:
        frame = read_labelled_file(
            opts.file, text_column=opts.text_column, label_column=opts.label_column
        )
    else:
        if opts.split not in SPLITS:
            raise ConfigError(f"unknown split '{opts.split}'; choose one of {', '.join(SPLITS)}")
        frame = load_split(opts.data_dir or run_data_dir(run_path), opts.split)
    if opts.max_samples is not None and opts.max_samples < len(frame):
        frame = frame.sample(n=opts.max_samples, random_state=0).sort_index()
    return frame


def _score(predictor: Predictor, frame: pd.DataFrame, opts: EvalOptions) -> _Scored:
    """One model pass: calibrated and raw probabilities, metrics and the predictions table."""
    texts = frame["text"].tolist()
    labels = frame["label"].to_numpy()
    settings = predictor.settings
    probs_at, enc = predictor.scores(texts)
    probs, raw = probs_at(settings.temperature), probs_at(1.0)
    metrics = compute_metrics(labels, probs)
    metrics["source"] = opts.source
    metrics.update(
        {
            "truncation": settings.truncation,
            "max_length": settings.max_length,
            "head_tokens": settings.head_tokens,
            "long_reviews": opts.long_reviews,
        }
    )
    extra: dict[str, Any] = {"n_tokens": enc.n_tokens, "truncated": enc.truncated}
    if "rating" in frame.columns:
        extra["rating"] = frame["rating"].to_numpy()
    return _Scored(predictions_frame(texts, labels, probs, extra), labels, probs, raw, metrics)


def window_budget(predictor: Predictor) -> int:
    """Tokens of review text one window holds (max length less the special tokens)."""
    from imdb_sentiment.modeling.tokenization import special_tokens

    max_length = predictor.settings.max_length
    model_max = getattr(predictor.tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        max_length = model_max
    prefix, suffix = special_tokens(predictor.tokenizer)
    return int(max_length - len(prefix) - len(suffix))


def _robustness(
    predictor: Predictor, scored: _Scored, samples: int, out_dir: Path, log: Log
) -> Path:
    from imdb_sentiment.evaluation.report import ROBUSTNESS_FILE
    from imdb_sentiment.evaluation.robustness import cases_frame, run_checks

    texts = scored.predictions["text"].tolist()
    log(f"robustness: generating checks from {min(samples, len(texts)):,} reviews")
    summary, cases = run_checks(
        lambda t: predictor.predict_proba(t)[:, 1],
        texts,
        scored.labels.tolist(),
        samples=samples,
        original=scored.probs[:, 1].tolist(),
    )
    path = out_dir / ROBUSTNESS_FILE
    cases_frame(cases).to_csv(path, index=False)
    summary["file"] = path.name
    scored.metrics["robustness"] = summary
    return path


def _report(
    predictor: Predictor, scored: _Scored, out_dir: Path, title: str, report_to: str, log: Log
) -> list[Path]:
    from imdb_sentiment.evaluation.report import ReportData, report_metrics, write_report
    from imdb_sentiment.tracking import wandb_eval_run

    preds = scored.predictions
    data = ReportData(
        labels=scored.labels,
        positive=scored.probs[:, 1],
        uncalibrated=scored.raw[:, 1],
        n_tokens=preds["n_tokens"].tolist(),
        budget=window_budget(predictor),
        ratings=preds["rating"].to_numpy() if "rating" in preds.columns else None,
        temperature=predictor.settings.temperature,
        long_reviews=scored.metrics["long_reviews"],
    )
    scored.metrics.update(report_metrics(data))
    with wandb_eval_run(out_dir, title, report_to, log):
        return write_report(out_dir, preds, data, scored.metrics, title, log=log)


def _refresh_model_card(predictor: Predictor, run_path: Path) -> Path:
    """Rewrite the model card so it lists this result beside the earlier ones."""
    from imdb_sentiment.model_card import write_model_card
    from imdb_sentiment.modeling.loading import find_model_dir

    model_dir = predictor.model_dir or find_model_dir(run_path)
    run_dir = model_dir.parent if (model_dir.parent / "config.yaml").is_file() else None
    return write_model_card(model_dir, run_dir)
