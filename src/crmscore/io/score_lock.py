"""The score writer's lock: wait at most ``scoring.lock_timeout_s``, and say who holds it.

One run at a time writes the score tables of a store (:class:`crmscore.io.scores.ScoreWriter`).
A run that finds the lock taken waits for it, logging what it waits for at once and then every
:data:`LOG_EVERY_S` seconds; after ``scoring.lock_timeout_s`` it gives up with
:class:`~crmscore.core.score_contract.LockTimeoutError`, naming the holder and what to do.
Nothing has been written by then.

* **PostgreSQL** (:func:`acquire_pg_lock`): a transaction-scoped advisory lock per schema
  (key ``hashtext('crmscore.scores:' || schema)``), polled with ``pg_try_advisory_xact_lock``.
  The writer's session names itself (``application_name``, :func:`application_name`) and sets
  ``idle_in_transaction_session_timeout`` (``scoring.idle_in_transaction_timeout_s``), both
  for its transaction only (``set_config(..., true)``). The holder is read from ``pg_locks``
  joined with ``pg_stat_activity``: application name, server pid, user, client address, state
  and since when its transaction is open; never its query text.
* **SQLite** (:func:`acquire_sqlite_lock`): ``BEGIN IMMEDIATE``, retried with a short busy
  timeout per attempt until the deadline. SQLite cannot tell who holds its lock, so the writer
  records itself in a sidecar file beside the database (:func:`sidecar_path`,
  ``<db>.crmscore-lock.json``: pid, host, application, since) while it holds the lock; a
  sidecar whose process is gone (on this host) is reported as stale. The writer also turns off
  ``cache_spill`` for its transaction: its changes stay in memory until the commit, so it never
  takes SQLite's exclusive lock before then and other processes (the next run reading the CRM,
  the CRM's own application) keep reading while it works.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from crmscore.core.score_contract import LockTimeoutError

__all__ = [
    "LOG_EVERY_S",
    "LockHolder",
    "WriterSessionTimeoutError",
    "acquire_pg_lock",
    "acquire_sqlite_lock",
    "application_name",
    "explain_session_end",
    "pg_lock_holder",
    "remove_sidecar",
    "restore_sqlite",
    "sidecar_holder",
    "sidecar_path",
    "sqlite_file",
    "write_sidecar",
]

log = logging.getLogger(__name__)

#: seconds between two "waiting for the lock" log lines (the first one is logged at once)
LOG_EVERY_S = 15.0
#: longest sleep between two attempts (PostgreSQL) / longest busy wait of one attempt (SQLite):
#: how late a waiter notices a released lock, or an interrupt (Ctrl-C)
_POLL_MAX_S = 0.5
#: PostgreSQL truncates application_name to 63 bytes
_APP_NAME_BYTES = 63
#: SQLSTATE of a session ended by idle_in_transaction_session_timeout
_IDLE_TIMEOUT_SQLSTATE = "25P03"


class WriterSessionTimeoutError(RuntimeError):
    """The server ended the writer's session: idle in transaction beyond its timeout."""


def application_name() -> str:
    """``crmscore score pid=<pid> host=<host>``: how a writer names itself to the other runs."""
    name = f"crmscore score pid={os.getpid()} host={socket.gethostname()}"
    return name.encode()[:_APP_NAME_BYTES].decode(errors="ignore")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    return f", {s // 60} min {s % 60} s ago" if s >= 60 else f", {s} s ago"


