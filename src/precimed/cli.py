"""The `precimed` command line: thin commands that delegate to workflows."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from precimed.errors import PrecimedError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="precimed: validated clinical risk models on real cohorts.")
console = Console(width=max(Console().width, 200))
err_console = Console(stderr=True)

KEY_METRICS = {
    "binary": ["auroc", "auprc", "brier", "calibration_slope", "calibration_intercept", "f1"],
    "multiclass": ["accuracy", "f1_macro", "auroc_macro", "log_loss"],
    "regression": ["mae", "rmse", "r2"],
    "survival": ["c_harrell", "c_uno", "auc_mean", "ibs"],
    "segmentation": ["dice", "dice_sd", "dice_min", "dice_max"],
}
IMAGE_METRICS = {"binary": ["auroc", "auprc", "brier"], "segmentation": ["dice"]}


def _say(text: str) -> None:
    """Print a result line: plain text (paths, patient ids and model names are never read as markup)."""
    console.print(text, markup=False, highlight=False)


def _echo(message: str) -> None:
    err_console.print(f"[dim]· {escape(message)}[/dim]")  # a message is text, never markup


def _cell(m: dict | None) -> str:
    if m is None or m.get("value") is None or m["value"] != m["value"]:
        return "–"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    ci = f" ({lo:.3f}–{hi:.3f})" if lo is not None and lo == lo and hi == hi else ""
    return f"{m['value']:.3f}{ci}"


def _diff_cell(m: dict | None) -> str:
    """A paired difference: marked when its CI excludes zero."""
    if m is None or m.get("value") is None or m["value"] != m["value"]:
        return "–"
    text = f"{m['value']:+.3f} ({m['ci_low']:+.3f} to {m['ci_high']:+.3f})"
    return f"[bold]{text}[/bold]" if m["ci_low"] > 0 or m["ci_high"] < 0 else f"[dim]{text}[/dim]"


def _apart(outputs: dict[str, Path | str | None], inputs: dict[str, Path | str | None]) -> None:
    """Refuse (exit 2, before any work) an output path that is, holds or sits inside an input."""
    from precimed.workflows._run import check_outputs_apart

    check_outputs_apart(outputs, inputs)


def print_metrics(doc: dict) -> None:
    """The comparison table: one row per model, key metrics with their bootstrap CIs."""
    task = doc["task"]
    if doc.get("view") == "image":
        _print_image_metrics(doc)
        return
    columns = list(KEY_METRICS[task])
    if task == "survival":
        columns[3:3] = [k for k in next(iter(doc["models"].values())) if k.startswith("auc_") and k != "auc_mean"]
    test = doc["data"]["test"]
    extra = f", {test['events']} events" if "events" in test else ""
    level = int(round(doc["bootstrap"]["level"] * 100))
    table = Table(title=f"{doc['run']}: {task}, validated on {test['name']} (n={test['n']}{extra}); "
                        f"{level}% bootstrap CI, {doc['bootstrap']['replicates']} replicates")
    table.add_column("model")
    for c in columns:
        table.add_column(c, justify="right")
    for name, metrics in doc["models"].items():
        table.add_row(name, *(_cell(metrics.get(c)) for c in columns))
    for name, diffs in doc.get("comparisons", {}).items():
        table.add_row(f"[dim]{name}[/dim]", *(_diff_cell(diffs.get(c)) for c in columns))
    console.print(table)


def _print_image_metrics(doc: dict) -> None:
    """An imaging run's table: held-out patients, CIs resampling patients (or synthetic images)."""
    task = doc["task"]
    data = doc["data"]["all"]
    level = int(round(doc["bootstrap"]["level"] * 100))
    unit = doc["bootstrap"].get("resampled", "patients")
    split = doc.get("split", {}).get("kind", "external")
    who = "background volume(s)" if doc["data"].get("source", {}).get("synthetic") else "patient(s)"
    table = Table(title=f"{doc['run']}: {task} of image slices, {data['patients']} {who}, "
                        f"{data.get('slices_scored', data['slices'])} slices, split {split}; {level}% CI resampling "
                        f"{unit}, {doc['bootstrap']['replicates']} replicates")
    columns = IMAGE_METRICS[task]
    table.add_column("model")
    for c in columns:
        table.add_column(c, justify="right")
    if task == "segmentation":
        table.add_column("SD / min / max", justify="right")
    for name, metrics in doc["models"].items():
        extra = [f"{metrics['dice_sd']:.3f} / {metrics['dice_min']:.3f} / {metrics['dice_max']:.3f}"] \
            if task == "segmentation" else []
        table.add_row(name, *(_cell(metrics.get(c)) for c in columns), *extra)
    for name, diffs in doc.get("comparisons", {}).items():
        table.add_row(f"[dim]{name}[/dim]", *(_diff_cell(diffs.get(c)) for c in columns),
                      *([""] if task == "segmentation" else []))
    console.print(table)
    sal = doc.get("saliency")
    if sal:
        console.print("Grad-CAM pointing game {:.3f} (random maps {:.3f}), IoU {:.3f} (random {:.3f}) on {} held-out "
                      "lesion slices".format(sal["grad_cam"]["pointing_game"], sal["random"]["pointing_game"],
                                             sal["grad_cam"]["iou"], sal["random"]["iou"], sal["positive_slices"]))
    for note in doc.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False)


