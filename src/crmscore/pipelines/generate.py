"""``crmscore generate``: a seeded synthetic CRM with known ground truth, into the CRM store or a folder."""

from __future__ import annotations

import logging
from pathlib import Path

from crmscore.config import Config, redact_url
from crmscore.core.progress import stage

__all__ = ["run_generate", "truth_dir_for"]

log = logging.getLogger(__name__)


def truth_dir_for(cfg: Config, sink: str, folder: Path) -> Path:
    """Where the generator's truth goes: ``<folder>/truth``, ``<db>_truth`` beside a SQLite file,
    else ``data/truth``."""
    if sink == "folder":
        return folder / "truth"
    import sqlalchemy as sa

    url = sa.make_url(cfg.data.resolved_crm_url())
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(url.database)
        return db.parent / f"{db.stem}_truth"
    return Path("data/truth")


def run_generate(
    cfg: Config,
    customers: int,
    seed: int,
    sink: str,
    folder: Path,
    file_format: str,
    truth_dir: Path | None,
) -> dict[str, int]:
    """Generate a synthetic CRM and write it to the CRM store or a folder; return row counts.

    Parameters
    ----------
    cfg : Config
        ``generate`` and ``data`` blocks.
    customers, seed : int
        Size and seed of the simulation.
    sink : {"crm", "folder"}
        Into the CRM store (``data.crm_url``) or a folder of files.
    folder : Path
        The folder for ``sink="folder"``.
    file_format : {"parquet", "csv"}
        File format for ``sink="folder"``.
    truth_dir : Path or None
        Where the true parameters go (default :func:`truth_dir_for`).
    """
    from crmscore.ingest import synth

    gen = cfg.generate
    with stage(f"simulating {customers:,} customers"):
        crm = synth.generate(
            customers, seed=seed, start=gen.start, end=gen.end, leads_per_customer=gen.leads_per_customer
        )
    if sink == "folder":
        from crmscore.io.files import write_folder

        with stage(f"writing {file_format} files to {folder}"):
            write_folder(crm.tables, folder, file_format)
    else:
        from crmscore.io.crm import create_engine, write_sql_tables

        url = cfg.data.resolved_crm_url()
        engine = create_engine(url)
        names = {cfg.data.table_name(t): df for t, df in crm.tables.items()}
        try:
            with stage(f"writing tables to {redact_url(url)}"):
                write_sql_tables(engine, names, cfg.data.db_schema)
        finally:
            engine.dispose()
    tdir = truth_dir or truth_dir_for(cfg, sink, folder)
    synth.write_truth(crm, tdir)
    log.info("true parameters written to %s", tdir)
    return {name: len(df) for name, df in crm.tables.items()}