@dataclass(frozen=True)
class LockHolder:
    """Who holds the score tables' write lock, as far as the store can tell.

    Attributes
    ----------
    application : str or None
        Its application name (PostgreSQL ``application_name``; SQLite: from the sidecar).
    pid : int or None
        PostgreSQL: the server process of its session (``pg_terminate_backend(pid)``);
        SQLite: the process id recorded in the sidecar.
    since : datetime or None
        PostgreSQL: when its transaction began; SQLite: when it took the lock.
    age_s : float or None
        Seconds since ``since``.
    host : str or None
        SQLite: the host recorded in the sidecar.
    user, client, state : str or None
        PostgreSQL: role, client address, session state (e.g. ``idle in transaction``).
    stale : bool
        SQLite: the sidecar names a process of this host that is no longer running.
    known : bool
        False when the store could not name the holder (no sidecar, or the session ended).
    unknown : str
        What is said of a holder that is not ``known``.
    """

    application: str | None = None
    pid: int | None = None
    since: datetime | None = None
    age_s: float | None = None
    host: str | None = None
    user: str | None = None
    client: str | None = None
    state: str | None = None
    stale: bool = False
    known: bool = True
    unknown: str = "another session (it ended, or it could not be identified)"

    def describe(self) -> str:
        """The holder in one phrase, for a log line or an error message."""
        if not self.known:
            return self.unknown
        since = "" if self.since is None else f"since {self.since.isoformat(timespec='seconds')}"
        if self.host is not None or self.stale:  # SQLite, from the sidecar
            where = "this host" if self.host == socket.gethostname() else f"host {self.host}"
            if self.stale:
                return (
                    f"a program that is not a running crmscore writer: the lock file names "
                    f"{self.application!r} (pid {self.pid} on {where}{', ' + since if since else ''}), "
                    "which is no longer "
                    "running, so the file is stale and another program holds a write transaction "
                    "on the database (e.g. sqlite3 or a database browser; find it with fuser or lsof)"
                )
            return f"{self.application!r} (pid {self.pid} on {where}, holding it {since}{_ago(self.age_s)})"
        parts = [f"server pid {self.pid}"]
        parts += [f"user {self.user}"] if self.user else []
        parts += [f"client {self.client}"] if self.client else []
        parts += [self.state] if self.state else []
        parts += [f"transaction open {since}{_ago(self.age_s)}"] if since else []
        return f"{self.application or '(no application_name)'!r} ({', '.join(parts)})"


# ------------------------------------------------------------------------------ waiting


def _wait(
    attempt: Callable[[float], bool],
    describe_holder: Callable[[], LockHolder],
    *,
    what: str,
    timeout_s: float,
    timeout_message: Callable[[LockHolder, float], str],
    cancel: threading.Event | None,
) -> None:
    """Call ``attempt(busy_s)`` until it returns True; log the holder; raise after ``timeout_s``.

    ``attempt(0)`` first; later attempts may wait up to ``busy_s`` themselves (SQLite's busy
    handler), otherwise the loop sleeps between them (growing to :data:`_POLL_MAX_S`).
    """
    if attempt(0.0):
        return
    start = time.monotonic()
    deadline, next_log, delay = start + timeout_s, start, 0.05
    while True:
        now = time.monotonic()
        if now >= deadline:
            holder = describe_holder()
            raise LockTimeoutError(timeout_message(holder, now - start))
        if now >= next_log:
            holder = describe_holder()
            level = logging.WARNING if next_log == start else logging.INFO
            log.log(
                level,
                "waiting for %s, held by %s: %.0f s of at most %g s (scoring.lock_timeout_s)",
                what, holder.describe(), now - start, timeout_s,
            )  # fmt: skip
            next_log = now + LOG_EVERY_S
        step = min(delay, deadline - now, _POLL_MAX_S)
        if cancel is not None and cancel.wait(0):
            raise RuntimeError(f"gave up waiting for {what}: the run was abandoned")
        if attempt(step):
            log.info("got %s after %.1f s", what, time.monotonic() - start)
            return
        delay = min(delay * 2, _POLL_MAX_S)


def _advice(holder: LockHolder, stop: str) -> str:
    if holder.known and holder.pid is not None and not holder.stale:
        return (
            f"Wait for that run to finish and score again; if it is stuck, {stop.format(pid=holder.pid)}; "
            "or raise scoring.lock_timeout_s"
        )
    return "End the other program's write transaction and score again, or raise scoring.lock_timeout_s"


# --------------------------------------------------------------------------- PostgreSQL


def _pg_key(conn: sa.Connection, schema: str) -> int:
    return int(
        conn.execute(sa.text("SELECT hashtext('crmscore.scores:' || :s)::bigint"), {"s": schema}).scalar_one()
    )


_PG_HOLDER = sa.text(
    "SELECT a.pid, a.application_name, a.usename, host(a.client_addr) AS client, a.state, "
    "a.xact_start, EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start) AS age_s "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = CAST(:classid AS oid) AND l.objid = CAST(:objid AS oid) AND l.objsubid = 1 "
    "AND l.pid <> pg_backend_pid() LIMIT 1"
)


