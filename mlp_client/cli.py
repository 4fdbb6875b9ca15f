"""The client commands of ``mlp-service``: upload, train, watch, predict, jobs, cancel, delete-job, models, export,
sweep, sweep-status, sweep-cancel.

They talk to a running server through ``mlp_client`` (``--url`` / ``MLP_URL``, ``--api-key`` /
``MLP_API_KEY``) and import nothing of the server, so they start fast and work from any machine.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mlp_client.client import DEFAULT_URL, Client, Job, Model, Network, Sweep
from mlp_client.errors import JobFailed, MLPError, SweepFailed

COMMANDS = ("upload", "train", "watch", "predict", "jobs", "cancel", "delete-job", "models", "export", "sweep", "sweep-status",
            "sweep-cancel")
METRIC_ORDER = ("train_loss", "train_accuracy", "train_mae", "val_loss", "val_accuracy", "val_mae", "val_rmse",
                "val_r2", "best_epoch", "seconds")


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("MLP_URL", DEFAULT_URL),
                        help="the server (default: $MLP_URL or %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("MLP_API_KEY"),
                        help="API key (default: $MLP_API_KEY)")


# The form fields of POST /v1/datasets the upload flags send (README "Data sets"), by flag destination.
UPLOAD_FIELDS = ("target", "task", "name", "ignore", "categorical", "delimiter", "decimal", "thousands", "encoding",
                 "na_values", "max_categories", "drop_missing_target")


def _upload_options(parser: argparse.ArgumentParser) -> None:
    """The upload's form fields as flags of the same names (sent with every file the command uploads)."""
    group = parser.add_argument_group("upload options (form fields of POST /v1/datasets, for a data file)")
    group.add_argument("--target", help="label column of a table (default: the last column)")
    group.add_argument("--task", choices=["classification", "regression"], help="default: inferred")
    group.add_argument("--name", help="the data set's name (default: the file name without extensions)")
    group.add_argument("--ignore", metavar="COLUMNS", help="comma-separated columns to leave out (ids, free text)")
    group.add_argument("--categorical", metavar="COLUMNS",
                       help="comma-separated numeric columns to treat as categories (zip codes)")
    group.add_argument("--delimiter", help="CSV delimiter: one character, or comma, semicolon, tab, pipe "
                                           "(default: detected)")
    group.add_argument("--decimal", help="decimal mark of CSV numbers: . or , (default: detected)")
    group.add_argument("--thousands", help="thousands separator of CSV numbers: . , ' or space (default: none; "
                                           "'.'-grouped numbers are detected when the decimal mark is ,)")
    group.add_argument("--encoding", help="the file's text encoding when not UTF-8/16/32 with a BOM (e.g. cp1252)")
    group.add_argument("--na-values", metavar="TOKENS",
                       help="comma-separated tokens read as missing, replacing the default list ('' = empty cells "
                            "only)")
    group.add_argument("--max-categories", type=int, help="most distinct values of a categorical column "
                                                          "(server: 1000)")
    group.add_argument("--drop-missing-target", action="store_true", default=None,
                       help="drop rows whose target is missing (counted in n_dropped) instead of a 422")
    group.add_argument("--upload", metavar="JSON", help="more form fields of the upload, as a JSON object")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the client commands on the ``mlp-service`` sub-command parser."""
    common = argparse.ArgumentParser(add_help=False)
    _connection(common)

    train = sub.add_parser("train", parents=[common], help="upload data, train a network, optionally watch it",
                           description="Create the network and upload the data (or use existing ids), start a "
                                       "job; with --watch show a live progress bar and end with the model id and "
                                       "its metrics.")
    train.add_argument("--network", required=True, help="network spec (.json file) or an existing network id")
    train.add_argument("--data", required=True, help="data file (.csv, .npz, ...) or an existing data set id")
    train.add_argument("--validation-data", help="validation data file or data set id")
    train.add_argument("--validation-split", type=float, help="fraction held out for validation (server: 0)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--optimizer", choices=["adam", "sgd"], help="server default: adam")
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--momentum", type=float, help="SGD momentum")
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--patience", type=int, help="turn on early stopping with this patience")
    train.add_argument("--monitor", help="the metric early stopping watches (default val_loss)")
    train.add_argument("--seed", type=int)
    train.add_argument("--job", metavar="JSON", help="more fields of the job body, as a JSON object")
    train.add_argument("--watch", action="store_true", help="follow the job with a live progress bar")
    _upload_options(train)
    train.set_defaults(func=_train)

    sweep = sub.add_parser("sweep", parents=[common], help="run a hyper-parameter sweep with a progress bar",
                           description="Upload the data (or use a data set id), start a sweep (POST /v1/sweeps) "
                                       "and follow it; prints the ranked trials and the best model.")
    sweep.add_argument("--data", required=True, help="data file (.csv, .npz, ...) or an existing data set id")
    sweep.add_argument("--space", metavar="JSON", help="the search space, as a JSON object or a .json file")
    sweep.add_argument("--validation-data", help="validation data file or data set id")
    sweep.add_argument("--validation-split", type=float, help="fraction held out for validation (server: 0.2 "
                                                              "without --validation-data; 0: none)")
    sweep.add_argument("--strategy", choices=["grid", "random", "tpe"], help="server default: tpe")
    sweep.add_argument("--max-trials", type=int)
    sweep.add_argument("--max-seconds", type=float)
    sweep.add_argument("--parallelism", type=int)
    sweep.add_argument("--metric", help="default val_accuracy (classification) or val_loss")
    sweep.add_argument("--direction", choices=["minimize", "maximize"])
    sweep.add_argument("--pruner", choices=["median", "hyperband", "none"])
    sweep.add_argument("--seed", type=int)
    sweep.add_argument("--sweep", metavar="JSON", help="more fields of the sweep body (POST /v1/sweeps), as a JSON "
                                                       "object or a .json file: training, name, "
                                                       "pruner_warmup_epochs, ... (the flags above win)")
    sweep.add_argument("--no-wait", action="store_true", help="print the sweep id and return")
    _upload_options(sweep)
    sweep.set_defaults(func=_sweep)

    upload = sub.add_parser("upload", parents=[common], help="upload a data file; print the data set id",
                            description="Upload a data file (POST /v1/datasets) with the form fields given as "
                                        "flags; prints the data set id (its columns' types on stderr), for "
                                        "train/sweep --data ID.")
    upload.add_argument("file", metavar="FILE", help="data file (.csv, .tsv, .csv.gz, .parquet, .arrow, .npz)")
    _upload_options(upload)
    upload.set_defaults(func=_upload)

    status = sub.add_parser("sweep-status", parents=[common], help="show a sweep's ranked trials (--watch: follow it)",
                            description="Print a sweep's status and its trials, best first; with --watch follow "
                                        "it with a progress bar to its end first (Ctrl-C stops watching only).")
    status.add_argument("sweep_id", metavar="SWEEP")
    status.add_argument("--watch", action="store_true", help="follow the sweep with a progress bar until it ends")
    status.set_defaults(func=_sweep_status)

    sweep_cancel = sub.add_parser("sweep-cancel", parents=[common], help="cancel a running sweep and its trials")
    sweep_cancel.add_argument("sweep_id", metavar="SWEEP")
    sweep_cancel.set_defaults(func=_sweep_cancel)

    watch = sub.add_parser("watch", parents=[common], help="follow a job with a live progress bar")
    watch.add_argument("job_id", metavar="JOB")
    watch.set_defaults(func=_watch)

    predict = sub.add_parser("predict", parents=[common], help="predict the rows of a CSV file")
    predict.add_argument("model_id", metavar="MODEL")
    predict.add_argument("rows", help="CSV (or .csv.gz) with a header row, read by the server as an upload is "
                                      "(columns matched by name to the model's features; one request, within "
                                      "MLP_MAX_UPLOAD_BYTES)")
    predict.add_argument("--encoding", help="the file's text encoding when not UTF-8/UTF-16/32 with a BOM "
                                            "(e.g. cp1252), sent as the Content-Type's charset")
    predict.add_argument("-o", "--output", help="CSV to write (default: standard output)")
    predict.add_argument("--proba", action="store_true", help="add one probability column per class")
    predict.set_defaults(func=_predict)

    jobs = sub.add_parser("jobs", parents=[common], help="list jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=_jobs)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id", metavar="JOB")
    cancel.set_defaults(func=_cancel)

    delete = sub.add_parser("delete-job", parents=[common], help="delete a finished job and its checkpoints")
    delete.add_argument("job_id", metavar="JOB")
    delete.add_argument("--delete-model", action="store_true", help="delete its trained model too")
    delete.set_defaults(func=_delete_job)

    models = sub.add_parser("models", parents=[common], help="list trained models, newest first")
    models.add_argument("--limit", type=int, default=20)
    models.set_defaults(func=_models)

    export = sub.add_parser("export", parents=[common], help="save a model as ONNX or as the engine's .npz")
    export.add_argument("model_id", metavar="MODEL")
    export.add_argument("-o", "--output", help="file to write (default: MODEL.FORMAT)")
    export.add_argument("--format", choices=["onnx", "npz"], default="onnx")
    export.set_defaults(func=_export)


def run(args: argparse.Namespace) -> int:
    """Run one client command; API errors become a message on stderr and exit status 1."""
    for name in ("httpx", "httpcore"):       # one log line per request is noise in a command's output
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with Client(args.url, api_key=args.api_key) as client:
            return args.func(client, args)
    except JobFailed as exc:
        print(f"error: job {exc.job.id if exc.job else ''} failed: {exc.detail}", file=sys.stderr)
        return 1
    except MLPError as exc:
        status = f"{exc.status} " if exc.status is not None else ""
        detail = exc.detail if isinstance(exc.detail, str) else _readable(exc.detail)
        print(f"error: {status}{detail}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _readable(detail: Any) -> str:
    """A 422's list of pydantic errors as ``field.path: message; ...`` (without ``body``/``query``), else JSON."""
    if isinstance(detail, list) and detail and all(isinstance(e, dict) and "msg" in e for e in detail):
        parts = []
        for e in detail:
            loc = [str(p) for p in e.get("loc", [])]
            loc = loc[1:] if loc and loc[0] in ("body", "query", "path") else loc
            msg = str(e["msg"]).removeprefix("Value error, ")
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        return "; ".join(parts)
    return json.dumps(detail)


