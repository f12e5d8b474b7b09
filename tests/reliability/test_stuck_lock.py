"""A stuck run never blocks the next one silently: it waits at most ``scoring.lock_timeout_s``,
says who holds the lock and what to do, and writes nothing.

The stuck run is a real :class:`crmscore.io.scores.ScoreWriter` in its own process (this file run
as a script, mode ``hold``): it took the write lock, wrote a run's customer rows inside its open
transaction (5,000 rows: more than SQLite's page cache holds) and then hangs, as a run stuck in
its computation would.

* **SQLite, through the CLI**: ``crmscore score`` on the trained project with
  ``scoring.lock_timeout_s: 2`` reads the CRM while the stuck run holds the lock, then exits 1
  naming the holder (``crmscore score pid=<its pid>``) and ``kill <pid>``; the score tables,
  the run log and the output folder are as before. Killed as advised, the stuck run leaves a
  stale lock file and an intact database, and the next ``crmscore score`` writes.
* **PostgreSQL, at the io level** (the CLI's path to the writer is the same ``ScoreWriter``):
  the error names the holder's application name and server pid; ``pg_terminate_backend(pid)``,
  as advised, frees the lock and the next writer commits, without a row of the stuck run.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from helpers import make_customer_scores, run_cli_captured
from projects import AS_OF, logging_restored, write_params

TESTS = Path(__file__).resolve().parents[1]
WRITER_URL_ENV = "CRMSCORE_TEST_WRITER_URL"  # not on the command line: a URL may hold a password
#: customer rows the stuck run has written inside its transaction
STUCK_ROWS = 5_000


# =========================================================================== the stuck process


def _hold(schema: str | None, ready: Path) -> None:
    """Take the lock, write a run's rows, say so, hang (until killed)."""
    sys.path.insert(0, str(TESTS))
    from crmscore.config import ScoringConfig
    from crmscore.io.crm import create_engine
    from crmscore.io.scores import ScoreWriter

    engine = create_engine(os.environ[WRITER_URL_ENV])
    with ScoreWriter(engine, ScoringConfig(min_rows_ratio=0.0), schema=schema) as writer:
        writer.write("customer", make_customer_scores(STUCK_ROWS, run_id="stuck", as_of="2025-12-31"))
        writer._drain()  # PostgreSQL: sent by the background thread
        tmp = ready.with_suffix(".tmp")  # written whole, then renamed: never seen half-written
        tmp.write_text(str(os.getpid()))
        tmp.replace(ready)
        time.sleep(600)


