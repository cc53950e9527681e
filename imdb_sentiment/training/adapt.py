"""Domain adaptation: continued masked-language-model training of an encoder on unlabelled reviews.

:func:`adapt` reads the corpus (:mod:`imdb_sentiment.data.corpus`: the prepared training split's
texts and unlabelled files, never validation or test texts), cuts it into blocks through the one
text path (:mod:`imdb_sentiment.modeling.tokenization`), trains with ``Trainer`` and
``DataCollatorForLanguageModeling`` in one process or several, and writes a run directory whose
``model/`` folder ``imdb-sentiment train --model`` fine-tunes (a fresh classification head on
the adapted encoder). ``adapt_manifest.json`` records what text it saw and how it trained.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.atomic import write_json
from imdb_sentiment.config import Config
from imdb_sentiment.errors import ModelError, RunError
from imdb_sentiment.modeling.loading import (
    load_model_for_masked_lm,
    load_tokenizer,
    resolve_model_name,
)
from imdb_sentiment.runs import (
    Claim,
    default_run_name,
    latest_checkpoint,
    replace_with_new,
    write_status,
)
from imdb_sentiment.training import lifecycle
from imdb_sentiment.training.adaptation import (
    MANIFEST_FILE,
    MODEL_MANIFEST_FILE,
    AdaptResult,
    AdaptSettings,
    new_manifest,
    read_manifest,
)
from imdb_sentiment.training.arguments import training_arguments, training_precision
from imdb_sentiment.training.blocks import blocks
from imdb_sentiment.training.callbacks import (
    ProcessRecorder,
    config_logger,
    share_checkpoints,
    stderr_progress,
)
from imdb_sentiment.training.distributed import agree, is_main_process
from imdb_sentiment.training.signals import (
    TrainingInterrupted,
    exit_code_for,
    signal_name,
    sigterm_interrupts,
)

if TYPE_CHECKING:
    from transformers import Trainer


Log = Callable[[str], None]


@dataclass
class _Run:
    """What the setup settled on, read by the phases after it."""

    cfg: Config
    settings: AdaptSettings
    claim: Claim
    manifest: dict[str, Any]
    train_texts: list[str]
    holdout_texts: list[str]
    tokenizer: Any
    report_to: str = "none"
    log: Log = print


def adapt(
    cfg: Config, settings: AdaptSettings, *, resume: bool = False, log: Log = print
) -> AdaptResult:
    """Continue masked-LM training of ``cfg.model.name`` on the unlabelled corpus and write an
    adaptation run whose ``model/`` folder ``train --model`` accepts.

    ``resume`` continues the run named by ``cfg.run.name`` from its newest complete checkpoint,
    on the same corpus; on a run that succeeded (and is not asked for more epochs) it changes
    nothing and returns the saved manifest with ``already_finished`` set.
    """
    settings.check()
    with sigterm_interrupts():
        try:
            run = _setup(cfg, settings, resume=resume, log=log)
        except KeyboardInterrupt as exc:
            raise TrainingInterrupted(
                f"adaptation stopped by {signal_name(exc)} before the "
                "run started; nothing was written",
                exit_code_for(exc),
            ) from None
        if run.claim.finished:
            log(f"{run.claim.run_dir} already finished (succeeded); nothing was changed")
            return AdaptResult(
                run.claim.run_dir,
                run.claim.run_dir / "model",
                read_manifest(run.claim.work_dir),
                1,
                already_finished=True,
            )
        try:
            return _adapt_claimed(run, resume=resume)
        except BaseException as exc:
            stopped = _record_stop(run, exc)
            if stopped is None:
                raise
            raise stopped from None


def _adapt_claimed(run: _Run, *, resume: bool) -> AdaptResult:
    trainer, recorder = _build_trainer(run)
    seed = run.cfg.training.seed
    # Decided by ``resume`` alone, the same in every process: evaluating is a collective call.
    before = run.manifest["result"].get("mlm_loss_before")
    if not resume and run.holdout_texts:
        before = _holdout_loss(trainer, seed)
        run.log(f"masked-LM loss on {len(run.holdout_texts):,} held-out texts: {before:.4f}")
    checkpoint = run.claim.checkpoint
    if checkpoint is not None:
        run.log(f"resuming from {checkpoint}")
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    processes = recorder.gather(str(trainer.args.device))
    whole = recorder.whole_run(output.metrics, trainer.state, run.manifest["used"]["blocks"])
    after = _holdout_loss(trainer, seed) if run.holdout_texts else None
    if after is not None:
        run.log(f"masked-LM loss on the held-out texts after adaptation: {after:.4f}")
    run.manifest["result"] = _result(before, after, whole, trainer.state.epoch, processes)
    run.manifest["processes"] = processes
    if is_main_process():
        _save(run, trainer)
    return AdaptResult(
        run.claim.run_dir, run.claim.run_dir / "model", run.manifest, trainer.args.world_size
    )


def _setup(cfg: Config, settings: AdaptSettings, *, resume: bool, log: Log) -> _Run:
    """Check corpus and model, then claim the run directory (in that order, so bad input
    leaves nothing behind)."""
    from imdb_sentiment import tracking
    from imdb_sentiment.data.corpus import build_corpus

    model_name = resolve_model_name(cfg.model.name)
    report_to = tracking.resolve_report_to(cfg.run.report_to)
    corpus = build_corpus(
        cfg.data.dir,
        settings.unlabelled,
        include_train=settings.include_train,
        drop_overlap=settings.drop_overlap,
        text_column=settings.text_column,
        log=log if is_main_process() else (lambda _m: None),
    )
    train_texts, holdout = corpus.split(settings.max_texts, settings.holdout, cfg.training.seed)
    tokenizer = load_tokenizer(model_name)
    if getattr(tokenizer, "mask_token", None) is None:
        raise ModelError(f"{cfg.model.name} has no mask token; masked-LM adaptation needs one")
    manifest = new_manifest(cfg, settings, corpus, len(train_texts), len(holdout))
    claim = agree(lambda: _claim(cfg, model_name, manifest, resume=resume))
    cfg.run.name = claim.run_dir.name
    run = _Run(cfg, settings, claim, manifest, train_texts, holdout, tokenizer, report_to, log)
    if claim.finished:
        return run
    if is_main_process():
        lifecycle.start(claim, cfg, log, resume=resume)
        write_json(claim.work_dir / MANIFEST_FILE, manifest)
        if report_to == "wandb":
            tracking.configure_wandb(claim.work_dir, cfg.run.wandb_project, claim.run_dir.name, log)
    elif run.report_to == "wandb":
        run.report_to = "none"  # only the main process reports
    return run


def _claim(cfg: Config, model_name: str, manifest: dict[str, Any], *, resume: bool) -> Claim:
    """The main process's decision (as for ``train``); a resumed run must read the same text."""
    if cfg.run.name is None and not resume:
        cfg.run.name = "adapt-" + default_run_name(model_name)
    claim = lifecycle.claim(cfg, model_name, resume=resume)
    if resume and not claim.finished:
        saved = read_manifest(claim.work_dir)
        if (saved.get("corpus") or {}).get("corpus_sha256") != manifest["corpus"][
            "corpus_sha256"
        ] or saved.get("settings") != manifest["settings"]:
            raise RunError(
                f"cannot resume {claim.run_dir}: its corpus or settings differ from "
                "the ones it started with; pass the same --unlabelled files and flags"
            )
        manifest["result"] = saved.get("result") or {}
    return claim


