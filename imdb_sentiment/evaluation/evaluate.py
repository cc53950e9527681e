"""The ``eval`` workflow: score a labelled split or file; write metrics, predictions, a report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.atomic import write_json
from imdb_sentiment.errors import DataError
from imdb_sentiment.metrics.classification import compute_metrics, predictions_frame


@dataclass
class EvalResult:
    """What ``eval`` measured and where it wrote it."""

    name: str
    metrics: dict[str, Any]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def evaluate(
    run: str | Path,
    *,
    split: str = "test",
    file: str | Path | None = None,
    data_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_samples: int | None = None,
    batch_size: int = 64,
    long_reviews: str = "truncate",
    report: bool = True,
    robustness: bool = False,
    robustness_samples: int = 200,
    report_to: str = "none",
    log: Callable[[str], None] = lambda _m: None,
) -> EvalResult:
    """Evaluate a trained run on a prepared split or a labelled file; write metrics and predictions.

    Results go to ``<run>/eval/<name>/`` where name is the split or the file's stem. With
    ``report`` (the default) they include bootstrap intervals, slices by length and rating,
    calibration, the worst errors, PNG plots and ``report.md``, and the model card is refreshed.
    ``long_reviews="chunks"`` reads long reviews whole in overlapping windows.
    """
    from imdb_sentiment.data import prepare as data_mod
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.runs import run_data_dir

    if robustness_samples < 1:
        raise DataError("--robustness-samples must be at least 1")
    run_path = Path(run)
    predictor = Predictor.from_path(run_path, batch_size=batch_size, long_reviews=long_reviews)
    if file is not None:
        frame = data_mod.read_labelled_file(file, text_column=text_column,
                                            label_column=label_column)
        name = f"file-{Path(file).stem}"
    else:
        if split not in data_mod.SPLITS:
            raise DataError(f"unknown split '{split}'; choose one of {', '.join(data_mod.SPLITS)}")
        frame = data_mod.load_split(data_dir or run_data_dir(run_path), split)
        name = split
    if max_samples is not None and max_samples < len(frame):
        frame = frame.sample(n=max_samples, random_state=0).sort_index()
    texts = frame["text"].tolist()
    labels = frame["label"].to_numpy()
    settings = predictor.settings
    probs_at, enc = predictor.scores(texts)
    probs, raw = probs_at(settings.temperature), probs_at(1.0)
    metrics = compute_metrics(labels, probs)
    metrics["source"] = str(file) if file is not None else f"{split} split"
    metrics.update({"truncation": settings.truncation, "max_length": settings.max_length,
                    "head_tokens": settings.head_tokens, "long_reviews": long_reviews})
    # A run directory or a bare model folder: results go beside what was evaluated.
    out_dir = run_path / "eval" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"n_tokens": enc.n_tokens, "truncated": enc.truncated}
    if "rating" in frame.columns:
        extra["rating"] = frame["rating"].to_numpy()
    preds = predictions_frame(texts, labels, probs, extra)
    preds_path = out_dir / "predictions.parquet"
    preds.to_parquet(preds_path, index=False)
    files = [preds_path]

    if robustness:
        files.append(_robustness(predictor, texts, labels, probs[:, 1], robustness_samples,
                                 out_dir, metrics, log))
    metrics_path = out_dir / "metrics.json"
    if report:
        files += _report(predictor, out_dir, preds, labels, probs, raw, enc.n_tokens,
                         extra.get("rating"), metrics,
                         f"{run_path.name} on {Path(file).name if file else metrics['source']}",
                         report_to, log)
    write_json(metrics_path, metrics)
    if report:
        from imdb_sentiment.evaluation.report import write_model_card
        from imdb_sentiment.modeling.loading import find_model_dir

        model_dir = predictor.model_dir or find_model_dir(run_path)
        run_dir = model_dir.parent if (model_dir.parent / "config.yaml").is_file() else None
        files.append(write_model_card(model_dir, run_dir))
    return EvalResult(name=name, metrics=metrics, out_dir=out_dir, files=[metrics_path, *files])


def window_budget(predictor: Any) -> int:
    """Tokens of review text one window holds (max length less the special tokens)."""
    from imdb_sentiment.modeling.tokenization import special_tokens

    max_length = predictor.settings.max_length
    model_max = getattr(predictor.tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        max_length = model_max
    prefix, suffix = special_tokens(predictor.tokenizer)
    return int(max_length - len(prefix) - len(suffix))


def _robustness(predictor: Any, texts: list[str], labels: np.ndarray, positive: np.ndarray,
                samples: int, out_dir: Path, metrics: dict[str, Any],
                log: Callable[[str], None]) -> Path:
    from imdb_sentiment.evaluation.robustness import cases_frame, run_checks

    log(f"robustness: generating checks from {min(samples, len(texts)):,} reviews")
    summary, cases = run_checks(lambda t: predictor.predict_proba(t)[:, 1], texts,
                                labels.tolist(), samples=samples, original=positive.tolist())
    path = out_dir / "robustness.csv"
    cases_frame(cases).to_csv(path, index=False)
    summary["file"] = path.name
    metrics["robustness"] = summary
    return path


def _report(predictor: Any, out_dir: Path, preds: Any, labels: np.ndarray, probs: np.ndarray,
            raw: np.ndarray, n_tokens: list[int], ratings: Any, metrics: dict[str, Any],
            title: str, report_to: str, log: Callable[[str], None]) -> list[Path]:
    from imdb_sentiment.evaluation.report import (
        ReportData,
        report_metrics,
        wandb_eval_run,
        write_report,
    )

    data = ReportData(
        texts=preds["text"].tolist(), labels=labels, positive=probs[:, 1], n_tokens=n_tokens,
        budget=window_budget(predictor), uncalibrated=raw[:, 1],
        ratings=None if ratings is None else np.asarray(ratings),
        temperature=predictor.settings.temperature, long_reviews=metrics["long_reviews"],
    )
    metrics.update(report_metrics(data))
    with wandb_eval_run(out_dir, title, report_to, log):
        return write_report(out_dir, preds, data, metrics, title, log=log)