def pg_lock_holder(conn: sa.Connection, key: int) -> LockHolder:
    """The session holding the advisory lock ``key`` (as ``pg_try_advisory_xact_lock(key)``).

    Reads ``pg_locks`` and ``pg_stat_activity`` only (never the holder's query text). Columns
    the role may not see (another role's session without ``pg_read_all_stats``) are left out.
    """
    params = {"classid": (key >> 32) & 0xFFFFFFFF, "objid": key & 0xFFFFFFFF}
    row = conn.execute(_PG_HOLDER, params).mappings().first()
    if row is None:
        return LockHolder(known=False)
    age = row["age_s"]
    return LockHolder(
        application=row["application_name"] or None,
        pid=int(row["pid"]),
        since=row["xact_start"],
        age_s=None if age is None else float(age),
        user=row["usename"],
        client=row["client"],
        state=row["state"],
    )


def acquire_pg_lock(
    conn: sa.Connection,
    schema: str,
    *,
    timeout_s: float,
    idle_in_transaction_timeout_s: float,
    cancel: threading.Event | None = None,
) -> None:
    """Name the session, set its idle timeout, and take the score writers' lock of ``schema``.

    Inside the writer's transaction on ``conn``: ``application_name`` (:func:`application_name`)
    and ``idle_in_transaction_session_timeout`` are set for the transaction only, then the
    transaction-scoped advisory lock is polled until held.

    Parameters
    ----------
    conn : sqlalchemy.Connection
        The writer's connection, its transaction begun.
    schema : str
        The score tables' schema: one lock per schema.
    timeout_s : float
        ``scoring.lock_timeout_s``.
    idle_in_transaction_timeout_s : float
        ``scoring.idle_in_transaction_timeout_s``: the server ends the session when it stays
        idle inside the transaction longer than this.
    cancel : threading.Event, optional
        Set by the caller to stop waiting (the run was abandoned).

    Raises
    ------
    LockTimeoutError
        Still held by another session after ``timeout_s``; the message names it.
    """
    idle_ms = max(1, round(idle_in_transaction_timeout_s * 1000))
    conn.execute(
        sa.text(
            "SELECT set_config('application_name', :app, true), "
            "set_config('idle_in_transaction_session_timeout', :idle, true)"
        ),
        {"app": application_name(), "idle": str(idle_ms)},
    )
    key = _pg_key(conn, schema)
    try_lock = sa.text("SELECT pg_try_advisory_xact_lock(:k)")

    stop = cancel if cancel is not None else threading.Event()  # (an Event sleeps, wakes if set)

    def attempt(pause: float) -> bool:
        if pause > 0 and stop.wait(pause):
            return False  # cancelled while sleeping: the loop gives up
        return bool(conn.execute(try_lock, {"k": key}).scalar_one())

    def message(holder: LockHolder, waited: float) -> str:
        return (
            f"the score tables' write lock (schema {schema!r}) is still held by {holder.describe()} "
            f"after {waited:.1f} s (scoring.lock_timeout_s = {timeout_s:g}); nothing was written. "
            + _advice(holder, "end its session: SELECT pg_terminate_backend({pid})")
        )

    _wait(
        attempt,
        lambda: pg_lock_holder(conn, key),
        what=f"the score tables' write lock (schema {schema!r})",
        timeout_s=timeout_s,
        timeout_message=message,
        cancel=cancel,
    )


def explain_session_end(exc: BaseException, idle_in_transaction_timeout_s: float) -> BaseException:
    """``exc``, or a :class:`WriterSessionTimeoutError` saying why the server ended the session."""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    if code != _IDLE_TIMEOUT_SQLSTATE:
        return exc
    err = WriterSessionTimeoutError(
        "the server ended the score writer's session: it stayed idle inside its transaction longer "
        f"than scoring.idle_in_transaction_timeout_s ({idle_in_transaction_timeout_s:g} s) while the "
        "run computed; nothing was written. Raise scoring.idle_in_transaction_timeout_s if scoring "
        "legitimately takes longer between two writes"
    )
    err.__cause__ = exc
    return err