@contextmanager
def stuck_run(url: str, schema: str | None, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A stuck score writer in its own process on ``url``, its transaction open; killed at the end."""
    ready = tmp / "stuck-ready"
    env = {**os.environ, WRITER_URL_ENV: url, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "hold", "--ready", str(ready), "--schema", schema or ""],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"the stuck run exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
                )
            assert time.monotonic() < deadline, "the stuck run never took the lock"
            time.sleep(0.05)
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()


# ==================================================================================== helpers


def _cli(root: Path, *args: str) -> tuple[int, str]:
    """``crmscore --params params.yaml ARGS`` in this process, in ``root``; output unwrapped."""
    with pytest.MonkeyPatch.context() as mp, logging_restored():
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("CRMSCORE_CRM_URL", raising=False)
        code, text = run_cli_captured(["--params", str(root / "params.yaml"), *args], mp)
    return code, " ".join(text.split())  # the console wraps long lines


def _state(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    """Every table of the store whose name is not one of the CRM's input tables, every row."""
    insp = sa.inspect(engine)
    out = {}
    for name in sorted(insp.get_table_names()):
        if not name.startswith(("customer_score", "lead_score", "score_runs")):
            continue
        with engine.connect() as conn:
            out[name] = pd.read_sql(sa.text(f'SELECT * FROM "{name}" ORDER BY 1, 2'), conn)
    return out


def _assert_same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(want), f"tables {sorted(got)} instead of {sorted(want)}"
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


# ====================================================================================== tests


def test_cli_score_behind_a_stuck_sqlite_run_names_it_and_writes_nothing(fork_trained_project, tmp_path):
    fork = fork_trained_project("stuck-lock")
    db = fork.root / "crm.sqlite"  # its own copy of the CRM: this test writes (and kills) in it
    src = sqlite3.connect(Path(sa.make_url(fork.params["data"]["crm_url"]).database))
    dst = sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    params = copy.deepcopy(fork.params)
    params["data"]["crm_url"] = f"sqlite:///{db}"
    params.setdefault("scoring", {})["lock_timeout_s"] = 2
    write_params(fork.root, params)
    engine = sa.create_engine(f"sqlite:///{db}")
    before = _state(engine)
    as_of = AS_OF.isoformat()

    with stuck_run(f"sqlite:///{db}", None, tmp_path) as proc:
        code, out = _cli(fork.root, "score", "--as-of", as_of)
        assert code == 1, f"exit {code}:\n{out}"
        holder = f"'crmscore score pid={proc.pid} host="
        assert f"the CRM database crm.sqlite is still locked for writing by {holder}" in out, out
        assert f"pid {proc.pid} on this host" in out and f"kill {proc.pid}" in out, out
        assert "nothing was written" in out and "scoring.lock_timeout_s" in out, out
        assert f"waiting for the write lock of the CRM database crm.sqlite, held by {holder}" in out, out
        _assert_same(_state(engine), before)
        assert not (fork.root / "reports").exists(), "the worklist was written"
        os.kill(proc.pid, signal.SIGKILL)  # what the message advises for a stuck run
        proc.wait(timeout=30)

    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    _assert_same(_state(engine), before)
    lock_file = db.with_name("crm.sqlite.crmscore-lock.json")
    assert lock_file.exists()  # left by the killed run: stale, overwritten by the next one
    code, out = _cli(fork.root, "score", "--as-of", as_of)
    assert code == 0, out
    assert "written to the CRM" in out, out
    assert not lock_file.exists()
    latest = pd.read_sql(sa.text('SELECT run_id, as_of FROM "customer_scores"'), engine)
    assert "stuck" not in set(latest["run_id"]) and (latest["as_of"].astype(str).str[:10] == as_of).any()
    engine.dispose()


@pytest.mark.postgres
def test_writer_behind_a_stuck_postgres_run_names_it_and_terminating_it_frees_the_lock(
    pg_engine, pg_schema, tmp_path
):
    from crmscore.config import ScoringConfig
    from crmscore.core.score_contract import LockTimeoutError
    from crmscore.io.scores import read_scores, write_scores

    url = pg_engine.url.render_as_string(hide_password=False)
    run = make_customer_scores(200, run_id="next", as_of="2025-12-31", seed=4)
    with stuck_run(url, pg_schema, tmp_path) as proc:
        with pytest.raises(LockTimeoutError) as info:
            write_scores(pg_engine, run, cfg=ScoringConfig(lock_timeout_s=2), schema=pg_schema)
        msg = " ".join(str(info.value).split())
        assert f"'crmscore score pid={proc.pid} host=" in msg and "idle in transaction" in msg, msg
        assert "nothing was written" in msg, msg
        assert not sa.inspect(pg_engine).has_table("customer_scores", schema=pg_schema)
        found = re.search(r"SELECT pg_terminate_backend\((\d+)\)", msg)
        assert found, msg
        with pg_engine.connect() as conn:  # what the message advises for a stuck run
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": int(found[1])}).scalar_one()
        res = write_scores(pg_engine, run, cfg=ScoringConfig(lock_timeout_s=15), schema=pg_schema)
        assert res.latest_updated == {"customer_scores": 200}
    latest = read_scores(pg_engine, ScoringConfig(), schema=pg_schema)
    assert set(latest["run_id"]) == {"next"} and len(latest) == 200  # none of the stuck run's rows


def _script_main(argv: list[str]) -> int:
    """``python test_stuck_lock.py hold --ready PATH [--schema S]`` (the URL in the environment)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hold"])
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--schema", default="")
    opts = parser.parse_args(argv)
    _hold(opts.schema or None, opts.ready)
    return 0


if __name__ == "__main__":
    sys.exit(_script_main(sys.argv[1:]))