def _build_trainer(run: _Run) -> tuple[Trainer, ProcessRecorder]:
    """Cut the corpus into blocks, load the encoder with its masked-LM head, build a Trainer."""
    from transformers import DataCollatorForLanguageModeling, Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    cfg, s = run.cfg, run.settings
    set_seed(cfg.training.seed)  # before the model exists: it seeds a fresh masked-LM head
    train_ds = blocks(run.tokenizer, run.train_texts, cfg, pack=s.pack)
    holdout_ds = blocks(run.tokenizer, run.holdout_texts, cfg, pack=s.pack)
    run.manifest["used"].update(
        blocks=len(train_ds),
        tokens=sum(map(len, train_ds.rows)),
        max_length=cfg.model.max_length,
        packed=s.pack,
    )
    run.log(
        f"{len(run.train_texts):,} texts -> {len(train_ds):,} blocks of up to "
        f"{cfg.model.max_length} tokens ({'packed' if s.pack else cfg.model.truncation})"
    )
    model, missing = load_model_for_masked_lm(resolve_model_name(cfg.model.name))
    if missing:
        # all-MiniLM-L6-v2 and other sentence-transformers encoders are saved without one.
        run.log(
            f"{cfg.model.name} ships no masked-LM head ({len(missing)} weights missing); "
            "adaptation trains a freshly initialised one"
        )
    run.manifest["fresh_mlm_head"] = bool(missing)
    recorder = ProcessRecorder(resume_from=run.claim.checkpoint)
    args = training_arguments(
        cfg, run.claim.work_dir, run.report_to, train_rows=len(train_ds), masked_lm=True
    )
    args.run_name = run.claim.run_dir.name  # not the staging folder's name
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=holdout_ds if len(holdout_ds) else None,
        processing_class=run.tokenizer,
        data_collator=DataCollatorForLanguageModeling(
            run.tokenizer, mlm_probability=s.mlm_probability, pad_to_multiple_of=8
        ),
        callbacks=[recorder.callback(), config_logger(cfg), share_checkpoints()],
    )
    # Trainer prints its log dicts on stdout; the commands keep stdout for results.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(stderr_progress())
    return trainer, recorder


