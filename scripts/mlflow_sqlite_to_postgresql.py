"""Move MLflow's metadata from an sqlite file into an empty PostgreSQL database.

Runs, params, metrics, tags, experiments, the model registry (versions, aliases, tags) and
everything else MLflow keeps in its database, row for row; artifacts are not touched (they
stay where the runs point: S3 through the server's proxy, or local paths).

    .venv/bin/python scripts/mlflow_sqlite_to_postgresql.py mlflow.db [POSTGRESQL_URL]

The URL defaults to $MLFLOW_BACKEND_STORE_URI (keeps the password off the command line).
Steps: the sqlite file is copied and the copy brought to this MLflow's schema
(`mlflow db upgrade`; the original is left as it is); the target gets the same schema
(MLflow's own initialisation) and must hold no data yet (an empty database, or one an
`mlflow server` has only started on);
every table is copied in foreign-key order in one transaction; serial columns continue after
the copied ids; the row counts of both are compared. Run it with the MLflow version the
server runs (3.17.2 here), with the server stopped. Exit status 0 only if every count matches.
docs/mlflow-postgresql.md has the whole procedure on a cluster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

BATCH = 2000
#: what holds a store's data; a target may hold MLflow's own start (the schema, its default
#: experiment, whatever an `mlflow server` writes when it first starts on the database)
DATA_TABLES = ("runs", "registered_models", "logged_models", "trace_info", "evaluation_datasets")


def upgraded_copy(source: Path, workdir: Path) -> str:
    """A copy of the sqlite file at this MLflow's schema (`mlflow db upgrade` on the copy)."""
    copy = workdir / "source.db"
    shutil.copy2(source, copy)
    url = f"sqlite:///{copy}"
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", url], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"mlflow db upgrade failed on a copy of {source}:\n{proc.stderr}")
    return url


def initialise(target: str, workdir: Path) -> None:
    """MLflow's own schema in the target (tables, migrations, its default experiment)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(target, str(workdir / "artifacts"))
    store.engine.dispose()


def counts(engine: sa.Engine, tables: list[sa.Table]) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in tables
        }


def refuse_unless_empty(engine: sa.Engine) -> None:
    """No runs, models, traces or datasets, and no experiment but MLflow's default."""
    meta = sa.MetaData()
    meta.reflect(engine)
    tables = [meta.tables[name] for name in (*DATA_TABLES, "experiments") if name in meta.tables]
    found = {name: n for name, n in counts(engine, tables).items() if n}
    if found.get("experiments") == 1:
        with engine.connect() as conn:
            ids = conn.execute(sa.text("SELECT experiment_id FROM experiments")).scalars().all()
        if [str(i) for i in ids] == ["0"]:
            del found["experiments"]
    if found:
        raise SystemExit(
            f"the target database is not empty ({found}): give an empty database, or one "
            "only an mlflow server has started on, so nothing is overwritten"
        )


def _json_keeps_null(table: sa.Table) -> None:
    """SQL NULL stays NULL in JSON columns (SQLAlchemy would write the JSON value null)."""
    for column in table.columns:
        if isinstance(column.type, sa.JSON):
            column.type = type(column.type)(none_as_null=True)


def copy_rows(source: sa.Engine, target: sa.Engine) -> list[sa.Table]:
    src_meta, dst_meta = sa.MetaData(), sa.MetaData()
    src_meta.reflect(source)
    dst_meta.reflect(target)
    with source.connect() as s, target.connect() as t:
        (src_rev,) = s.execute(sa.text("SELECT version_num FROM alembic_version")).one()
        (dst_rev,) = t.execute(sa.text("SELECT version_num FROM alembic_version")).one()
    if src_rev != dst_rev:
        raise SystemExit(f"schema revisions differ: sqlite {src_rev}, PostgreSQL {dst_rev}")
    missing = set(src_meta.tables) - set(dst_meta.tables)
    if missing:
        raise SystemExit(f"tables only in sqlite: {sorted(missing)}")
    tables = [t for t in dst_meta.sorted_tables if t.name != "alembic_version"]
    with source.connect() as src, target.begin() as dst:
        names = ", ".join(f'"{t.name}"' for t in tables)
        dst.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        for table in tables:
            if table.name not in src_meta.tables:
                continue
            _json_keeps_null(table)
            columns = [c.name for c in table.columns]
            origin = src_meta.tables[table.name]
            result = src.execute(sa.select(*(origin.c[name] for name in columns)))
            while rows := result.fetchmany(BATCH):
                dst.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        for table in tables:  # serial columns continue after the copied ids
            for column in table.primary_key.columns:
                seq = dst.execute(
                    sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": f'"{table.name}"', "c": column.name},
                ).scalar()
                if seq:
                    dst.execute(
                        sa.text(
                            f'SELECT setval(:seq, COALESCE(MAX("{column.name}"), 1), '
                            f'MAX("{column.name}") IS NOT NULL) FROM "{table.name}"'
                        ),
                        {"seq": seq},
                    )
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sqlite", type=Path, help="the sqlite file (e.g. a copy of mlflow.db)")
    parser.add_argument(
        "target",
        nargs="?",
        default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
        help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: $MLFLOW_BACKEND_STORE_URI)",
    )
    args = parser.parse_args(argv)
    if not args.target or not args.target.startswith("postgresql"):
        parser.error("a postgresql:// URL (argument or MLFLOW_BACKEND_STORE_URI)")
    if not args.sqlite.is_file():
        parser.error(f"no sqlite file at {args.sqlite}")
    with tempfile.TemporaryDirectory(prefix="mlflow-migrate-") as tmp:
        workdir = Path(tmp)
        source_url = upgraded_copy(args.sqlite, workdir)
        target = sa.create_engine(args.target)
        try:
            refuse_unless_empty(target)
            initialise(args.target, workdir)
            source = sa.create_engine(source_url)
            tables = copy_rows(source, target)
            before, after = counts(source, tables), counts(target, tables)
            source.dispose()
        finally:
            target.dispose()
    differ: dict[str, Any] = {
        name: (before[name], after.get(name)) for name in before if before[name] != after.get(name)
    }
    copied = {name: n for name, n in before.items() if n}
    print("copied rows: " + ", ".join(f"{name} {n}" for name, n in sorted(copied.items())))
    if differ:
        print(f"row counts differ (sqlite, PostgreSQL): {differ}", file=sys.stderr)
        return 1
    print(f"all {len(tables)} tables match")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
