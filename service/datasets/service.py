"""Dataset service functions: parse an upload, store its arrays atomically, read, list, delete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
from sqlalchemy.orm import Session

from core.preprocessing import text_key
from service import quotas
from service.database import get_owned, get_owned_or_raise, lock_for_write, new_id, page
from service.datasets import archive
from service.datasets.parsing import ParseError, numeric_columns, parse_json_dataset, parse_npz, parse_table
from service.datasets.tables import Dataset
from service.datasets.upload import Upload
from service.errors import InvalidInput, TooLarge
from service.jobs import usage as jobs_usage
from service.storage import Storage
from service.sweeps import usage as sweeps_usage

MAX_NAME = 200
MAX_LABEL_CHARS = 256       # a feature name or a class label (they are echoed in every answer about the data set)


def x_key(dataset_id: str) -> str:
    """Storage key of the feature matrix (float32 .npy)."""
    return f"datasets/{dataset_id}/X.npy"


def y_key(dataset_id: str) -> str:
    """Storage key of the targets (.npy: int64 class indices or float32 values)."""
    return f"datasets/{dataset_id}/y.npy"


def _names(value: str | None, field: str) -> tuple[str, ...]:
    """A form field listing column names: comma-separated, or a JSON array when a name holds a comma."""
    if not value:
        return ()
    if value.lstrip().startswith("["):
        try:
            names = orjson.loads(value)
        except orjson.JSONDecodeError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            what = "tokens" if field == "na_values" else "column names"
            raise ParseError(f"{field} must be comma-separated {what} or a JSON array of strings")
        return tuple(names) if field == "na_values" else tuple(text_key(n) for n in names)
    return tuple(text_key(n) for n in value.split(",") if n.strip())


def _table_options(fields: dict[str, str], settings) -> dict:
    """The tabular reader's options from the upload's form fields (422 naming the field on bad values)."""
    opts: dict = {"target": text_key(fields.get("target") or "") or None, "categorical": _names(fields.get("categorical"),
                  "categorical"), "ignore": _names(fields.get("ignore"), "ignore")}
    if fields.get("delimiter"):
        opts["delimiter"] = fields["delimiter"]
    if "na_values" in fields:
        raw = fields["na_values"]
        if raw.lstrip().startswith("["):
            opts["na_values"] = _names(raw, "na_values")
        else:
            opts["na_values"] = tuple(t.strip() for t in raw.split(","))
    if fields.get("encoding"):
        opts["encoding"] = fields["encoding"]
    if fields.get("decimal"):
        raw = {"comma": ",", "point": ".", "dot": "."}.get(fields["decimal"].lower(), fields["decimal"])
        if raw not in (".", ","):
            raise ParseError(f"decimal must be '.' or ',' (or point, comma), got {fields['decimal']!r}")
        opts["decimal"] = raw
    if fields.get("thousands"):
        raw = {"point": ".", "dot": ".", "comma": ",", "space": " ", "apostrophe": "'"}.get(
            fields["thousands"].lower(), fields["thousands"])
        if len(raw) != 1 or raw.isalnum() or raw in "\r\n\"+-":
            raise ParseError(f"thousands must be one character such as . , ' or space (or point, comma, space, "
                             f"apostrophe), got {fields['thousands']!r}")
        opts["thousands"] = raw
    if fields.get("max_categories"):
        raw = fields["max_categories"]
        if not raw.isdigit() or int(raw) < 1:
            raise ParseError(f"max_categories must be an integer >= 1, got {raw!r}")
        opts["max_categories"] = int(raw)
    if fields.get("drop_missing_target"):
        raw = fields["drop_missing_target"].lower()
        if raw not in ("true", "false", "1", "0", "yes", "no"):
            raise ParseError(f"drop_missing_target must be true or false, got {fields['drop_missing_target']!r}")
        opts["drop_missing_target"] = raw in ("true", "1", "yes")
    if settings is not None:
        opts["max_columns"] = settings.max_columns
        opts["max_decoded_bytes"] = settings.max_upload_bytes
    return opts


TABLE_FIELDS = ("delimiter", "na_values", "encoding", "decimal", "thousands", "categorical", "ignore", "max_categories",
                "drop_missing_target")
# how text is read: Parquet and Arrow are typed
CSV_FIELDS = ("delimiter", "na_values", "encoding", "decimal", "thousands")


def parse(upload: Upload, settings=None):
    """Parse the upload into (name, ParsedDataset), a CSV while it arrives (its spool); ParseError becomes a 422."""
    try:
        if upload.kind == "json":
            try:
                doc = orjson.loads(upload.body)
            except orjson.JSONDecodeError as exc:
                raise ParseError(f"the body is not valid JSON: {exc}") from None
            name, parsed = parse_json_dataset(doc)
            parsed.columns = numeric_columns(parsed.X, parsed.feature_names)
            return name, parsed
        task = upload.fields.get("task") or None
        if upload.kind == "npz":
            extra = [f for f in TABLE_FIELDS + ("target",) if upload.fields.get(f)]
            if extra:
                raise ParseError(f"form field {extra[0]!r} applies to tabular files (.csv, .parquet, .arrow), "
                                 f"not to .npz")
            parsed = parse_npz(upload.path, task=task)
            parsed.columns = numeric_columns(parsed.X, parsed.feature_names)
        else:
            extra = [f for f in CSV_FIELDS if upload.fields.get(f)] if upload.kind in ("parquet", "arrow") else []
            if extra:
                raise ParseError(f"form field {extra[0]!r} applies to CSV files; a {upload.kind.capitalize()} file's "
                                 f"columns are typed and its missing values are nulls")
            # X is built in a .npy file next to the upload's (the store's scratch space): stored by a rename
            parsed = parse_table(upload.spool or upload.path, kind=upload.kind, task=task,
                                 x_dir=upload.path.parent if upload.path is not None else None,
                                 **_table_options(upload.fields, settings))
        name = upload.fields.get("name") or (_stem(upload.filename) if upload.filename else None)
        return name, parsed
    except ParseError as exc:
        raise InvalidInput(str(exc)) from None


def _check_npz(session: Session, settings, *, owner: str, path) -> None:
    """422 for an archive numpy could not have written; 413 when its arrays would pass the upload limit or a
    quota once decompressed (the members' declared shapes are summed; nothing is inflated)."""
    try:
        declared = archive.declared_bytes(path)
    except ParseError as exc:
        raise InvalidInput(str(exc)) from None
    if declared > settings.max_upload_bytes:
        raise TooLarge(f"the .npz holds arrays of {declared:,} bytes once decompressed, more than the limit of "
                       f"{settings.max_upload_bytes:,} bytes (MLP_MAX_UPLOAD_BYTES); nothing is stored")
    quotas.check_dataset(session, settings, owner=owner, size_bytes=declared)


def _check_labels(parsed) -> int:
    """422 for a feature name or class label over MAX_LABEL_CHARS; the bytes of the stored arrays, which count
    against the stored-bytes quota when more than the upload (a compressed file)."""
    for i, n in enumerate(parsed.feature_names or []):
        if len(str(n)) > MAX_LABEL_CHARS:
            raise InvalidInput(f"feature name {i} is {len(str(n)):,} characters long; at most {MAX_LABEL_CHARS}")
    for i, c in enumerate(parsed.classes or []):
        if isinstance(c, str) and len(c) > MAX_LABEL_CHARS:
            raise InvalidInput(f"class label {i} is {len(c):,} characters long; at most {MAX_LABEL_CHARS}")
    return int(parsed.X.size) * 4 + int(np.asarray(parsed.y).nbytes)


def _stem(filename: str) -> str:
    """The file name without its directory and extension(s): 'data.csv.gz' -> 'data'."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for ext in (".gz",):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return Path(name).stem or name


def create(session: Session, *, owner: str, storage: Storage, upload: Upload, settings=None) -> Dataset:
    """Parse, then store X.npy and y.npy atomically and commit the row last; on failure nothing is left."""
    if settings is not None:
        quotas.check_dataset(session, settings, owner=owner, size_bytes=upload.size_bytes)
        if upload.kind == "npz":  # what the archive would decompress to, refused before it is inflated
            _check_npz(session, settings, owner=owner, path=upload.path)
    if upload.parse_error is not None:
        raise upload.parse_error
    name, parsed = upload.parsed if upload.parsed is not None else parse(upload, settings)
    try:
        return _store(session, owner=owner, storage=storage, upload=upload, settings=settings, name=name,
                      parsed=parsed)
    finally:
        parsed.discard()                # X's temporary file, unless it was stored (renamed)


def _store(session: Session, *, owner: str, storage: Storage, upload: Upload, settings, name, parsed) -> Dataset:
    """Check the name and quotas, store X.npy and y.npy atomically and commit the row last."""
    if upload.kind != "json":           # the name field may have come after the file part
        name = upload.fields.get("name") or (_stem(upload.filename)[:MAX_NAME] if upload.filename else None)
    name = (name or "dataset").strip() or "dataset"
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name must be at most {MAX_NAME} characters, got {len(name)}")
    size_bytes = max(int(upload.size_bytes), _check_labels(parsed))
    if settings is not None and size_bytes > upload.size_bytes:
        quotas.check_dataset(session, settings, owner=owner, size_bytes=size_bytes)
    dataset_id = new_id()
    try:
        if parsed.x_file is not None:   # X was built in its .npy file: fsynced and renamed, not written again
            storage.publish_file(x_key(dataset_id), parsed.x_file)
        else:
            storage.save_array(x_key(dataset_id), np.ascontiguousarray(parsed.X, dtype=np.float32))
        storage.save_array(y_key(dataset_id), np.ascontiguousarray(parsed.y))
        row = Dataset(id=dataset_id, owner=owner, name=name, task=parsed.task, n_samples=int(parsed.X.shape[0]),
                      n_features=int(parsed.X.shape[1]), n_outputs=parsed.n_outputs,
                      feature_names=parsed.feature_names, classes=parsed.classes, target=parsed.target,
                      size_bytes=size_bytes, columns=parsed.columns, n_dropped=parsed.n_dropped)
        if settings is not None:  # again under the tenant's lock: concurrent uploads cannot all pass the quota
            lock_for_write(session, rows=[(Dataset, dataset_id)], tenant=owner)
            quotas.check_dataset(session, settings, owner=owner, size_bytes=size_bytes, locked=True)
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        storage.delete_prefix(f"datasets/{dataset_id}")
        raise
    return row


def get(session: Session, *, owner: str, dataset_id: str) -> Dataset | None:
    """The caller's data set with this id, or None."""
    return get_owned(session, Dataset, owner=owner, row_id=dataset_id)


def get_or_raise(session: Session, *, owner: str, dataset_id: str) -> Dataset:
    """The caller's data set, or NotFound (also for another tenant's id)."""
    return get_owned_or_raise(session, Dataset, owner=owner, row_id=dataset_id, noun="dataset")


def load_arrays(storage: Storage, dataset: Dataset, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 (n, d), y) of a data set, memory-mapped read-only by default."""
    return storage.load_array(x_key(dataset.id), mmap=mmap), storage.load_array(y_key(dataset.id), mmap=mmap)


def list_(session: Session, *, owner: str, limit: int, offset: int) -> tuple[list[Dataset], int]:
    """One page of the caller's data sets, newest first, and the total count."""
    return page(session, Dataset, Dataset.owner == owner, limit=limit, offset=offset)


def delete(session: Session, *, owner: str, storage: Storage, dataset_id: str) -> None:
    """Delete the row, then its arrays; 409 while a queued or running job or a running sweep still reads it."""
    lock_for_write(session, rows=[(Dataset, dataset_id)])  # serialised with POST /v1/jobs using it
    row = get_or_raise(session, owner=owner, dataset_id=dataset_id)
    # the sweep first: a running sweep's trial job is named by its sweep (cancelling that job would not help)
    sweeps_usage.ensure_dataset_unused(session, owner=owner, dataset_id=dataset_id)
    jobs_usage.ensure_unused(session, owner=owner, dataset_id=dataset_id)
    session.delete(row)
    session.commit()
    storage.delete_prefix(f"datasets/{dataset_id}")