# ------------------------------------------------------------------------------- SQLite


def sqlite_file(url: sa.URL) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or "mode=memory" in db or str(url.query.get("mode", "")) == "memory":
        return None
    if db.startswith("file:"):
        db = db[5:].split("?", 1)[0]
    return Path(db)


def sidecar_path(db: Path) -> Path:
    """``<db>.crmscore-lock.json``: where the writer holding ``db``'s lock records itself."""
    return db.with_name(db.name + ".crmscore-lock.json")


def write_sidecar(path: Path) -> dict[str, Any] | None:
    """Record this process as the holder (written whole, then renamed); the record or None.

    A sidecar that cannot be written only makes the waiters' message vaguer: logged, not raised.
    """
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "application": application_name(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "token": os.urandom(8).hex(),
    }
    tmp = path.with_name(f"{path.name}.{record['pid']}.tmp")
    try:
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.debug("could not record the lock holder in %s: %s", path.name, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    return record


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_sidecar(path: Path, record: dict[str, Any]) -> None:
    """Remove the sidecar if it is still this writer's (another writer may hold the lock now)."""
    current = _read_sidecar(path)
    if current is not None and current.get("token") == record.get("token"):
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sidecar_holder(db: Path | None) -> LockHolder:
    """The holder recorded beside ``db`` (stale if its process is gone on this host)."""
    data = None if db is None else _read_sidecar(sidecar_path(db))
    unknown = (
        "another connection that did not record itself (not a crmscore writer: e.g. sqlite3 or a "
        "database browser with an open write transaction; find it with fuser or lsof on the file)"
    )
    if data is None:
        return LockHolder(known=False, unknown=unknown)
    try:
        pid, host = int(data["pid"]), str(data["host"])
        since = datetime.fromisoformat(str(data["since"]))
    except (KeyError, TypeError, ValueError):
        return LockHolder(known=False, unknown=unknown)
    stale = host == socket.gethostname() and not _alive(pid)
    age = (datetime.now(UTC) - since).total_seconds() if since.tzinfo is not None else None
    return LockHolder(
        application=str(data.get("application") or "?"),
        pid=pid,
        since=since,
        age_s=age,
        host=host,
        stale=stale,
    )


def _busy(exc: sa.exc.OperationalError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlite_errorcode", None) == 5 or "database is locked" in str(orig)


def acquire_sqlite_lock(
    conn: sa.Connection, db: Path | None, *, timeout_s: float, cancel: threading.Event | None = None
) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, retried until ``timeout_s``; ``cache_spill`` off.

    Each attempt lets SQLite's busy handler wait at most :data:`_POLL_MAX_S`; the connection's
    own busy timeout is restored once the lock is held (or the wait failed). ``cache_spill``
    stays off for the transaction (restored by :func:`restore_sqlite`).

    Raises
    ------
    LockTimeoutError
        Still locked after ``timeout_s``; the message names the holder when a crmscore writer
        recorded itself (:func:`write_sidecar`), and says what to do.
    """
    busy_ms = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
    conn.exec_driver_sql("PRAGMA cache_spill = OFF")

    def attempt(busy_s: float) -> bool:
        if cancel is not None and cancel.is_set():
            return False
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {round(busy_s * 1000)}")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except sa.exc.OperationalError as exc:
            if not _busy(exc):
                raise
            return False
        return True

    name = "the CRM database" if db is None else f"the CRM database {db.name}"

    def message(holder: LockHolder, waited: float) -> str:
        return (
            f"{name} is still locked for writing by {holder.describe()} after {waited:.1f} s "
            f"(scoring.lock_timeout_s = {timeout_s:g}); nothing was written. "
            + _advice(holder, "stop that process (kill {pid})")
        )

    try:
        _wait(
            attempt,
            lambda: sidecar_holder(db),
            what=f"the write lock of {name}",
            timeout_s=timeout_s,
            timeout_message=message,
            cancel=cancel,
        )
    except BaseException:
        restore_sqlite(conn)
        raise
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")


def restore_sqlite(conn: sa.Connection) -> None:
    """``cache_spill`` back on (the connection goes back to the pool); outside a transaction."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        conn.exec_driver_sql("PRAGMA cache_spill = ON")
