"""The `attribution` command line: generate, load, run, evaluate, report, forget, demo, doctor, ui."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from warehouse.client import Warehouse, quote_ident
from warehouse.target import DATA_DIR, SCHEMAS, TARGETS, Target, export_target, resolve_target

DEMO_WORLD_DIR = DATA_DIR / "demo_world"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _target(args: argparse.Namespace) -> Target:
    target = resolve_target(args.target)
    export_target(target)
    return target


# -- commands ---------------------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    from lab.synthetic import WorldConfig, generate_world
    from lab.world_files import write_world

    started = time.perf_counter()
    cfg = WorldConfig(persons=args.persons, seed=args.seed, days=args.days)
    world = generate_world(cfg)
    paths = write_world(world, Path(args.out), fmt=args.format)
    elapsed = time.perf_counter() - started
    counts = ", ".join(f"{name} {len(df):,}" for name, df in world.items() if not name.startswith("truth"))
    _say(f"generated {counts} in {elapsed:.1f}s → {args.out}")
    if not getattr(args, "brief", False):
        for name, path in paths.items():
            _say(f"  {name}: {path}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from warehouse.loader import DEFAULT_ENCODING, LoadError, load_folder

    target = _target(args)
    encoding = getattr(args, "encoding", None) or DEFAULT_ENCODING
    try:
        result = load_folder(Warehouse(target), Path(args.path), encoding=encoding, force=getattr(args, "force", False))
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    if not result.files:
        _say(f"nothing loaded into {target.describe()}: every file was already loaded (--force loads them again)")
        return 0
    rows = ", ".join(f"raw.{t} +{n:,}" for t, n in result.rows.items())
    _say(f"loaded into {target.describe()} at {result.loaded_at.isoformat()}: {rows}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    # SIGTERM (systemd, `kill`, a container stop) stops a run the way Ctrl-C does: Dagster turns either into an
    # interrupt of the running step, and a step waiting for a pool slot gives up its place.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.perf_counter()
    from warehouse.privacy import SaltError

    try:
        return _run(args, started)
    except SaltError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _say(f"run interrupted after {time.perf_counter() - started:.1f}s, before it started: nothing was claimed")
        return 130


def _recovered_instance(target: Target, say: Callable[[str], None]) -> Any:
    """The Dagster instance of ``target``'s runs, after settling any run whose process died: a run killed by
    kill -9, the out-of-memory killer or a restart still holds its pool slot."""
    import dagster as dg

    from cli.recovery import recover
    from cli.runner import prepare_dagster_home

    prepare_dagster_home(target)
    instance = dg.DagsterInstance.get()
    recover(instance, say=say)
    return instance


def _run(args: argparse.Namespace, started: float) -> int:

    from cli.console import StepProgress, new_log_path, output_to_log
    from warehouse.privacy import ensure_warehouse_salt

    target = _target(args)
    if args.full_refresh:
        os.environ["ATTRIBUTION_DBT_FULL_REFRESH"] = "1"
    partition_range = (args.start, args.end or args.start) if args.start else None
    created = ensure_warehouse_salt(Warehouse(target), full_refresh=args.full_refresh)
    if created:
        _say(created)
    if args.verbose:
        from cli.runner import run_job

        instance = _recovered_instance(target, _say)
        _say(f"running job {args.job} on {target.describe()} …")
        result = run_job(target, args.job, partition_range=partition_range, log_level=args.log_level, instance=instance)
        log_path = None
    else:
        log_path = new_log_path(DATA_DIR / "logs", "run")
        run_id = str(uuid.uuid4())
        with output_to_log(log_path) as console:
            # Imported here: loading the code location prints warnings that belong in the log.
            from cli.runner import run_job

            instance = _recovered_instance(target, lambda line: console.write(line + "\n"))
            console.write(f"running job {args.job} on {target.describe()} (full log: {log_path})\n")
            progress = StepProgress(instance, run_id, console)
            progress.start()
            try:
                result = run_job(
                    target,
                    args.job,
                    partition_range=partition_range,
                    log_level=args.log_level,
                    instance=instance,
                    run_id=run_id,
                )
            finally:
                progress.stop()
    if _interrupted(result):
        _say(
            f"run {result.run_id}: interrupted after {time.perf_counter() - started:.1f}s (Ctrl-C or SIGTERM) — "
            "marked failed, its pool slots freed, nothing left claimed"
        )
        return 130
    return _run_summary(result, time.perf_counter() - started, log_path)


def _interrupted(result: Any) -> bool:
    """Whether the run ended because Ctrl-C or SIGTERM interrupted it (Dagster's unexpected termination)."""
    import dagster as dg
    from dagster._core.events import RunFailureReason

    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            data = event.event_specific_data
            return getattr(data, "failure_reason", None) == RunFailureReason.UNEXPECTED_TERMINATION
    return False


def _run_summary(result: Any, elapsed: float, log_path: Path | None) -> int:
    import dagster as dg

    materialized = len(result.get_asset_materialization_events())
    checks = result.get_asset_check_evaluations()
    failed = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
    warned = [c for c in checks if not c.passed and c.severity != dg.AssetCheckSeverity.ERROR]
    _say(
        f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {elapsed:.1f}s — "
        f"{materialized} materializations, {len(checks)} checks ({len(failed)} failed, {len(warned)} warnings)"
    )
    for c in failed:
        _say(f"  failed check: {c.asset_key.to_user_string()} {c.check_name}")
    for c in warned:
        _say(f"  warning: {c.asset_key.to_user_string()} {c.check_name}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                _say(f"  failed step {event.step_key}: {event.step_failure_data.error.message.strip()}")
        if log_path is not None:
            _say(f"  full log: {log_path}")
        return 1
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from cli.privacy import ForgetError, forget_person

    target = _target(args)
    try:
        lines = forget_person(target, args.email, args.user_id, args.cookie)
    except ForgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _say(f"erased from {target.describe()}:")
    for line in lines:
        _say(f"  {line}")
    if args.no_run:
        _say("identities, candidates, scores, credits and marts still hold the person until the next `attribution run`")
        return 0
    # Everything derived from raw and staging is rebuilt without the person; conversions keep their revenue.
    _say("rebuilding identities, candidates, scores, credits and marts without them …")
    run_args = argparse.Namespace(target=args.target, job="attribution_all", start=None, end=None,
                                  full_refresh=False, verbose=False, log_level="INFO")  # fmt: skip
    return cmd_run(run_args)


def cmd_report(args: argparse.Namespace) -> int:
    from cli.report import build_report

    _say(build_report(Warehouse(_target(args))))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lab.evaluate import evaluate_warehouse

    if args.family:
        from lab.family import evaluate_family

        rows, table = evaluate_family(args.family, persons=args.persons, seed=args.seed, say=_say)
        _say(json.dumps(rows, indent=2, sort_keys=True) if args.json else table)
        return 0
    if not args.truth:
        print("error: evaluate needs --truth FOLDER (or --family NAME)", file=sys.stderr)
        return 2
    target = _target(args)
    result, text = evaluate_warehouse(Warehouse(target), Path(args.truth))
    _say(json.dumps(result, indent=2, sort_keys=True) if args.json else text)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from warehouse.backup import BackupError, backup_raw

    target = _target(args)
    try:
        manifest = backup_raw(Warehouse(target), Path(args.dir))
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"raw.{t} {e.rows:,}" for t, e in manifest.tables.items())
    _say(f"backed up {target.describe()} → {args.dir}: {rows}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from warehouse.backup import BackupError, restore_raw

    target = _target(args)
    try:
        result = restore_raw(Warehouse(target), Path(args.dir), force=args.force)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table, n in result.truncated.items():
        print(f"warning: --force emptied raw.{table} ({n:,} rows) before restoring", file=sys.stderr)
    rows = ", ".join(f"raw.{t} {n:,}" for t, n in result.rows.items())
    _say(f"restored {args.dir} into {target.describe()}: {rows}")
    _say("downstream schemas are rebuilt from raw by `attribution run --full-refresh`")
    return 0


def _reset_demo_warehouse(wh: Warehouse, world_dir: Path) -> None:
    """Start the demo from empty raw tables, but never destroy data that the demo did not load."""
    with wh.connect() as conn:
        if wh.table_exists("raw", "load_log", conn):
            prefix = str(world_dir.resolve()).replace("'", "''")
            foreign = wh.scalar(f"select count(*) from raw.load_log where source_file not like '{prefix}%'", conn)
            if foreign:
                raise SystemExit(
                    f"error: {wh.target.describe()} holds data the demo did not load; point the demo at an empty "
                    "warehouse (ATTRIBUTION_DUCKDB_PATH or PGDATABASE) instead of overwriting it"
                )
        for schema in SCHEMAS:
            wh.execute(f"drop schema if exists {quote_ident(schema)} cascade", conn)


def _accuracy_headline(result: dict[str, Any]) -> list[str]:
    """The few figures a newcomer looks at first, project beside the old fixed-confidence rule."""

    def figure(side: str, section: str, name: str) -> str:
        value = (result.get(side, {}).get(section) or {}).get(name)
        return "n/a" if value is None else f"{value:.3f}"

    lines = []
    for label, section, name in (
        ("last-touch precision", "last_touch", "precision"),
        ("last-touch recall", "last_touch", "recall"),
        ("last-touch F1", "last_touch", "f1"),
        ("ECE of confidence_score", "calibration", "ece"),
        ("ECE of pair probabilities", "pair_calibration", "ece"),
    ):
        lines.append(
            f"  {label:<28} {figure('project', section, name):>7}   (fixed rule {figure('baseline', section, name)})"
        )
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    from lab.evaluate import evaluate_warehouse

    target = _target(args)
    world_dir = Path(args.out)
    _say(f"== 1/5 generate a synthetic world ({args.persons} persons, seed {args.seed})")
    gen = argparse.Namespace(
        out=str(world_dir), persons=args.persons, seed=args.seed, days=args.days, format="csv", brief=True
    )
    if cmd_generate(gen):
        return 1
    _say(f"== 2/5 load into {target.describe()}")
    _reset_demo_warehouse(Warehouse(target), world_dir)
    if cmd_load(argparse.Namespace(path=str(world_dir), target=args.target)):
        return 1
    _say("== 3/5 materialise every asset through Dagster")
    run = argparse.Namespace(
        target=args.target,
        job="attribution_all",
        start=None,
        end=None,
        full_refresh=False,
        log_level="INFO",
        verbose=args.verbose,
    )
    if cmd_run(run):
        return 1
    result, text = evaluate_warehouse(Warehouse(target), world_dir)
    evaluation_path = world_dir / "evaluation.txt"
    evaluation_path.write_text(text)
    _say(f"== 4/5 accuracy against the world's ground truth (all figures: {evaluation_path})")
    for line in _accuracy_headline(result):
        _say(line)
    _say("== 5/5 summary (`attribution report` prints it again)")
    cmd_report(argparse.Namespace(target=args.target))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import dagster as dg

    from cli.doctor import doctor

    with warnings.catch_warnings():  # the assets' beta parameters warn at import; the job names are all we need
        warnings.simplefilter("ignore")
        from cli.runner import prepare_dagster_home
        from orchestration.jobs import JOBS

    target = _target(args)
    home = prepare_dagster_home(target)
    if args.run and not args.fix:
        print("error: --run names a run for --fix to settle; add --fix", file=sys.stderr)
        return 2
    _say(f"attribution doctor: {target.describe()}, DAGSTER_HOME={home}")
    with dg.DagsterInstance.get() as instance:
        lines, code = doctor(instance, target, [j.name for j in JOBS], fix=args.fix, force_run_ids=args.run)
    for line in lines:
        _say(line)
    return code


def cmd_ui(args: argparse.Namespace) -> int:
    import dagster as dg

    from cli.recovery import recover
    from cli.runner import prepare_dagster_home

    target = _target(args)
    home = prepare_dagster_home(target)
    # A dead run's slot would block every run launched from the UI too.
    with dg.DagsterInstance.get() as instance:
        recover(instance, say=_say)
    _say(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home}, target {target.describe()})")
    dagster = Path(sys.executable).with_name("dagster")
    argv = [str(dagster), "dev", "-m", "orchestration.definitions", "-h", args.host, "-p", str(args.port)]
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


# -- parser -----------------------------------------------------------------------------------------------
def _add(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help_text: str,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, aliases=list(aliases))
    p.add_argument(
        "--target",
        choices=TARGETS,
        default=None,
        help="warehouse target (default: $ATTRIBUTION_TARGET or duckdb)",
    )
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attribution", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = _add(sub, "generate", cmd_generate, "write a synthetic world with ground truth (raw files + truth files)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--persons", type=int, default=2000, help="number of simulated persons (default 2000)")
    p.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same world")
    p.add_argument("--days", type=int, default=30, help="days simulated (default 30)")
    p.add_argument("--format", choices=["csv", "csv.gz", "parquet"], default="csv", help="raw file format")

    p = _add(sub, "load", cmd_load, "append links / clicks / conversions files of a folder to schema raw")
    p.add_argument("path", help="folder with links, clicks, conversions as .csv, .csv.gz or .parquet")
    p.add_argument(
        "--encoding", default="utf-8", help="text encoding of the CSV files (default utf-8; e.g. latin-1, utf-16)"
    )
    p.add_argument("--force", action="store_true", help="load files whose content was already loaded, again")

    p = _add(sub, "run", cmd_run, "materialise every asset on the target through Dagster, in-process")
    p.add_argument("--job", default="attribution_all", help="job to run (default attribution_all)")
    p.add_argument("--start", help="first partition (YYYY-MM-DD) instead of every partition")
    p.add_argument("--end", help="last partition (YYYY-MM-DD), defaults to --start")
    p.add_argument("--full-refresh", action="store_true", help="rebuild incremental dbt models from scratch")
    p.add_argument("--log-level", default="INFO", help="Dagster log level of the log file or --verbose stream")
    p.add_argument("--verbose", action="store_true", help="stream every Dagster and dbt log line to the terminal")

    p = _add(sub, "evaluate", cmd_evaluate, "score the warehouse's outputs against ground truth, vs the baseline")
    p.add_argument("--truth", help="folder with truth_clicks / truth_conversions")
    p.add_argument(
        "--family",
        help="instead: generate, run and score every world of a named family (lab/family.py) on DuckDB files of "
        "their own, and print each metric per world with the median and worst case",
    )
    p.add_argument("--persons", type=int, default=3000, help="with --family: persons per world (default 3000)")
    p.add_argument("--seed", type=int, default=7, help="with --family: seed of every world (default 7)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    _add(sub, "report", cmd_report, "print the summary of the current warehouse")

    p = _add(sub, "forget", cmd_forget, "erase a person: raw and staged rows, identities, scores, credits")
    p.add_argument("--email", help="an email of the person (any spelling staging normalises alike)")
    p.add_argument("--user-id", dest="user_id", help="a user id of the person")
    p.add_argument("--cookie", help="a cookie id of the person")
    p.add_argument("--no-run", action="store_true", help="erase raw and staging only; the next run rebuilds the rest")

    p = _add(sub, "demo", cmd_demo, "generate → load → run → report → evaluate on a fresh demo warehouse")
    # Large enough that the confidence model learns from direct-click labels instead of falling back to priors.
    p.add_argument("--persons", type=int, default=20000, help="simulated persons (default 20000, ~200k clicks)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--out", default=str(DEMO_WORLD_DIR), help=f"world folder (default {DEMO_WORLD_DIR})")
    p.add_argument("--verbose", action="store_true", help="stream every Dagster and dbt log line to the terminal")

    p = _add(sub, "backup", cmd_backup, "write every table of schema raw to Parquet files plus a manifest")
    p.add_argument("dir", help="backup folder (created; must not already hold a manifest.json)")

    p = _add(sub, "restore", cmd_restore, "verify a backup and load it into the empty raw schema, in one transaction")
    p.add_argument("dir", help="backup folder written by `attribution backup`")
    p.add_argument("--force", action="store_true", help="empty every raw table first instead of refusing")

    p = _add(
        sub,
        "doctor",
        cmd_doctor,
        "runs in progress and whether their process lives, pool slots, warehouse locks, last successful runs",
        aliases=["status"],
    )
    p.add_argument("--fix", action="store_true", help="mark dead runs failed, free their slots, stop leftovers")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="with --fix: also settle this run (id or prefix) that you know is dead, e.g. one started on another "
        "host; never a run whose process lives on this host",
    )

    p = _add(sub, "ui", cmd_ui, "start the Dagster webserver and daemon (DAGSTER_HOME under data/)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