@app.command()
def datasets() -> None:
    """List the built-in real cohorts: size, task, outcome columns, source and license."""
    from precimed.workflows import list_datasets

    table = Table(title="built-in cohorts (load offline; all but wdbc need the optional extra precimed\\[data])")
    for col in ("name", "rows", "task", "target / time, event", "treatment", "id", "license", "source"):
        table.add_column(col, overflow="fold")
    for d in list_datasets():
        outcome = f"{d.time}, {d.event}" if d.task == "survival" else str(d.target)
        table.add_row(d.name, str(d.rows), d.task, outcome, d.treatment or "–", d.id_column, d.license,
                      d.source if len(d.source) <= 90 else d.source[:89] + "…")
    console.print(table)
    from precimed.workflows import image_set_available, list_image_sets

    images = Table(title="built-in image sets (fetched at install / test time by scripts/fetch_imaging_data.sh, "
                         "never at run time)")
    for col in ("name", "modality", "cases", "here", "licence", "citation", "how to get it"):
        images.add_column(col, overflow="fold")
    for s in list_image_sets():
        images.add_row(s.name, s.modality, str(s.cases), "yes" if image_set_available(s.name) else "no", s.licence,
                       s.citation, s.get)
    console.print(images)


@app.command()
def train(config: Path = typer.Argument(..., help="run config (YAML)"),
          out: Path = typer.Option(..., "--out", help="run folder to create: bundle/, metrics.json, quality.json"),
          overwrite: bool = typer.Option(False, help="replace an existing run folder"),
          progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Train the configured models (deep and baselines) from CONFIG, validate them, write the bundle."""
    from precimed.workflows.api import train as run

    _apart({"--out": out}, {"CONFIG": config})
    result = run(config, out, overwrite=overwrite, progress=progress, echo=_echo)
    print_metrics(result.metrics)
    _say(f"bundle  {result.bundle_path}\nmetrics {out / 'metrics.json'}")


@app.command()
def predict(bundle: Path = typer.Argument(..., help="bundle folder (RUN/bundle)"),
            input: Path = typer.Option(..., "--input", help="patients: CSV, Parquet, JSON records or JSON lines; or a "
                                       "quoted glob of Parquet / CSV partitions ('folder/*.parquet')"),
            output: Path = typer.Option(..., "--output", help="predictions file (.csv, .parquet, .json, .jsonl); a "
                                        "folder for partitions (one <stem>.parquet each)"),
            model: str | None = typer.Option(None, help="which model of the bundle (default: its primary model)"),
            allow_out_of_range: bool = typer.Option(
                False, help="treat values outside the plausible range as missing instead of refusing"),
            masks: Path | None = typer.Option(None, help="imaging segmentation bundles: write the lesion mask here "
                                                         "(.nii.gz)"),
            modality: str | None = typer.Option(None, help="imaging bundles: the image's modality (CT, MR, ...) "
                                                           "when the file does not record it"),
            engine: str | None = typer.Option(None, help="partitions: 'local' (one after another, the default for a "
                                              "glob) or 'dask' (needs precimed[scale])"),
            scheduler: str | None = typer.Option(None, help="--engine dask: address of a running Dask scheduler "
                                                 "(default: a local cluster)"),
            workers: int = typer.Option(2, help="--engine dask: processes of the local cluster (1 thread each)"),
            overwrite: bool = typer.Option(False, help="partitions: replace an existing --output folder"),
            progress: bool = typer.Option(True, help="partitions: show a progress bar (on a terminal)"),
            runtime: str = typer.Option("auto", help="tabular bundles: 'numpy' (the compiled array path), 'onnx' (the "
                                        "bundle's ONNX graphs on onnxruntime, precimed[onnx]) or 'auto' (onnx for a "
                                        "net's bulk rows when available, else numpy)")
            ) -> None:
    """Score new patients with a bundle (imaging bundles: every slice of one image; a glob: every partition)."""
    from precimed.workflows.bulk import has_glob, predict_partitions

    if engine is not None or scheduler is not None or has_glob(input):
        if masks is not None or modality is not None:
            raise typer.BadParameter("--masks and --modality apply to one image, not to partitions")
        result = predict_partitions(bundle, str(input), output, engine=engine or ("dask" if scheduler else "local"),
                                    scheduler=scheduler, workers=workers, model=model,
                                    allow_out_of_range=allow_out_of_range, progress=progress, overwrite=overwrite,
                                    runtime=runtime)
        console.print(f"{result.rows} patient(s) in {len(result.partitions)} partition(s) scored with {result.model} "
                      f"({result.engine}) → {output}", markup=False, highlight=False)
        return
    from precimed.workflows.predicting import predict_file

    _apart({"--output": output, "--masks": masks}, {"BUNDLE": bundle, "--input": input})
    out = predict_file(bundle, input, output, model=model, allow_out_of_range=allow_out_of_range, masks=masks,
                       modality=modality, runtime=runtime)
    used = out["model"].iloc[0] if len(out) else model
    unit = "slice(s)" if "slice" in out.columns else "patient(s)"
    _say(f"{len(out)} {unit} scored with {used} → {output}")


@app.command()
def explain(bundle: Path = typer.Argument(..., help="bundle folder (RUN/bundle)"),
            input: Path = typer.Option(..., "--input", help="patients: CSV, Parquet, JSON records or JSON lines"),
            output: Path = typer.Option(..., "--output", help="explanations (.json)"),
            plots: Path | None = typer.Option(None, help="folder for one waterfall plot per patient"),
            model: str | None = typer.Option(None, help="which model of the bundle (default: its primary model)"),
            top: int = typer.Option(5, help="contributing features listed per patient")) -> None:
    """Each patient's prediction and the features that drove it, in the user's units (imaging bundles: Grad-CAM and
    occlusion overlays of the slices scored highest)."""
    from precimed.workflows.explaining import explain_file

    _apart({"--output": output, "--plots": plots}, {"BUNDLE": bundle, "--input": input})
    rows = explain_file(bundle, input, output, plots=plots, model=model, top_k=top)
    if rows and "slice" in rows[0]:
        for row in rows[:5]:
            detail = f"p={row['probability']:.3f}" if "probability" in row else \
                f"{row['lesion_pixels_model_grid']} lesion pixels"
            _say(f"slice {row['slice']}: {detail}")
        _say(f"{len(rows)} slice(s) explained → {output}" + (f"; overlays in {plots}" if plots else ""))
        return
    for row in rows[:5]:
        top_line = "; ".join(f"{c['display']} ({c['contribution']:+.3f}, {c['direction']})"
                             for c in row["contributions"][:3])
        _say(f"patient {row['patient_id']}: {row['prediction']:.3f} ({row['scale']}) ← {top_line}")
    _say(f"{len(rows)} patient(s) explained → {output}" + (f"; plots in {plots}" if plots else ""))


def _print_key_positions(value: bool) -> None:
    """``precimed plan --key-positions``: the positions a VCF is read at, then exit (no patient file needed)."""
    if not value:
        return
    from precimed.workflows.planning import key_positions

    table = Table(title="key pharmacogenomic positions read from a VCF (1-based, forward strand); a gene is "
                        "called only when all of its positions are genotyped (or --absent reference)")
    for col in ("gene", "rsid", "hgvs", "chrom", "grch37", "grch38", "ref", "alt"):
        table.add_column(col)
    for row in key_positions():
        table.add_row(*row.values())
    console.print(table)
    raise typer.Exit()


@app.command()
def plan(patient: Path = typer.Option(..., "--patient", help="patient JSON: facts, model_input, genotypes, options"),
         bundle: Path | None = typer.Option(None, "--bundle", help="bundle whose predictions enter the plan"),
         rules: Path | None = typer.Option(None, "--rules", help="rule file or folder (default: the packaged rules)"),
         genotypes: Path | None = typer.Option(
             None, "--genotypes", help="VCF (GRCh37 or GRCh38) of the key pharmacogenomic positions: "
             "--key-positions lists them (also docs/planning.md)"),
         sample: str | None = typer.Option(None, "--sample", help="which sample of a multi-sample VCF"),
         absent: str = typer.Option("not-called", "--absent", help="a key position the VCF does not list: "
                                    "'not-called' (its gene Indeterminate) or 'reference' (variant-only VCFs: read "
                                    "as homozygous reference, stated in the plan)"),
         build: str | None = typer.Option(None, "--build", help="GRCh37 or GRCh38 (default: the VCF header, else "
                                          "inferred from the positions; the plan states which)"),
         key_positions: bool = typer.Option(False, "--key-positions", is_eager=True, callback=_print_key_positions,
                                            help="list the key positions a VCF is read at, and exit"),
         out: Path | None = typer.Option(None, "--out", help="folder for plan.json, plan.md, plan.html, careplan"),
         overwrite: bool = typer.Option(False, help="replace an existing --out folder"),
         model: str | None = typer.Option(None, help="which model of the bundle (default: its primary model)"),
         effects: Path | None = typer.Option(None, "--effects", help="an effects run folder: options' benefits"),
         effects_id: str | None = typer.Option(None, "--effects-id", help="the patient's id in that run")) -> None:
    """A treatment plan for one patient: predictions, guideline rules, PGx, doses, interactions, each with a why."""
    from precimed.workflows.planning import plan_patient, to_markdown, write_plan

    _apart({"--out": out}, {"--patient": patient, "--bundle": bundle, "--rules": rules, "--genotypes": genotypes,
                            "--effects": effects})
    result = plan_patient(bundle, patient, rules=rules, genotypes=genotypes, model=model, effects=effects,
                          effects_id=effects_id, sample=sample, absent=absent, build=build)
    console.print(to_markdown(result), markup=False, highlight=False)
    if out is not None:
        write_plan(result, out, overwrite=overwrite)
        _say(f"plan → {out}/plan.json, plan.md, plan.html, careplan.fhir.json")


@app.command()
def effects(config: Path = typer.Argument(..., help="run config with task.treatment and an 'effects:' section"),
            out: Path = typer.Option(..., "--out", help="folder to create: effects.json, patient_effects.csv"),
            learner: str | None = typer.Option(None, help="dr or t (default: the config's first learner)"),
            base: str | None = typer.Option(None, help="outcome model: mlp, resmlp or gbm (default: the config's)"),
            overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Individual and average treatment effects, overlap diagnostics and policy evaluation (cross-fitted)."""
    from precimed.workflows.effects import effects_from_config, load_effects_config, summary_lines

    _apart({"--out": out}, {"CONFIG": config})
    cfg, settings = load_effects_config(config)
    doc = effects_from_config(cfg, out, learner=learner, base=base, settings=settings, overwrite=overwrite,
                              echo=_echo)
    for line in summary_lines(doc):
        console.print(line, markup=False, highlight=False)


@app.command()
def evaluate(bundle: Path = typer.Argument(..., help="bundle folder (RUN/bundle)"),
             data: str = typer.Option(..., "--data", help="built-in cohort name, data file, or source spec (.yaml)"),
             out: Path = typer.Option(..., "--out", help="folder to create: metrics.json, quality.json"),
             overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Validate a bundle on another cohort or file."""
    from precimed.workflows.api import evaluate as run

    _apart({"--out": out}, {"BUNDLE": bundle, "--data": data if Path(data).exists() else None})
    result = run(bundle, data, out, overwrite=overwrite, echo=_echo)
    print_metrics(result.metrics)
    _say(f"metrics {out / 'metrics.json'}")


@app.command()
def update(bundle: Path = typer.Argument(..., help="bundle folder (RUN/bundle) of the model to update"),
           data: str = typer.Option(..., "--data", help="new labelled data: built-in cohort, data file or source spec"),
           method: str = typer.Option("recalibrate", "--method",
                                      help="recalibrate | recalibrate_intercept | finetune"),
           out: Path = typer.Option(..., "--out", help="folder to create: bundle/ (the new version) and update.json"),
           settings: Path | None = typer.Option(None, "--settings", help="update settings (YAML): model, holdout, "
                                                "seed, finetune: {layers, lr, max_epochs, patience, ...}"),
           overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Recalibrate or fine-tune a bundle's model on new data; write a new bundle version that names its parent."""
    from precimed.workflows.updating import load_update_settings, update_bundle

    _apart({"--out": out}, {"BUNDLE": bundle, "--data": data if Path(data).exists() else None,
                            "--settings": settings})
    chosen = load_update_settings(settings) if settings is not None else None
    result = update_bundle(bundle, data, out, method=method, settings=chosen, overwrite=overwrite, echo=_echo)
    if "models" in result.metrics:
        print_metrics(result.metrics)
    record = result.metrics["update"]
    fitted = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in record["fitted"].items() if k != "note")
    console.print(f"{record['method']} of {record['parent_model']!r} (parent {record['parent']}) on "
                  f"{record['data']['rows']} rows: {fitted}", markup=False, highlight=False)
    _say(f"bundle  {result.bundle_path}\nupdate  {out / 'update.json'}")


@app.command()
def drift(bundle: Path | None = typer.Argument(None, help="bundle folder (RUN/bundle); with --current-db, default: "
                                              "the registered bundle of the served rows' newest version"),
          reference: str = typer.Option("train", "--reference", help="'train' (the bundle's own training rows, "
                                        "re-loaded through its config) or a table file in the bundle's schema"),
          current: Path | None = typer.Option(None, "--current", help="current rows: CSV, Parquet or JSON in the "
                                              "bundle's schema (the columns `precimed predict` reads), optionally "
                                              "with a time column and outcomes"),
          current_db: Path | None = typer.Option(None, "--current-db", help="instead of --current: the service's "
                                                 "own traffic, the encoded feature vectors it stored in REGISTRY's "
                                                 "database (with --model-name; windows by the time served)"),
          model_name: str | None = typer.Option(None, "--model-name", help="with --current-db: the registered "
                                                "model whose served rows are read"),
          since: str | None = typer.Option(None, "--since", help="with --current-db: rows served at or after this "
                                           "date/time (UTC)"),
          until: str | None = typer.Option(None, "--until", help="with --current-db: rows served before this "
                                           "date/time (UTC)"),
          version: int | None = typer.Option(None, "--version", help="with --current-db: only this version's rows"),
          db: str | None = typer.Option(None, "--db", help="with --current-db: database URL (default: the SQLite "
                                        "file in the registry)"),
          out: Path = typer.Option(..., "--out", help="folder to create: drift.json, drift.html"),
          time_column: str | None = typer.Option(None, "--time-column", help="calendar time of each row: years "
                                                 "(numbers) or dates"),
          window: str | None = typer.Option(None, "--window", help="window length: 1y, 6m, 2w, 30d, or a number "
                                            "of rows (default with --time-column: 1y)"),
          outcomes: Path | None = typer.Option(None, "--outcomes", help="outcomes that arrived later: a table with "
                                               "the id column and the task's outcome columns"),
          model: str | None = typer.Option(None, help="which model of the bundle (default: its primary model)"),
          bootstrap: int = typer.Option(200, help="bootstrap replicates for the CIs"),
          overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Drift of current rows against the training rows: per-feature PSI and tests (BH), domain classifier,
    prediction shift, and performance over time windows where outcomes are mature."""
    from precimed.errors import ConfigError
    from precimed.workflows.drift import drift_report, summary_lines

    if current_db is not None:
        if current is not None or time_column is not None or outcomes is not None:
            raise ConfigError("--current-db reads the service's stored rows (their time is when they were served, "
                              "their outcomes those posted to /v1/outcomes): drop --current, --time-column and "
                              "--outcomes")
        if not model_name:
            raise ConfigError("--current-db needs --model-name (the registered model whose served rows are read)")
        from precimed.service.cli_commands import drift_from_db

        doc = drift_from_db(current_db, model_name, out, bundle=bundle, since=since, until=until, version=version,
                            db=db, reference=reference, window=window, model=model, n_boot=bootstrap,
                            overwrite=overwrite, echo=_echo)
    else:
        if current is None or bundle is None:
            raise ConfigError("give BUNDLE and --current FILE, or --current-db REGISTRY --model-name NAME")
        if model_name or since or until or version is not None or db:
            raise ConfigError("--model-name, --since, --until, --version and --db go with --current-db")
        doc = drift_report(bundle, reference, current, out, time_column=time_column, window=window,
                           outcomes=outcomes, model=model, n_boot=bootstrap, overwrite=overwrite, echo=_echo)
    for line in summary_lines(doc):
        console.print(line, markup=False, highlight=False)
    console.print(f"report {out / 'drift.html'}\njson   {out / 'drift.json'}", markup=False, highlight=False)


@app.command("walk-forward")
def walk_forward(config: Path = typer.Argument(..., help="run config (YAML)"),
                 time_column: str = typer.Option(..., "--time-column", help="calendar time of each row (e.g. year)"),
                 train_until: float = typer.Option(..., "--train-until", help="train on rows with time <= this"),
                 block: int = typer.Option(1, "--block", help="calendar units (years) per scored block"),
                 out: Path = typer.Option(..., "--out", help="folder to create: training/, walkforward.json, "
                                          "walkforward.html"),
                 min_rows: int = typer.Option(100, "--min-rows", help="a block with fewer rows joins its neighbour"),
                 bootstrap: int | None = typer.Option(None, help="bootstrap replicates (default: the config's)"),
                 overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Temporal validation: train on the early years, score each later block (C-index, calibration, drift)."""
    from precimed.workflows.temporal_validation import walk_forward as run
    from precimed.workflows.temporal_validation import walk_forward_table

    _apart({"--out": out}, {"CONFIG": config})
    doc = run(config, out, time_column=time_column, train_until=train_until, block=block, min_rows=min_rows,
              n_boot=bootstrap, overwrite=overwrite, echo=_echo)
    head, rows = walk_forward_table(doc)
    table = Table(title=f"{doc['run']}: trained on {doc['training']['label']} (n={doc['training']['n']}), "
                        f"{int(round(doc['level'] * 100))}% CI, {doc['bootstrap']} bootstrap replicates")
    for h in head:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"report {out / 'walkforward.html'}\njson   {out / 'walkforward.json'}\nbundle "
                  f"{out / 'training' / 'bundle'}", markup=False, highlight=False)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="run folder (replaced if it exists)"),
         progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Rotterdam node-positive → Cox MLP, Cox PH, gradient boosting → external validation on GBSG."""
    from precimed.workflows.training import demo as run

    result = run(out, progress=progress, echo=_echo)
    print_metrics(result.metrics)
    _say(f"bundle  {result.bundle_path}\nmetrics {out / 'metrics.json'}")


@app.command()
def monitor(input: str = typer.Option(..., "--input", help="vitals as JSON lines; '-' reads stdin"),
            output: Path = typer.Option(..., "--output", help="alerts as JSON lines"),
            scores: Path | None = typer.Option(None, help="also write every observation's NEWS2 breakdown"),
            bundle: Path | None = typer.Option(None, help="a binary bundle on monitor window features: learned risk"),
            risk_threshold: float = typer.Option(0.5, help="learned risk at or above which an observation is raised"),
            alert_level: str = typer.Option("low-medium", help="NEWS2 level that raises an alert"),
            clear_after: int = typer.Option(2, help="calm observations in a row that end an episode"),
            max_patients: int = typer.Option(100_000, min=1, help="patients followed at once; the least recently "
                                             "seen is forgotten first")) -> None:
    """Score a vitals stream with NEWS2 (and a learned risk); alerts with hysteresis."""
    from precimed import workflows

    _apart({"--output": output, "--scores": scores}, {"--input": input, "--bundle": bundle})
    summary = workflows.monitor_stream(input, output, scores=scores, bundle_dir=bundle, risk_threshold=risk_threshold,
                                       alert_level=alert_level, clear_after=clear_after, max_patients=max_patients)
    err_console.print(f"{summary}", highlight=False)


ward_app = typer.Typer(no_args_is_help=True, help="A simulated ward (no real vital-sign streams ship offline).")
app.add_typer(ward_app, name="ward")


@ward_app.command("simulate")
def ward_simulate(out: Path = typer.Option(..., "--out", help="folder to create"),
                  patients: int = typer.Option(200, help="number of patients"),
                  days: float = typer.Option(7, help="days simulated"),
                  seed: int = typer.Option(0, help="random seed"),
                  overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Write observations.jsonl, events.csv and features.csv of a seeded simulated ward."""
    from precimed import workflows

    console.print(workflows.simulate_ward_files(out, n_patients=patients, days=days, seed=seed, overwrite=overwrite))