# -- commands ----------------------------------------------------------------------------------------------
def _looks_like_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value) and not Path(value).exists()


def _job_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(args.job) if args.job else {}
    if not isinstance(body, dict):
        raise ValueError("--job must be a JSON object")
    for field in ("epochs", "batch_size", "validation_split", "weight_decay", "seed"):
        value = getattr(args, field)
        if value is not None:
            body[field] = value
    if args.optimizer or args.learning_rate is not None or args.momentum is not None:
        opt = dict(body.get("optimizer") or {})
        opt["type"] = args.optimizer or opt.get("type") or ("sgd" if args.momentum is not None else "adam")
        if args.learning_rate is not None:
            opt["learning_rate"] = args.learning_rate
        if args.momentum is not None:
            opt["momentum"] = args.momentum
        body["optimizer"] = opt
    if args.patience is not None or args.monitor:
        early = dict(body.get("early_stopping") or {})
        if args.patience is not None:
            early["patience"] = args.patience
        if args.monitor:
            early["monitor"] = args.monitor
        body["early_stopping"] = early
    return body


def _upload_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The upload flags given, as form fields (``--upload`` JSON first, the named flags over it)."""
    fields: dict[str, Any] = json.loads(args.upload) if args.upload else {}
    if not isinstance(fields, dict):
        raise ValueError("--upload must be a JSON object of form fields")
    for name in UPLOAD_FIELDS:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    return fields


def _dataset(client: Client, source: str, args: argparse.Namespace, created: list):
    """The data set ``source`` names (an id), or the file uploaded with the upload flags (appended to
    ``created``, which the command removes if a later step fails)."""
    fields = _upload_fields(args)
    if _looks_like_id(source):
        if fields:
            raise ValueError(f"{source} is a data set id: upload options ({', '.join(sorted(fields))}) apply to a "
                             "data file only")
        return client.get_dataset(source)
    target, task, name = fields.pop("target", None), fields.pop("task", None), fields.pop("name", None)
    ds = client.upload_dataset(source, target=target, task=task, name=name, **fields)
    created.append(ds)
    print(f"data set {ds.id}: {ds.n_samples} rows, {ds.n_features} features, {ds.task}"
          + (f", classes {ds.classes}" if ds.classes else ""), file=sys.stderr)
    return ds


def _remove(client: Client, created: list) -> None:
    """Delete what a failed command created (networks, data sets), newest first; best effort."""
    for obj in reversed(created):
        kind = "network" if isinstance(obj, Network) else "data set"
        try:
            (client.delete_network if kind == "network" else client.delete_dataset)(obj)
            print(f"removed {kind} {obj.id} (the command failed)", file=sys.stderr)
        except (MLPError, OSError) as exc:
            print(f"warning: could not remove {kind} {obj.id}: {exc}", file=sys.stderr)


def _train(client: Client, args: argparse.Namespace) -> int:
    body = _job_body(args)
    created: list = []      # what this command made; removed if a later step fails (no orphan network)
    try:
        spec = None
        if _looks_like_id(args.network):
            network = client.get_network(args.network)
        else:               # read now (a bad file fails before any upload), created once the data is in
            spec = json.loads(Path(args.network).read_text())
        dataset = _dataset(client, args.data, args, created)
        if args.validation_data:
            body["validation_dataset_id"] = _dataset(client, args.validation_data, args, created).id
        if spec is not None:
            network = client.create_network(spec)
            created.append(network)
            print(f"network {network.id}: {network.name}", file=sys.stderr)
        job = client.train(network, dataset, **body)
    except BaseException:
        _remove(client, created)
        raise
    print(f"job {job.id} {job.status}", file=sys.stderr)
    if not args.watch:
        print(job.id)
        return 0
    return _follow(job)


def _json_object(value: str, flag: str) -> dict[str, Any]:
    """A flag's JSON object, given inline or as a .json file (ValueError naming the flag otherwise)."""
    try:
        obj = json.loads(Path(value).read_text() if value.endswith(".json") else value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{flag} must be a JSON object")
    return obj


def _sweep(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = _json_object(args.sweep, "--sweep") if args.sweep else {}
    body.update({k: v for k, v in (
        ("strategy", args.strategy), ("max_trials", args.max_trials), ("max_seconds", args.max_seconds),
        ("parallelism", args.parallelism), ("metric", args.metric), ("direction", args.direction),
        ("pruner", args.pruner), ("seed", args.seed), ("validation_split", args.validation_split)) if v is not None})
    if args.space:
        body["space"] = _json_object(args.space, "--space")
    created: list = []
    try:
        dataset = _dataset(client, args.data, args, created)
        if args.validation_data:
            body["validation_dataset_id"] = _dataset(client, args.validation_data, args, created).id
        sweep = client.sweep(dataset, **body)
    except BaseException:
        _remove(client, created)
        raise
    print(f"sweep {sweep.id} {sweep.status}", file=sys.stderr)
    if args.no_wait:
        print(sweep.id)
        return 0
    return _follow_sweep(sweep)


def _upload(client: Client, args: argparse.Namespace) -> int:
    ds = _dataset(client, args.file, args, [])
    for col in ds.columns or []:
        extra = (f" {col['n_categories']} categories" if col["type"] == "categorical" else "") + \
            (f", {col['missing']} missing" if col.get("missing") else "")
        print(f"  {col['name']}: {col['type']}{extra}", file=sys.stderr)
    print(ds.id)
    return 0


def _sweep_status(client: Client, args: argparse.Namespace) -> int:
    sweep = client.get_sweep(args.sweep_id)
    if args.watch and sweep.status == "running":
        return _follow_sweep(sweep, limit=None)
    return _print_sweep(sweep, limit=None)


def _sweep_cancel(client: Client, args: argparse.Namespace) -> int:
    sweep = client.get_sweep(args.sweep_id).cancel()
    print(f"sweep {sweep.id} {sweep.status}")
    return 0


def _follow_sweep(sweep: Sweep, limit: int | None = 10) -> int:
    """Follow a sweep with a progress bar, then print it; Ctrl-C stops watching (exit 130), not the sweep."""
    try:
        sweep.wait(progress=True)
    except KeyboardInterrupt:
        print(f"\nstopped watching; sweep {sweep.id} goes on (mlp-service sweep-status --watch {sweep.id}, "
              f"mlp-service sweep-cancel {sweep.id})", file=sys.stderr)
        return 130
    except SweepFailed:
        pass  # printed below with its trials and their errors
    return _print_sweep(sweep, limit)


def _print_sweep(sweep: Sweep, limit: int | None = 10) -> int:
    """The sweep's status, its counts and its trials best first (the first ``limit``, then every failed one left,
    with its error; the count line says how many are shown and left out); 0 once it succeeded (or while
    running)."""
    print(f"sweep {sweep.id} {sweep.status}" + (f": {sweep.data.get('reason')}" if sweep.data.get("reason") else ""))
    trials = sweep.trials
    counts = sweep.data.get("counts") or {}
    shown = trials if limit is None else trials[:limit] + [t for t in trials[limit:] if t["status"] == "failed"]
    left = len(trials) - len(shown)
    failed_too = " and every failed one" if len(shown) > (limit or 0) else ""
    print(f"  {len(trials)} trial(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
          + (f"; {len(shown)} shown (the {limit} best{failed_too}), {left} left out (mlp-service sweep-status "
             f"{sweep.id} for all)" if left else ""))
    for t in shown:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        print(f"  #{t['number']:<3} {t['status']:<9} {sweep.data['metric']}={value} epoch {t['epoch']}"
              f"{_trial_job(t)} {json.dumps(t['params'], separators=(',', ':'))}")
        if t["status"] == "failed" and t.get("error"):
            print(f"       error: {t['error']}")
    if sweep.data.get("best_model_id"):
        print(f"best model {sweep.data['best_model_id']}")
    return 0 if sweep.status in ("succeeded", "running") else 1


def _trial_job(trial: dict[str, Any]) -> str:
    """What a pruned or cancelled trial's job did, when the line does not say it already (its job cancelled at the
    trial's epoch): `` (job cancelled at epoch 7)``, `` (job succeeded, 20 epochs)``; else ``""``. A pruned trial's
    job may train on after the epoch it was judged at, even to its end, before the verdict reaches it."""
    status, epoch = trial.get("job_status"), trial.get("job_epoch")
    if trial["status"] not in ("pruned", "cancelled") or status is None or \
            (status == "cancelled" and epoch in (None, trial["epoch"])):
        return ""
    if epoch is None or status == "queued":
        return f" (job {status})"
    if status == "succeeded":
        return f" (job succeeded, {epoch} epoch{'' if epoch == 1 else 's'})"
    return f" (job {status} at epoch {epoch})"


def _watch(client: Client, args: argparse.Namespace) -> int:
    return _follow(client.get_job(args.job_id))


def _follow(job: Job) -> int:
    t0 = time.monotonic()
    try:
        job.wait(progress=True)
    except KeyboardInterrupt:
        print(f"\nstopped watching; job {job.id} goes on (mlp-service watch {job.id}, "
              f"mlp-service cancel {job.id})", file=sys.stderr)
        return 130
    except JobFailed as exc:
        print(f"error: job {job.id} failed: {exc.detail}", file=sys.stderr)
        return 1
    print(f"job {job.id} {job.status} after {time.monotonic() - t0:.1f} s")
    if job.status != "succeeded":
        print(f"error: {job.data.get('error') or job.status}", file=sys.stderr)
        return 1
    model = job.model
    print(f"model {model.id}")
    for key in METRIC_ORDER:
        if model.metrics.get(key) is not None:
            value = model.metrics[key]
            print(f"  {key:<15} {value:.4f}" if isinstance(value, float) else f"  {key:<15} {value}")
    return 0


def _csv_body(path: str) -> bytes:
    """The file's bytes as the CSV body of a predict request (a ``.gz`` decompressed here: bodies are not
    Content-Encoded)."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.read()


def _predict(client: Client, args: argparse.Namespace) -> int:
    model: Model = client.get_model(args.model_id)
    # The file goes to the server as it is (text/csv): it reads it as it reads an upload (encoding, delimiter,
    # decimal comma, NA tokens, quotes, categorical cells as written) and refuses what it cannot match by name.
    ctype = "text/csv" + (f"; charset={args.encoding}" if args.encoding else "")
    out = client._json("POST", f"/v1/models/{model.id}/predict", content=_csv_body(args.rows),
                       headers={"Content-Type": ctype})
    preds, probs = out["predictions"], out.get("probabilities") or []
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        writer = csv.writer(out)
        classes = model.classes or []
        writer.writerow(["prediction"] + ([f"p_{c}" for c in classes] if args.proba and probs else []))
        for i, p in enumerate(preds):
            cells = list(p) if isinstance(p, list) else [p]
            writer.writerow(cells + (probs[i] if args.proba and probs else []))
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"{len(preds)} predictions written to {args.output}", file=sys.stderr)
    return 0


def _table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _metric(metrics: dict[str, Any] | None) -> str:
    m = metrics or {}
    for key in ("val_accuracy", "val_r2", "val_loss", "train_accuracy", "train_loss"):
        if m.get(key) is not None:
            return f"{key}={m[key]:.4f}"
    return ""


def _jobs(client: Client, args: argparse.Namespace) -> int:
    jobs = client.list_jobs(status=args.status, limit=args.limit)
    rows = [[j.id, j.status, f"{j.progress['epoch']}/{j.progress['epochs']}", _metric(j.metrics),
             j.model_id or "", j.created_at[:19]] for j in jobs]
    _table(["ID", "STATUS", "EPOCH", "METRIC", "MODEL", "CREATED"], rows)
    return 0


def _cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.get_job(args.job_id).cancel()
    print(f"job {job.id} {job.status}" + (" (stopping)" if job.status == "running" else ""))
    return 0


def _delete_job(client: Client, args: argparse.Namespace) -> int:
    client.get_job(args.job_id).delete(delete_model=args.delete_model)
    print(f"job {args.job_id} deleted" + (" with its model" if args.delete_model else ""))
    return 0


def _models(client: Client, args: argparse.Namespace) -> int:
    models = client.list_models(limit=args.limit)
    rows = [[m.id, m.task, m.input_dim, _metric(m.metrics), m.job_id or "", m.created_at[:19]] for m in models]
    _table(["ID", "TASK", "INPUTS", "METRIC", "JOB", "CREATED"], rows)
    return 0


def _export(client: Client, args: argparse.Namespace) -> int:
    model = client.get_model(args.model_id)
    path = model.export(args.output or f"{model.id}.{args.format}", format=args.format)
    print(f"model {model.id} written to {path} ({path.stat().st_size:,} bytes)")
    return 0