def _holdout_loss(trainer: Trainer, seed: int) -> float:
    """The masked-LM loss on the held-out blocks, with the same masks every time it is asked."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(trainer.evaluate(metric_key_prefix="holdout")["holdout_loss"])


def _result(
    before: float | None,
    after: float | None,
    whole: dict[str, Any],
    epochs: float | None,
    processes: list[dict[str, Any]],
) -> dict[str, Any]:
    def perplexity(loss: float | None) -> float | None:
        return math.exp(min(loss, 50.0)) if loss is not None else None

    return {
        "mlm_loss_before": before,
        "mlm_loss_after": after,
        "perplexity_before": perplexity(before),
        "perplexity_after": perplexity(after),
        **whole,
        "train_step_samples_per_second": ProcessRecorder.step_throughput(processes),
        "epochs_completed": epochs,
    }


def _save(run: _Run, trainer: Trainer) -> None:
    """Save the adapted encoder, its tokenizer and the manifest; then the run takes its place
    (after an ``--overwrite``) and is marked succeeded. It is not marked latest: it is no
    classifier for ``eval`` or ``predict``."""
    from imdb_sentiment import tracking
    from imdb_sentiment.data.storage import share_like_umask

    work_dir = run.claim.work_dir
    model_dir = work_dir / "model"
    trainer.save_model(str(model_dir))
    run.tokenizer.save_pretrained(str(model_dir))
    run.manifest["kept_from_base"] = keep_base_weights(
        resolve_model_name(run.cfg.model.name), model_dir
    )
    share_like_umask(model_dir)  # safetensors writes 0600 whatever the umask
    run.manifest["training_precision"] = training_precision(run.cfg.training.precision)
    run.manifest["world_size"] = trainer.args.world_size
    write_json(model_dir / MODEL_MANIFEST_FILE, run.manifest)
    write_json(work_dir / MANIFEST_FILE, run.manifest)
    replace_with_new(run.claim)
    write_status(run.claim.run_dir, "succeeded", model_dir=str(run.claim.run_dir / "model"))
    tracking.finish()


def _record_stop(run: _Run, exc: BaseException) -> TrainingInterrupted | None:
    """Record why the run stopped and how to go on; an interruption becomes a one-line error
    (returned), anything else is re-raised by the caller."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    claim, cfg = run.claim, run.cfg
    if latest_checkpoint(claim.work_dir) is not None:
        how = (
            "resume with: imdb-sentiment adapt --resume --run-name "
            f"{claim.run_dir.name} --output-dir {cfg.run.output_dir}"
        )
    else:
        how = "no complete checkpoint was saved; start again with the same flags and --overwrite"
    if is_main_process():
        reason = (
            f"stopped by {signal_name(exc)}"
            if interrupted
            else (str(exc).splitlines() or [type(exc).__name__])[0]
        )
        with contextlib.suppress(OSError):  # on a full disk the first error is the one to see
            write_status(
                claim.work_dir,
                "interrupted" if interrupted else "failed",
                reason=reason,
                how_to_go_on=how,
            )
    if not interrupted:
        return None
    return TrainingInterrupted(
        f"adaptation stopped by {signal_name(exc)}; {how}", exit_code_for(exc)
    )


def keep_base_weights(base: str, model_dir: Path) -> list[str]:
    """Add to the saved masked-LM model the base checkpoint's encoder weights it has no place
    for (BERT's pooler), so that fine-tuning the adapted model starts from every pretrained
    weight the base model would have given it; return their names."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    path = model_dir / "model.safetensors"
    if not path.is_file():  # a sharded checkpoint is left as it was saved
        return []
    saved = load_file(str(path))
    encoder = AutoModel.from_pretrained(base, dtype=torch.float32)
    prefix = encoder.base_model_prefix
    extra = {
        f"{prefix}.{k}": v.contiguous()
        for k, v in encoder.state_dict().items()
        if f"{prefix}.{k}" not in saved and k.split(".")[0] == "pooler"
    }
    if extra:
        save_file({**saved, **extra}, str(path), metadata={"format": "pt"})
    return sorted(extra)