@ward_app.command("compare")
def ward_compare(out: Path = typer.Option(..., "--out", help="folder to create"),
                 patients: int = typer.Option(500, help="patients per ward"),
                 days: float = typer.Option(7, help="days per ward"),
                 bootstrap: int = typer.Option(200, help="bootstrap replicates for the model's metrics"),
                 overwrite: bool = typer.Option(False, help="replace an existing folder")) -> None:
    """Train the learned early-warning MLP on one simulated ward; compare it with NEWS2 on another."""
    from precimed import workflows

    result = workflows.ward_comparison(out, n_patients=patients, days=days, bootstrap=bootstrap, overwrite=overwrite,
                                       echo=_echo)
    table = Table(title=f"early warning on a simulated test ward ({patients} patients × {days:g} days): "
                        "deterioration within 12 h")
    for col in ("method", "AUROC (per obs)", "alerts / patient-day", "detected", "median lead (h)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, r in result["comparison"].items():
        table.add_row(name, f"{r['auroc']:.3f}", f"{r['alerts_per_patient_day']:.3f}",
                      f"{r['detected']}/{r['events']}", f"{r['median_lead_hours']:.1f}")
    console.print(table)
    _say(f"details {out / 'comparison.json'}; bundle {out / 'model' / 'bundle'}")


@app.command()
def deidentify(input: Path = typer.Argument(..., help="CSV/TSV/Parquet table, FHIR Bundle .json, .dcm file or folder"),
               out: Path = typer.Option(..., "--out", help="de-identified output (never the input)"),
               policy: Path | None = typer.Option(None, "--policy", help="column roles (YAML); required for tables"),
               key_file: Path | None = typer.Option(None, "--key-file", help="pseudonymization key file"),
               key_env: str | None = typer.Option(None, "--key-env", help="environment variable holding the key"),
               report: Path | None = typer.Option(None, "--report", help="write the JSON report here"),
               overwrite: bool = typer.Option(False, help="replace an existing output"),
               notes_mode: str | None = typer.Option(None, "--notes-mode", help="free-text notes: strict (patterns, "
                                                     "names) or allowlist (also words off the English+medical "
                                                     "allowlist); default: the policy's options.text.mode")) -> None:
    """De-identify patient data: keyed pseudonyms, per-patient date shifts, Safe Harbor generalization."""
    from precimed.workflows.privacy import deidentify as run

    console.print(run(input, out, policy=policy, key_file=key_file, key_env=key_env, overwrite=overwrite,
                      report=report, notes_mode=notes_mode).summary(), markup=False, highlight=False)


@app.command()
def keygen(path: Path = typer.Argument(..., help="where to write a new pseudonymization key (mode 600)")) -> None:
    """Create a random key for keyed pseudonyms and date shifts; keep it away from the data."""
    from precimed.workflows.privacy import make_key

    _say(f"key written to {make_key(path)} (keep it secret; the same key gives the same pseudonyms)")


# ----- the service (its commands live in precimed.service.cli_commands; imported only when used) -----------------
REGISTRY = typer.Option(..., "--registry", help="registry folder (bundles; SQLite database unless --db)")
DB = typer.Option(None, "--db", help="database URL, e.g. postgresql+psycopg://user:pw@host/db")


@app.command()
def serve(registry: Path = REGISTRY, db: str | None = DB,
          host: str = typer.Option("127.0.0.1", help="address to listen on"),
          port: int = typer.Option(8000, help="port"),
          workers: int = typer.Option(1, help="uvicorn worker processes")) -> None:
    """Serve registered models over HTTP (FastAPI, OpenAPI docs at /docs): bearer tokens, roles, audit trail."""
    from precimed.service.cli_commands import serve as run

    run(registry, db, host=host, port=port, workers=workers)


registry_app = typer.Typer(no_args_is_help=True, help="Register, list, promote and roll back model bundles.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens (stored hashed; shown once).")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.")
app.add_typer(registry_app, name="registry")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")


@registry_app.command("add")
def registry_add(bundle: Path = typer.Argument(..., help="bundle folder (RUN/bundle)"), registry: Path = REGISTRY,
                 name: str | None = typer.Option(None, help="model name (default: the run name)"),
                 fhir_mapping: Path | None = typer.Option(None, help="YAML mapping FHIR codes to features"),
                 db: str | None = DB) -> None:
    """Register a bundle (hashes verified) as the model's next version."""
    from precimed.service.cli_commands import registry_add as run

    console.print(run(registry, bundle, name=name, fhir_mapping=fhir_mapping, db=db))


@registry_app.command("list")
def registry_list(registry: Path = REGISTRY, db: str | None = DB,
                  as_json: bool = typer.Option(False, "--json", help="print the listing as JSON")) -> None:
    """Models, versions and stages: a table, or JSON with --json."""
    from precimed.service.cli_commands import registry_list as run

    run(registry, db, as_json=as_json)


@registry_app.command("promote")
def registry_promote(name: str = typer.Argument(...), version: int = typer.Argument(...), registry: Path = REGISTRY,
                     stage: str = typer.Option("production", help="staging or production"),
                     db: str | None = DB) -> None:
    """Put a version in staging or production."""
    from precimed.service.cli_commands import registry_promote as run

    console.print(run(registry, name, version, stage, db=db))


@registry_app.command("rollback")
def registry_rollback(name: str = typer.Argument(...), registry: Path = REGISTRY,
                      stage: str = typer.Option("production", help="staging or production"),
                      db: str | None = DB) -> None:
    """Return a stage to the version it held before the last promotion."""
    from precimed.service.cli_commands import registry_rollback as run

    console.print(run(registry, name, stage, db=db))


@tokens_app.command("create")
def tokens_create(registry: Path = REGISTRY,
                  role: str = typer.Option(..., help="clinician, data_scientist, admin or auditor (read-only)"),
                  label: str = typer.Option("", help="a note on who holds it"), db: str | None = DB) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from precimed.service.cli_commands import tokens_create as run

    token_id, token = run(registry, role, label, db=db)
    console.print(f"token id {token_id}\n{token}\n(shown once; store it now)", markup=False, highlight=False)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str = typer.Argument(..., help="the token's id (tok_…), as `precimed tokens list` "
                                                 "shows it"), registry: Path = REGISTRY, db: str | None = DB) -> None:
    """Revoke a token by its id."""
    from precimed.service.cli_commands import tokens_revoke as run

    run(registry, token_id, db=db)
    _say(f"token {token_id} revoked")


