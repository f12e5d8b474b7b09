"""The score store of a folder CRM (``data.source: folder``): Parquet files, one atomic switch per run.

The same rules as the SQL store (:mod:`crmscore.io.scores`, docs/scoring.md): every frame is
checked before anything is written; a run already in the history (same ``(run_id, as_of)``) is a
replay and writes nothing; a latest row is replaced only by a newer run (a later ``as_of``, or
the same ``as_of`` from another run scored at the same time or later), so a backfill appends
history without overwriting newer latest rows; the shrink guard (``scoring.min_rows_ratio``) and
the input volume guard (``scoring.max_input_drop``, :func:`crmscore.io.score_runs.input_drops`)
compare with the run of the nearest earlier ``as_of``; the newest run marks (``absent_since``)
or deletes (``scoring.absent_rows``) the latest rows of customers (leads) it did not score; each
run written gets one row in the run log.

Layout of the scores folder (``scoring.scores_folder``, default ``<data.folder>/scores``)::

    manifest.json                         the pointer: the only file a reader starts from
    customer_scores.<gen>.parquet         latest rows (one per customer) of generation <gen>
    lead_scores.<gen>.parquet
    score_runs.<gen>.parquet              the run log (JSON columns as text, as in SQL)
    history/customer.<gen>.parquet        the rows of the run that made generation <gen>
    history/lead.<gen>.parquet
    .lock                                 the writers' lock (see below)

**Atomic runs.** A run writes a new generation: its history part files, the new latest files
and the new run log, each to a temporary file in the same folder, ``fsync``-ed, then renamed to
its (new, unique) name; then the manifest, which names the current latest files, run log and
every history part (with its run and row count), is written the same way and switched with one
``os.replace`` (the folder is ``fsync``-ed after it). Readers read only the files the manifest
names, so until that rename the previous state is what every reader sees, exactly; after it,
the new one. Files of a killed run (temporary files, a generation never named) are ignored and
deleted by the next writer, as are the files of superseded generations.

**Lock.** One writer at a time per folder: an exclusive ``fcntl.flock`` on ``.lock``, polled
for at most ``scoring.lock_timeout_s`` (then
:class:`~crmscore.core.score_contract.LockTimeoutError`, naming the holder as
:mod:`crmscore.io.score_lock` does). The holder records itself in the file (pid, host,
application, since). The kernel releases the lock when its process ends, however it ends, so a
killed writer never leaves a stale lock behind; a record naming a process that is gone is only
reported as stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.config import Config, ScoringConfig
from crmscore.core.score_contract import InputGuardError, ScoreValidationError
from crmscore.io.score_lock import LockHolder, _advice, _alive, _wait, application_name
from crmscore.io.score_runs import _PREVIOUS_COLUMNS, RunRecord, input_drops
from crmscore.io.score_tables import _KINDS, LATEST_ONLY_COLUMNS, RUN_COLUMNS, _Kind, _normalise
from crmscore.io.scores import WriteResult, _check

__all__ = [
    "MANIFEST",
    "FileScoreWriter",
    "read_previous_score_files",
    "read_score_files",
    "read_score_runs",
    "scores_folder",
    "write_score_files",
]

log = logging.getLogger(__name__)

#: the pointer file: names every file of the current generation
MANIFEST = "manifest.json"
_LOCK = ".lock"
_TMP = ".tmp-"

#: test hook: called with the step name (``history``, ``latest``, ``runs``, ``manifest``,
#: ``switched``) before each step of a write; None in production
_STEP_HOOK: Callable[[str], None] | None = None

FileWhich = Literal["customer_scores", "customer_history", "lead_scores", "lead_history"]


def scores_folder(cfg: Config) -> Path:
    """The folder store of ``cfg``: ``scoring.scores_folder``, default ``<data.folder>/scores``."""
    folder = cfg.scoring.scores_folder
    return Path(folder) if folder is not None else Path(cfg.data.folder) / "scores"


def _step(name: str) -> None:
    if _STEP_HOOK is not None:
        _STEP_HOOK(name)


# ---------------------------------------------------------------------------------- files


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, ``fsync`` it, rename it to ``path``."""
    tmp = path.with_name(f"{_TMP}{os.getpid()}-{os.urandom(4).hex()}-{path.name}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    _atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists():
        return {"generation": 0, "latest": {}, "runs": None, "history": []}
    return json.loads(path.read_text(encoding="utf-8"))


def _latest_columns(kind: _Kind) -> dict[str, str]:
    return {**kind.columns, **LATEST_ONLY_COLUMNS}


def _empty(columns: Mapping[str, str]) -> pd.DataFrame:
    return _normalise(pd.DataFrame({c: [] for c in columns}), columns)


def _read(folder: Path, name: str | None, columns: Mapping[str, str]) -> pd.DataFrame:
    if name is None:
        return _empty(columns)
    df = pd.read_parquet(folder / name)
    for c in columns:
        if c not in df:
            df[c] = None
    return _normalise(df[list(columns)], columns)


def _stored(df: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """``df`` as stored: dates as ``YYYY-MM-DD`` text (None for missing), the rest typed."""
    out = _normalise(df[list(columns)], columns)
    for c, k in columns.items():
        if k == "date":
            out[c] = pd.Series([None if v is None else str(v) for v in out[c]], index=out.index, dtype=object)
    return out


# -------------------------------------------------------------------------------- reading


def _snapshot(folder: Path, read: Callable[[dict[str, Any]], pd.DataFrame]) -> pd.DataFrame:
    """``read(manifest)``, again with a fresh manifest if a writer removed a file meanwhile."""
    for attempt in range(5):
        manifest = _read_manifest(folder)
        try:
            return read(manifest)
        except FileNotFoundError:
            if attempt == 4:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _history_of(folder: Path, manifest: dict[str, Any], kind: _Kind) -> pd.DataFrame:
    parts = [_read(folder, p["file"], kind.columns) for p in manifest["history"] if p["kind"] == kind.name]
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty(kind.columns)
    return pd.concat(parts, ignore_index=True)


def read_score_files(folder: str | Path, which: FileWhich = "customer_scores") -> pd.DataFrame:
    """Read one score table of the folder store, typed as :func:`crmscore.io.scores.read_scores`.

    ``which`` is ``customer_scores``, ``customer_history``, ``lead_scores`` or ``lead_history``;
    sorted by the key (the history by key, ``as_of``, ``run_id``). No store yet gives an empty
    frame with the columns. Only the files the manifest names are read.
    """
    root = Path(folder)
    kind = _KINDS["customer" if which.startswith("customer") else "lead"]

    def read(manifest: dict[str, Any]) -> pd.DataFrame:
        if which.endswith("scores"):
            df = _read(root, manifest["latest"].get(kind.name), _latest_columns(kind))
            order = [kind.key]
        else:
            df = _history_of(root, manifest, kind)
            order = [kind.key, "as_of", "run_id"]
        return df.sort_values(order, kind="stable").reset_index(drop=True)

    return _snapshot(root, read)


def read_score_runs(folder: str | Path) -> pd.DataFrame:
    """The run log of the folder store, oldest ``as_of`` first, JSON columns decoded."""
    root = Path(folder)
    df = _snapshot(root, lambda m: _read(root, m.get("runs"), RUN_COLUMNS))
    for c in ("model_versions", "input_counts", "rows", "notes"):
        df[c] = [None if v is None else json.loads(v) for v in df[c]]
    return df.sort_values(["as_of", "scored_at"], kind="stable").reset_index(drop=True)


def read_previous_score_files(folder: str | Path, *, as_of: Any) -> pd.DataFrame | None:
    """Each customer's churn probability from its newest run of a day before ``as_of``.

    The folder store's :func:`crmscore.io.scores.read_previous_scores` (the trend's previous
    run; a run of ``as_of`` itself never counts). None when there is no such row.
    """
    day = _day(as_of)
    latest = read_score_files(folder, "customer_scores")
    if len(latest) and latest["as_of"].map(lambda d: d < day).all():
        # as the SQL store: the latest rows, when all are of earlier days, are the answer
        return _normalise(latest[list(_PREVIOUS_COLUMNS)], _PREVIOUS_COLUMNS)
    hist = read_score_files(folder, "customer_history")
    hist = hist[hist["as_of"].map(lambda d: d < day).astype(bool)]
    if hist.empty:
        return None
    newest = hist.sort_values(["as_of", "scored_at"], kind="stable").drop_duplicates(
        "customer_id", keep="last"
    )
    return _normalise(newest[list(_PREVIOUS_COLUMNS)].reset_index(drop=True), _PREVIOUS_COLUMNS)


# ----------------------------------------------------------------------------------- lock


def _holder(path: Path) -> LockHolder:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pid, host = int(data["pid"]), str(data["host"])
        since = datetime.fromisoformat(str(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return LockHolder(known=False, unknown="another crmscore writer (it did not record itself yet)")
    stale = host == socket.gethostname() and not _alive(pid)
    return LockHolder(
        application=str(data.get("application") or "?"),
        pid=pid,
        since=since,
        age_s=(datetime.now(UTC) - since).total_seconds(),
        host=host,
        stale=stale,
    )


def _acquire(folder: Path, timeout_s: float, cancel: threading.Event | None = None) -> int:
    """The folder's write lock (an exclusive ``flock`` on ``.lock``); its file descriptor."""
    path = folder / _LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def attempt(_busy_s: float) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def message(holder: LockHolder, waited: float) -> str:
        return (
            f"the scores folder {folder} is still locked for writing by {holder.describe()} after "
            f"{waited:.1f} s (scoring.lock_timeout_s = {timeout_s:g}); nothing was written. "
            + _advice(holder, "stop that process (kill {pid})")
        )

    try:
        _wait(
            attempt,
            lambda: _holder(path),
            what=f"the write lock of the scores folder {folder}",
            timeout_s=timeout_s,
            timeout_message=message,
            cancel=cancel,
        )
    except BaseException:
        os.close(fd)
        raise
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "application": application_name(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return fd


def _release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    os.close(fd)  # releases the flock


def _clean(folder: Path, manifest: dict[str, Any]) -> int:
    """Delete the files the manifest does not name (a killed run's, superseded generations)."""
    keep = {MANIFEST, _LOCK, *manifest["latest"].values(), *(p["file"] for p in manifest["history"])}
    if manifest.get("runs"):
        keep.add(manifest["runs"])
    n = 0
    for path in [
        *folder.iterdir(),
        *((folder / "history").iterdir() if (folder / "history").is_dir() else []),
    ]:
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
                n += 1
    if n:
        log.debug("%s: removed %d files of no current generation", folder, n)
    return n


# --------------------------------------------------------------------------------- writer


def _day(value: Any) -> date:
    return pd.Timestamp(value).date()


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass
class _Pending:
    scores: pd.DataFrame
    held: np.ndarray | None


class FileScoreWriter:
    """One run's write to the folder store; the interface of :class:`crmscore.io.scores.ScoreWriter`.

    Entering takes the folder's lock (at most ``scoring.lock_timeout_s``) and runs the input
    volume guard (given ``run`` with input counts); :meth:`write` checks each frame at once (a
    failure raises :class:`ScoreValidationError`), and the replay and shrink checks against the
    manifest; leaving without an error writes the new generation and switches the manifest
    (nothing is written if the block raised). Rows held back for their reasons
    (``defer_reasons``) get them from :meth:`complete_reasons` before the write.

    Parameters
    ----------
    folder : str or Path
        The scores folder (created if missing).
    cfg : ScoringConfig
        ``min_rows_ratio``, ``max_input_drop``, ``absent_rows``, ``lock_timeout_s``; the table
        names are those of the messages and of ``result``.
    run : RunRecord, optional
        The run log's record (input counts: the input volume guard).
    force : bool
        Write even when the input volume guard refuses (logged, kept in ``result.notes``).
    """

    def __init__(
        self, folder: str | Path, cfg: ScoringConfig, *, run: RunRecord | None = None, force: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.cfg = cfg
        self.record = run
        self.force = force
        self.result = WriteResult()
        self._fd: int | None = None
        self._manifest: dict[str, Any] = {}
        self._given: dict[str, _Pending | None] = {}  # kind -> rows to write (None: a replay)
        self._cancel = threading.Event()

    # -- caller's side -------------------------------------------------------------------

    def __enter__(self) -> FileScoreWriter:
        log.info("writing scores to the folder %s (one atomic switch)", self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self._fd = _acquire(self.folder, self.cfg.lock_timeout_s, self._cancel)
        self.result.timings["lock"] = time.perf_counter() - t0
        try:
            self._manifest = _read_manifest(self.folder)
            _clean(self.folder, self._manifest)
            self._runs = _read(self.folder, self._manifest.get("runs"), RUN_COLUMNS)
            if self.record is not None:
                self._input_guard(self.record)
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is None:
                held = [k for k, p in self._given.items() if p is not None and p.held is not None]
                if held:
                    raise RuntimeError(
                        f"rows held back for their reasons were never completed: {sorted(held)}"
                    )
                t0 = time.perf_counter()
                self._commit()
                self.result.timings["commit"] = time.perf_counter() - t0
        finally:
            self._unlock()
        if exc is None:
            log.info(
                "scores written: latest %s, history %s",
                self.result.latest_updated,
                self.result.history_inserted,
            )

    def write(
        self,
        kind: str,
        scores: pd.DataFrame,
        expected_ids: Iterable[Any] | None = None,
        *,
        defer_reasons: np.ndarray | None = None,
        checked: bool = False,
    ) -> None:
        """Check ``scores`` of ``kind`` (``"customer"`` or ``"lead"``); they are written on leaving.

        Raises
        ------
        ScoreValidationError
            A check failed (frame, or shrink guard): nothing of the run is written.
        """
        spec = _KINDS[kind]
        if kind in self._given:
            raise ValueError(f"{kind} scores were already given to this writer")
        self._check_record(kind, scores)
        if not checked:
            t0 = time.perf_counter()
            _check(spec, scores, expected_ids, self.cfg)
            self.result.timings["validate"] = (
                self.result.timings.get("validate", 0.0) + time.perf_counter() - t0
            )
        held = None if defer_reasons is None else np.asarray(defer_reasons, dtype=bool)
        if held is not None and len(held) != len(scores):
            raise ValueError(f"defer_reasons has {len(held)} values for {len(scores)} rows")
        latest, hist = getattr(self.cfg, spec.latest_attr), getattr(self.cfg, spec.history_attr)
        self.result.rows[latest] = len(scores)
        self.result.latest_updated[latest] = self.result.history_inserted[hist] = 0
        run, day = str(scores["run_id"].iloc[0]), _day(scores["as_of"].iloc[0])
        done = self._run_rows(kind, run, day)
        if done:
            log.info("%s: run %r as of %s already written (%d rows): nothing to do", hist, run, day, done)
            self._given[kind] = None
            return
        self._check_shrink(spec, len(scores), run, day)
        self._given[kind] = _Pending(scores, held if held is not None and held.any() else None)

    def complete_reasons(self, kind: str, reasons: Any) -> None:
        """The ``top_reasons`` of the rows :meth:`write` held back (in frame order)."""
        pending = self._given.get(kind)
        if kind not in self._given or (pending is not None and pending.held is None):
            raise ValueError(f"no {kind} rows are held back")
        if pending is None:  # a replay: nothing to write
            return
        held = pending.held
        assert held is not None
        values = np.asarray(reasons, dtype=object)
        if values.shape != (int(held.sum()),):
            raise ValueError(f"{values.shape[0]} reasons for {int(held.sum())} held-back rows")
        bad = [v for v in values if v is not None and not isinstance(v, str)]
        if bad:
            raise ScoreValidationError(
                f"{kind} top_reasons must be text or None, got {type(bad[0]).__name__}"
            )
        scores = pending.scores.copy()
        top = np.full(len(scores), None, dtype=object)
        if "top_reasons" in scores:
            top[~held] = scores["top_reasons"].to_numpy(dtype=object)[~held]
        top[held] = values
        scores["top_reasons"] = top
        self._given[kind] = _Pending(scores, None)

    # -- checks ---------------------------------------------------------------------------

    def _check_record(self, kind: str, scores: pd.DataFrame) -> None:
        rec = self.record
        if rec is None or not len(scores) or "run_id" not in scores or "as_of" not in scores:
            return
        run, day = str(scores["run_id"].iloc[0]), _day(scores["as_of"].iloc[0])
        if (run, day) != (str(rec.run_id), _day(rec.as_of)):
            raise ValueError(
                f"{kind} scores are of run {run!r} as of {day}, the writer's run is {rec.run_id!r} "
                f"as of {_day(rec.as_of)}"
            )

    def _run_rows(self, kind: str, run: str, day: date) -> int:
        return sum(
            int(p["rows"])
            for p in self._manifest["history"]
            if p["kind"] == kind and p["run_id"] == run and p["as_of"] == str(day)
        )

    def _earlier(self, run: str, day: date) -> pd.DataFrame:
        """Run log rows at or before ``day`` other than ``(run, day)``, nearest first."""
        r = self._runs
        mask = (r["as_of"].map(lambda d: d <= day)) & ~((r["run_id"] == run) & (r["as_of"] == day))
        return r[mask.astype(bool)].sort_values(["as_of", "scored_at"], ascending=False, kind="stable")

    def _check_shrink(self, kind: _Kind, n_rows: int, run: str, day: date) -> None:
        what = getattr(self.cfg, kind.latest_attr)
        for row in self._earlier(run, day).itertuples(index=False):
            prev = self._run_rows(kind.name, str(row.run_id), row.as_of)
            if not prev:
                continue
            if n_rows < self.cfg.min_rows_ratio * prev:
                ratio = self.cfg.min_rows_ratio
                raise ScoreValidationError(
                    f"{what}: {n_rows} rows is fewer than {ratio:.0%} of the previous run's {prev} rows "
                    f"(run {row.run_id!r}, as of {row.as_of}); refusing to write a sharply shrunken "
                    "score set (check the input data, or lower scoring.min_rows_ratio knowingly)"
                )
            return
        log.info("%s: no earlier run at or before %s to compare the row count with", what, day)

    def _input_guard(self, rec: RunRecord) -> None:
        run, day = str(rec.run_id), _day(rec.as_of)
        logged = ((self._runs["run_id"] == run) & (self._runs["as_of"] == day)).any()
        if logged or any(self._run_rows(k, run, day) for k in _KINDS):
            log.info("run %r as of %s is already written: no input guard", run, day)
            return
        if rec.input_counts is None:
            log.info("run %r: no input counts given: no input volume guard", run)
            return
        earlier = self._earlier(run, day)
        earlier = earlier[earlier["input_counts"].notna()]
        if earlier.empty:
            log.info("input volume guard: no earlier run at or before %s to compare with", day)
            return
        prev = earlier.iloc[0]
        drops = input_drops(
            rec.input_counts,
            json.loads(prev["input_counts"]),
            self.cfg.max_input_drop,
            previous_run=str(prev["run_id"]),
            previous_as_of=prev["as_of"],
        )
        if not drops:
            return
        text = "; ".join(drops)
        if not self.force:
            raise InputGuardError(
                f"input volume dropped since the previous run: {text} (a truncated extract? check the "
                "input tables, or raise scoring.max_input_drop knowingly)"
            )
        note = f"input volume guard overridden (--force): {text}"
        log.warning("%s", note)
        self.result.notes.append(note)

    # -- the write --------------------------------------------------------------------------

    def _newer_than(self, as_of: date, scored_at: pd.Timestamp, run: str, kind: str) -> date | None:
        """``as_of`` of the first logged run newer than ``(run, as_of)`` with rows of ``kind``."""
        r = self._runs
        for row in r.sort_values(["as_of", "scored_at"], kind="stable").itertuples(index=False):
            newer = row.as_of > as_of or (row.as_of == as_of and _utc(row.scored_at) > scored_at)
            if (
                newer
                and not (row.run_id == run and row.as_of == as_of)
                and self._run_rows(kind, str(row.run_id), row.as_of)
            ):
                return row.as_of
        return None

    def _merge(self, kind: _Kind, scores: pd.DataFrame) -> pd.DataFrame:
        """The new latest table of ``kind``: ``scores`` upserted (only a newer run replaces), absent rows."""
        cols = _latest_columns(kind)
        name = getattr(self.cfg, kind.latest_attr)
        cur = _read(self.folder, self._manifest["latest"].get(kind.name), cols)
        new = _normalise(scores[list(kind.columns)], kind.columns).assign(absent_since=None)
        run, day, scored_at = (
            str(new["run_id"].iloc[0]),
            _day(new["as_of"].iloc[0]),
            _utc(new["scored_at"].iloc[0]),
        )
        was_empty = cur.empty
        key = kind.key
        cur_ids = cur[key].astype(str)
        new_ids = new[key].astype(str)
        old = cur.set_index(cur_ids)
        match = old.reindex(new_ids.to_numpy())
        present = new_ids.isin(cur_ids).to_numpy()
        cur_day = match["as_of"].to_numpy(dtype=object)
        cur_run = match["run_id"].to_numpy(dtype=object)
        cur_at = list(pd.to_datetime(match["scored_at"], utc=True))
        newer = np.array(
            [
                (not p) or (d is not None and (day > d or (day == d and r != run and scored_at >= a)))
                for p, d, r, a in zip(present, cur_day, cur_run, cur_at, strict=True)
            ],
            dtype=bool,
        )
        take = new[newer]
        kept = cur[~cur_ids.isin(set(new_ids[newer])).to_numpy()]
        self.result.latest_updated[name] = int(newer.sum())
        out = pd.concat([kept, take[list(cols)]], ignore_index=True) if len(kept) else take[list(cols)].copy()
        out = _normalise(out, cols)
        if was_empty:  # a first run: no rows of other runs
            self.result.absent[name] = 0
        else:
            since = self._newer_than(day, scored_at, run, kind.name)
            of_run = ((out["run_id"] == run) & (out["as_of"] == day)).to_numpy()
            rows = ~of_run if since is None else of_run
            target = rows & out["absent_since"].isna().to_numpy() if self.cfg.absent_rows == "mark" else rows
            n = int(target.sum())
            if self.cfg.absent_rows == "delete":
                out = out[~target].reset_index(drop=True)
            else:
                vals = out["absent_since"].to_numpy(dtype=object).copy()
                vals[target] = day if since is None else since
                out["absent_since"] = vals
            if since is None:
                self.result.absent[name] = n
            if n:
                done = "deleted" if self.cfg.absent_rows == "delete" else "marked absent_since"
                log.info("%s: %d rows of %ss absent from the newest run %s", name, n, kind.name, done)
        return out.sort_values(key, kind="stable").reset_index(drop=True)

    def _commit(self) -> None:
        """Write the new generation, switch the manifest, clean up."""
        todo = {k: p for k, p in self._given.items() if p is not None and len(p.scores)}
        if not todo:
            return
        gen = int(self._manifest["generation"]) + 1
        tag = f"{gen:08d}-{os.urandom(3).hex()}"
        manifest = {
            "generation": gen,
            "latest": dict(self._manifest["latest"]),
            "runs": self._manifest.get("runs"),
            "history": list(self._manifest["history"]),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (self.folder / "history").mkdir(exist_ok=True)
        written: dict[tuple[str, date], tuple[pd.Timestamp, dict[str, int]]] = {}
        for name, pending in todo.items():
            kind = _KINDS[name]
            scores = pending.scores
            run, day = str(scores["run_id"].iloc[0]), _day(scores["as_of"].iloc[0])
            _step("history")
            part = f"history/{name}.{tag}.parquet"
            _write_parquet(self.folder / part, _stored(scores, kind.columns))
            manifest["history"].append(
                {"kind": name, "file": part, "run_id": run, "as_of": str(day), "rows": len(scores)}
            )
            self.result.history_inserted[getattr(self.cfg, kind.history_attr)] = len(scores)
            entry = written.setdefault((run, day), (_utc(scores["scored_at"].iloc[0]), {}))
            entry[1][getattr(self.cfg, kind.latest_attr)] = len(scores)
        # the run log first (the absent-row rule asks which runs are newer), then the latest tables
        runs = self._runs
        new_rows = []
        for (run, day), (scored_at, rows) in written.items():
            if ((runs["run_id"] == run) & (runs["as_of"] == day)).any():
                continue
            rec = self.record if self.record is not None and str(self.record.run_id) == run else None
            notes = [*(rec.notes if rec is not None else ()), *self.result.notes]

            def as_json(value: Any) -> str | None:
                return None if value is None else json.dumps(value, sort_keys=True, default=str)

            new_rows.append(
                {
                    "run_id": run,
                    "as_of": day,
                    "scored_at": scored_at,
                    "model_versions": as_json(
                        None if rec is None else dict(rec.model_versions or {}) or None
                    ),
                    "settings_digest": None if rec is None else rec.settings_digest,
                    "input_counts": as_json(None if rec is None else rec.input_counts),
                    "rows": as_json(dict(rows)),
                    "notes": as_json(notes or None),
                }
            )
            self.result.runs_logged.append((run, str(day)))
        if new_rows:
            frame = _normalise(pd.DataFrame(new_rows, columns=list(RUN_COLUMNS)), RUN_COLUMNS)
            runs = _normalise(
                pd.concat([runs, frame], ignore_index=True) if len(runs) else frame, RUN_COLUMNS
            )
        self._runs = runs
        self._manifest["history"] = manifest["history"]  # so the rules see this run's rows
        for name, pending in todo.items():
            kind = _KINDS[name]
            _step("latest")
            latest = self._merge(kind, pending.scores)
            file = f"{getattr(self.cfg, kind.latest_attr)}.{tag}.parquet"
            _write_parquet(self.folder / file, _stored(latest, _latest_columns(kind)))
            manifest["latest"][name] = file
        _step("runs")
        runs_file = f"{self.cfg.runs_table}.{tag}.parquet"
        _write_parquet(self.folder / runs_file, _stored(runs, RUN_COLUMNS))
        manifest["runs"] = runs_file
        _step("manifest")
        text = json.dumps(manifest, indent=1, sort_keys=True)
        _atomic_write(self.folder / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self._manifest = manifest
        _step("switched")
        _clean(self.folder, manifest)

    def _unlock(self) -> None:
        if self._fd is not None:
            _release(self._fd)
            self._fd = None


def write_score_files(
    folder: str | Path,
    customer_scores: pd.DataFrame | None,
    lead_scores: pd.DataFrame | None = None,
    *,
    cfg: ScoringConfig,
    expected_customer_ids: Iterable[Any] | None = None,
    expected_lead_ids: Iterable[Any] | None = None,
    run: RunRecord | None = None,
    force: bool = False,
) -> WriteResult:
    """Validate and write one run's scores to the folder store atomically (:class:`FileScoreWriter`).

    Both frames are checked before the lock is taken; see :func:`crmscore.io.scores.write_scores`
    for the parameters and what is raised.
    """
    if customer_scores is None and lead_scores is None:
        raise ValueError("nothing to write: pass customer_scores and/or lead_scores")
    work = [
        (name, df, ids)
        for name, df, ids in (
            ("customer", customer_scores, expected_customer_ids),
            ("lead", lead_scores, expected_lead_ids),
        )
        if df is not None
    ]
    for name, df, ids in work:
        _check(_KINDS[name], df, ids, cfg)
    with FileScoreWriter(folder, cfg, run=run, force=force) as writer:
        for name, df, _ in work:
            writer.write(name, df, checked=True)
    return writer.result
