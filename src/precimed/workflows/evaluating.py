"""The evaluation recipe: validate a bundle's models on another cohort or file, with the same documents."""

from __future__ import annotations

from pathlib import Path

from precimed.atomic import atomic_dir
from precimed.bundle import load_bundle
from precimed.evaluate.scoring import score_models
from precimed.jsonio import write_json
from precimed.preprocess import quality_report
from precimed.workflows._run import (
    Echo,
    RunResult,
    check_out_dir,
    load_cohort,
    metrics_doc,
    quiet,
    resolve_source,
    scoring_settings,
)
from precimed.workflows.explaining import report_importance
from precimed.workflows.fairness import analyse_subgroups
from precimed.workflows.reporting import card_for, write_run_report


def evaluate_bundle(bundle_dir: Path | str, data: str, out_dir: Path | str, *, overwrite: bool = False,
                    echo: Echo = quiet) -> RunResult:
    """Validate every model of a bundle on ``data`` (a dataset name, file or YAML source spec).

    Writes ``metrics.json`` (the same layout as training, with the bundle's comparisons), ``quality.json``
    and ``report.html``; values outside the plausible range count as missing, as in training.
    """
    bundle = load_bundle(bundle_dir)
    cfg = bundle.config
    if bundle.image_preprocessor is not None:
        from precimed.workflows.image_cases import image_source
        from precimed.workflows.image_serving import evaluate_image_bundle

        return evaluate_image_bundle(bundle_dir, image_source(data), out_dir, overwrite=overwrite, echo=echo)
    source = resolve_source(data, cfg)
    out_dir = check_out_dir(out_dir, overwrite)
    echo(f"loading {source.label}")
    cohort = load_cohort(source, cfg, classes=bundle.metadata.get("classes"))
    features = [f.model_dump() for f in cfg.features]
    quality = quality_report(cohort.frame, features, source=cohort.name, id_name=cohort.id_name)
    pre = bundle.preprocessor
    X = pre.transform(cohort.X, out_of_range="missing")
    ev = score_models(bundle.models, X, cohort.y, comparisons=bundle.comparisons, echo=echo,  # type: ignore[arg-type]
                      **scoring_settings(cfg))
    doc = metrics_doc(cfg, bundle.metadata["training_data"], cohort.describe(cfg.task), ev.results, ev.comparisons,
                      primary=bundle.primary)
    subgroups = analyse_subgroups(cfg, cohort, ev.outputs, ev.grid, model=bundle.primary)
    if subgroups is not None:
        doc["subgroups"] = subgroups
    importance = None
    if bundle.background is not None:
        importance = report_importance(bundle.models, cfg.task, bundle.background, X, cohort.X,
                                       pre.feature_groups_, n=cfg.evaluation.explain, seed=cfg.seed,
                                       primary=bundle.primary)
    doc["bundle"] = bundle.ref
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "metrics.json", doc)
        write_json(tmp / "quality.json", {"test": quality})
        card = card_for(cfg, doc, {"test": quality}, n_inputs=len(bundle.metadata["feature_names_out"]),
                        deep_model=bundle.primary, subgroups=subgroups is not None)
        write_run_report(tmp / "report.html", cfg=cfg, doc=doc, quality={"test": quality}, train_X=None, train_y=None,
                         test_X=cohort.X, test_y=cohort.y, outputs=ev.outputs, grid=ev.grid, models=bundle.models,
                         card=card, classes=bundle.metadata.get("classes"), subgroups=subgroups,
                         importance=importance[0] if importance else None,
                         importance_plot=importance[1] if importance else None)
    return RunResult(out_dir, doc)