@tokens_app.command("list")
def tokens_list(registry: Path = REGISTRY, db: str | None = DB) -> None:
    """The tokens: id, role, label, when created and revoked (never the token or its hash)."""
    from precimed.service.cli_commands import tokens_list as run

    tokens = run(registry, db=db)
    if not tokens:
        console.print(f"no tokens in {registry}", markup=False, highlight=False)
        return
    table = Table(title=f"tokens in {registry}", title_justify="left")
    for column in ("id", "role", "label", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for t in tokens:
        table.add_row(t["id"], t["role"], t["label"] or "-", t["created_at"][:19].replace("T", " "),
                      (t["revoked_at"] or "-")[:19].replace("T", " "))
    console.print(table, markup=False, highlight=False)


@audit_app.command("verify")
def audit_verify(registry: Path = REGISTRY, db: str | None = DB,
                 anchor: list[str] = typer.Option([], "--anchor", help="SEQ:HASH recorded earlier (repeatable)"),
                 as_json: bool = typer.Option(False, "--json", help="print the full report as JSON")) -> None:
    """Check the audit chain against its key and checkpoint file, and stored results, stages and tokens against
    the chain: each problem is one line with its kind (exit 2 if any)."""
    from precimed import jsonio
    from precimed.service.cli_commands import audit_verify as run

    result = run(registry, db, anchors=anchor)
    if as_json:
        sys.stdout.write(jsonio.dumps(result, indent=2) + "\n")
    else:
        console.print(f"audit chain {'ok' if result['ok'] else 'NOT ok'}: {result['rows']} rows, head "
                      f"{result['head_seq']}:{result['head_hash']}, last checkpoint {result['checkpoint_seq']}, "
                      f"key {result['key_id']}", markup=False, highlight=False)
        for p in result["problems"]:
            where = f"row {p['seq']}" if p["seq"] is not None else "chain"
            console.print(f"{p['kind']}: {where}: {p['message']}", markup=False, highlight=False, soft_wrap=True)
    if not result["ok"]:
        raise SystemExit(2)


@app.command()
def retrain(registry: Path = typer.Argument(..., help="registry folder (bundles; SQLite database unless --db)"),
            name: str = typer.Argument(..., help="the registered model whose production version is the champion"),
            data: str = typer.Option(..., "--data", help="new labelled data: a built-in dataset, a table file or a "
                                     "YAML source spec, in the champion's format"),
            policy: Path = typer.Option(..., "--policy", help="retraining policy (YAML): window, holdout, "
                                        "challenger, gates"),
            out: Path | None = typer.Option(None, "--out", help="folder for the runs (default runs/retrain-NAME); "
                                            "each run writes OUT/<time of the run>/"),
            db: str | None = DB,
            every: str | None = typer.Option(None, "--every", help="run once per period (7d, 1mo, 1y, 12h, ...)"),
            clock: str = typer.Option("system", "--clock", help="system (sleeps between runs) or simulated "
                                      "(replays from --start without sleeping)"),
            start: str | None = typer.Option(None, "--start", help="time of the first run (ISO date); required "
                                             "with --clock simulated"),
            until: str | None = typer.Option(None, "--until", help="last time a scheduled run may start (ISO "
                                             "date)")) -> None:
    """Gated retraining: a challenger on recent data vs the production champion on the same held-out patients;
    promoted to staging (never production) only if every gate of the policy holds; audited either way."""
    from rich import box

    from precimed.service.cli_commands import retrain as run

    _apart({"--out": out}, {"--data": data if Path(data).exists() else None, "--policy": policy,
                            "REGISTRY": registry})

    def show(result: dict) -> None:
        when = result["now"][:19].replace("T", " ").removesuffix(" 00:00:00")
        if result["action"] == "retrain:failed":
            console.print(f"{when}: failed: {result['error']}", markup=False, highlight=False, soft_wrap=True)
            return
        console.print(f"{when}: {name} v{result['champion']} (production) vs challenger: "
                      + (f"promoted to staging as v{result['version']}" if result["promote"] else "rejected"),
                      markup=False, highlight=False)
        table = Table(box=box.SIMPLE_HEAD)
        for column in ("gate", "value", "threshold", "status"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for g in result["gates"]:
            value = "–" if g["value"] is None else f"{g['value']:.4f}"
            threshold = g["threshold"] if not isinstance(g["threshold"], list) else \
                "[" + ", ".join(f"{t:g}" for t in g["threshold"]) + "]"
            style = "" if g["status"] == "pass" else "bold"
            table.add_row(g["name"], value, str(threshold), f"[{style}]{g['status']}[/{style}]" if style else
                          g["status"])
        console.print(table)
        w = result["window"]
        span = f", {w['time_column']} {w['time_range'][0]:g}–{w['time_range'][1]:g}" if w.get("time_range") else ""
        console.print(f"window {w['rows']} rows{span}: trained on {w['train']['rows']}, held out "
                      f"{w['holdout']['rows']}\nreport {result['report']}", markup=False, highlight=False)

    results = run(registry, name, data, policy, out=out, db=db, every=every, clock=clock, start=start, until=until,
                  echo=_echo, on_result=show)
    failed = [r for r in results if r["action"] == "retrain:failed"]
    if len(results) > 1:
        counts = {a: sum(r["action"] == a for r in results) for a in
                  ("retrain:promoted_to_staging", "retrain:rejected", "retrain:failed")}
        console.print(f"{len(results)} runs: " + ", ".join(f"{n} {a.split(':')[1]}" for a, n in counts.items()),
                      markup=False, highlight=False)
    if failed:
        raise SystemExit(2)


def _usage_error_type() -> type[Exception]:
    """The ClickException of the click that typer uses (typer ≥ 0.29 ships its own copy, older typers use click)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Run the command line: a user's mistake (a PrecimedError or a mistyped option) is one line and exit 2."""
    try:
        app(standalone_mode=False)
    except PrecimedError as exc:
        # escaped: a message naming an extra ('precimed[scale]') or quoting a value (a column called "[red]") is text
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except _usage_error_type() as exc:  # unknown option, missing argument, bad value: click's usage line
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2) or 2)


if __name__ == "__main__":
    main()
