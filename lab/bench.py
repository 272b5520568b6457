"""`make bench`: speed, memory and accuracy at three world sizes on both targets → BENCHMARKS.md.

Each measured step runs in its own subprocess so its peak memory (max RSS of the process tree's largest
process) is measured in isolation. Stage times come from the Dagster run's step events, so the table shows
where the time goes, not only the total. Every size also gets a *bare load* of the same files into the same
engine (a plain CREATE TABLE AS / COPY with no cleaning) as the reference the end-to-end time is compared to.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from warehouse.target import DATA_DIR, PROJECT_ROOT, resolve_target, target_env

BENCH_DIR = DATA_DIR / "bench"
# persons per size; the generator makes ~10 clicks per person (see lab/synthetic.py).
SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
DAYS = 30
# Step keys → the stage they belong to, first match wins (dbt stages are split by folder in orchestration/dbt.py;
# Python assets' step keys may carry their asset key prefix, e.g. "intermediate__match_scores").
STAGES = (
    ("dbt_staging_intermediate", "staging"),
    ("identity_graph", "identity"),
    ("dbt_after_identity_graph", "identity"),
    ("dbt_intermediate_partitioned", "candidates"),
    ("match_model", "confidence"),
    ("match_scores", "confidence"),
    ("channel_weights", "attribution"),
    ("attribution", "attribution"),
    ("dbt_marts", "marts"),
)
STAGE_ORDER = ("generate", "load", "staging", "identity", "candidates", "confidence", "attribution", "marts")


@dataclass
class Measure:
    seconds: float
    peak_mb: float
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _python() -> str:
    return sys.executable


# A wrapper process per measurement: RUSAGE_CHILDREN is a running maximum, so it must start from zero each time.
_MEASURE = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_measured(args: list[str], env: dict[str, str]) -> Measure:
    """Run a command in a fresh process; wall time and the peak RSS of its largest descendant."""
    started = time.perf_counter()
    proc = subprocess.run([_python(), "-c", _MEASURE, *args], env=env, capture_output=True, text=True,
                          cwd=PROJECT_ROOT)  # fmt: skip
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    peak_kb = int(next(line.split()[1] for line in proc.stderr.splitlines()[::-1] if line.startswith("PEAK_KB")))
    return Measure(seconds=seconds, peak_mb=peak_kb / 1024, output=proc.stdout)


def _attribution(*args: str) -> list[str]:
    return [_python(), "-m", "cli.main", *args]


def generate(size: str, persons: int) -> tuple[Path, Measure]:
    out = BENCH_DIR / f"world_{size}"
    marker = out / ".complete"
    if marker.exists():
        return out, Measure(**json.loads(marker.read_text()))
    shutil.rmtree(out, ignore_errors=True)
    m = run_measured(
        _attribution("generate", "--out", str(out), "--persons", str(persons), "--seed", "1", "--days", str(DAYS),
                     "--format", "parquet"),
        dict(os.environ),
    )  # fmt: skip
    marker.write_text(json.dumps({"seconds": m.seconds, "peak_mb": m.peak_mb}))
    return out, m


def split_last_day(world: Path) -> tuple[Path, Path]:
    """Base folder (all but the last day) and increment folder (the last day) for the hourly-append measure."""
    import pandas as pd

    base, inc = world.parent / f"{world.name}_base", world.parent / f"{world.name}_lastday"
    if (inc / ".complete").exists():
        return base, inc
    for folder in (base, inc):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.copy(world / "links.parquet", base / "links.parquet")
    for name, column in (("clicks", "clicked_at"), ("conversions", "converted_at")):
        frame = pd.read_parquet(world / f"{name}.parquet")
        ts = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
        cutoff = ts.max().normalize()
        last = ts >= cutoff
        frame.loc[~last].to_parquet(base / f"{name}.parquet", index=False)
        frame.loc[last].to_parquet(inc / f"{name}.parquet", index=False)
    (inc / ".complete").write_text("ok")
    return base, inc


def fresh_target_env(
    target_name: str, size: str, overrides: dict[str, str] | None = None, label: str | None = None
) -> dict[str, str]:
    """The environment of a fresh warehouse on ``target_name``; ``label`` (default the target's name) names its
    folders, so two rows on one target (Spark local and standalone) keep their Dagster history apart."""
    env = {**os.environ, **(overrides or {})}
    label = label or target_name
    env["DAGSTER_HOME"] = str(BENCH_DIR / f"dagster_home_{label}_{size}")
    if target_name == "duckdb":
        path = BENCH_DIR / f"{size}.duckdb"
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
        env["ATTRIBUTION_DUCKDB_PATH"] = str(path)
    elif target_name == "spark":
        folder = BENCH_DIR / f"{label}_{size}"
        shutil.rmtree(folder, ignore_errors=True)
        env["ATTRIBUTION_SPARK_DIR"] = str(folder)
    else:
        dbname = f"attribution_bench_{size.lower()}"
        _pg_admin(f'drop database if exists "{dbname}" with (force)')
        _pg_admin(f'create database "{dbname}"')
        env["PGDATABASE"] = dbname
    env["ATTRIBUTION_TARGET"] = target_name
    env.update(target_env(resolve_target(target_name, env)))
    shutil.rmtree(env["DAGSTER_HOME"], ignore_errors=True)
    return env


def _pg_admin(sql: str) -> None:
    import psycopg2

    t = resolve_target("postgres")
    kwargs = {**t.postgres.dsn_kwargs(), "dbname": "postgres"}
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


BARE_LOAD = """
import sys, time
from pathlib import Path
from warehouse.target import resolve_target
from warehouse.client import Warehouse
folder = Path(sys.argv[1]); wh = Warehouse(resolve_target())
with wh.connect() as conn:
    wh.execute("create schema if not exists bare", conn)
    for name in ("links", "clicks", "conversions"):
        path = folder / f"{name}.parquet"
        if wh.target.is_duckdb:
            conn.execute(f"create or replace table bare.{name} as select * from read_parquet('{path}')")
        elif wh.target.is_spark:
            conn.read.parquet(str(path)).write.mode("overwrite").saveAsTable(f"bare.{name}")
        else:
            import pyarrow.parquet as pq, pyarrow.csv as pacsv, io
            pf = pq.ParquetFile(path)
            cols = ", ".join(f'"{c}" text' for c in pf.schema_arrow.names)
            with conn.cursor() as cur:
                cur.execute(f"drop table if exists bare.{name}"); cur.execute(f"create table bare.{name} ({cols})")
                for batch in pf.iter_batches(batch_size=500_000):
                    buf = io.BytesIO(); pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=False))
                    buf.seek(0); cur.copy_expert(f"copy bare.{name} from stdin with (format csv)", buf)
"""


def stage_times(dagster_home: str) -> dict[str, float]:
    """Sum of step durations per stage for the newest run of the instance at ``dagster_home``."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = dagster_home
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        starts: dict[str, float] = {}
        totals: dict[str, float] = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or record.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                starts[record.step_key] = record.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and record.step_key in starts:
                stage = next((s for part, s in STAGES if part in record.step_key), record.step_key)
                totals[stage] = totals.get(stage, 0.0) + record.timestamp - starts[record.step_key]
    return totals


def bench_target(
    target_name: str,
    size: str,
    world: Path,
    measure_append: bool,
    overrides: dict[str, str] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    env = fresh_target_env(target_name, size, overrides, label)
    row: dict[str, Any] = {"target": label or target_name, "size": size}
    bare = run_measured([_python(), "-c", BARE_LOAD, str(world)], env)
    row["bare_load_s"] = bare.seconds
    env = fresh_target_env(target_name, size, overrides, label)
    base, inc = split_last_day(world) if measure_append else (world, None)
    load = run_measured(_attribution("load", str(base)), env)
    run = run_measured(_attribution("run", "--log-level", "WARNING"), env)
    row["load_s"] = load.seconds
    row["run_s"] = run.seconds
    row["peak_mb"] = max(load.peak_mb, run.peak_mb)
    row["stages"] = stage_times(env["DAGSTER_HOME"])
    row["stages"]["load"] = load.seconds
    if inc is not None:
        last_day = sorted(p.name for p in inc.iterdir())
        inc_load = run_measured(_attribution("load", str(inc)), env)
        day = _last_day(inc)
        # What the hourly schedule does after a new day lands: refresh yesterday's and today's partitions.
        previous = (datetime.fromisoformat(day) - timedelta(days=1)).strftime("%Y-%m-%d")
        hourly_args = ("run", "--job", "hourly_refresh", "--start", previous, "--end", day, "--log-level", "WARNING")
        hourly = run_measured(_attribution(*hourly_args), env)
        row["append_s"] = inc_load.seconds + hourly.seconds
        row["append_files"] = last_day
    return row


# The Spark target against a standalone cluster on this machine (bench target name): the driver is the run's process
# as on local[2], the tasks run in executor JVMs of separate worker processes, so nothing may rely on the driver's
# memory or files but the shared warehouse folder.
STANDALONE = "spark-standalone"
STANDALONE_WORKERS = 2
STANDALONE_WORKER_MEMORY = "3g"
# What a cluster sets in its spark-defaults.conf (README, Spark): here each executor takes its worker's one core.
STANDALONE_DEFAULTS = {"spark.executor.memory": "2g", "spark.executor.cores": "1"}


def _wait_for(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise RuntimeError(f"standalone cluster: {what} not up after {timeout_s:.0f} s (logs in {BENCH_DIR / STANDALONE})")


@contextmanager
def standalone_cluster(workers: int = STANDALONE_WORKERS) -> Iterator[dict[str, str]]:
    """A master and ``workers`` workers (one core each) started from pyspark's bundled launcher (``spark-class``, no
    download), stopped on exit; yields the environment that points the Spark target at it (master URL, and a
    ``SPARK_CONF_DIR`` whose spark-defaults.conf sizes the executors)."""
    import urllib.request

    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    logs = BENCH_DIR / STANDALONE
    shutil.rmtree(logs, ignore_errors=True)
    (logs / "conf").mkdir(parents=True)
    (logs / "conf" / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in STANDALONE_DEFAULTS.items()))
    host, port, ui = "127.0.0.1", 7177, 8181
    url = f"spark://{host}:{port}"
    env = {**os.environ, "SPARK_LOCAL_IP": host}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> None:
        with (logs / f"{name}.log").open("wb") as log:
            procs.append(subprocess.Popen([str(spark_class), *args], env=env, stdout=log, stderr=subprocess.STDOUT))

    def alive_workers() -> int:
        try:
            with urllib.request.urlopen(f"http://{host}:{ui}/json/", timeout=2) as response:
                return int(json.load(response).get("aliveworkers", 0))
        except OSError:
            return 0

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", host, "--port", str(port),
              "--webui-port", str(ui))  # fmt: skip
        for i in range(workers):
            work = str(logs / f"work{i}")
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", url, "--cores", "1", "--memory",
                  STANDALONE_WORKER_MEMORY, "--webui-port", str(ui + 1 + i), "--work-dir", work)  # fmt: skip
        _wait_for(lambda: alive_workers() >= workers, f"{workers} workers")
        yield {"ATTRIBUTION_SPARK_MASTER": url, "SPARK_CONF_DIR": str(logs / "conf")}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _last_day(folder: Path) -> str:
    import pandas as pd

    frame = pd.read_parquet(folder / "conversions.parquet", columns=["converted_at"])
    return pd.to_datetime(frame["converted_at"], utc=True, format="ISO8601").max().strftime("%Y-%m-%d")


def fixed_costs(env_base: dict[str, str]) -> dict[str, float]:
    """Start-up costs a run pays once (dbt runs in the run's process, orchestration/dbt_in_process.py): importing
    dbt, and loading the Dagster definitions (which imports Dagster, dagster-dbt and reads the prepared manifest)."""
    env = dict(env_base)
    costs = {}
    for name, code in (
        ("dbt_import_s", "import dbt.cli.main"),
        ("dagster_definitions_s", "import orchestration.definitions"),
    ):
        started = time.perf_counter()
        subprocess.run([_python(), "-c", code], env=env, capture_output=True, check=True, cwd=PROJECT_ROOT)
        costs[name] = time.perf_counter() - started
    return costs


def accuracy(size: str, world: Path) -> dict[str, Any]:
    env = fresh_target_env("duckdb", f"acc_{size}")
    run_measured(_attribution("load", str(world)), env)
    run_measured(_attribution("run", "--log-level", "WARNING"), env)
    out = run_measured(_attribution("evaluate", "--truth", str(world), "--json"), env)
    return json.loads(out.output)


def scaling_exponent(rows: list[dict[str, Any]], clicks: dict[str, int], target: str) -> float | None:
    points = [(clicks[r["size"]], r["run_s"] + r["load_s"]) for r in rows if r["target"] == target]
    if len(points) < 2:
        return None
    (x0, y0), (x1, y1) = points[0], points[-1]
    return math.log(y1 / y0) / math.log(x1 / x0)


# The targets of issue 8 (ratios, memory, scaling, append) and issue 5 (identity resolution at L).
E2E_RATIO_LIMIT = {"duckdb": 6.0, "postgres": 10.0}
# Issue 23: a small warehouse's run is mostly fixed costs.
S_E2E_LIMIT_S = {"duckdb": 15.0}
PEAK_GB_LIMIT = {"duckdb": 4.0}
IDENTITY_L_LIMIT_S = 30.0
SCALING_LIMIT = 1.1
APPEND_SHARE_LIMIT = 0.05


def target_checks(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Each measured figure against its target: (what, measured value, met)."""
    checks: list[tuple[str, str, bool]] = []
    for r in results["rows"]:
        e2e = r["load_s"] + r["run_s"]
        if r["size"] == "S" and r["target"] in S_E2E_LIMIT_S:
            limit_s = S_E2E_LIMIT_S[r["target"]]
            checks.append((f"{r['target']} S end-to-end ≤ {limit_s:.0f} s", f"{e2e:.1f} s", e2e <= limit_s))
        if r["size"] != "L" or r["target"] not in E2E_RATIO_LIMIT:
            continue
        ratio = e2e / r["bare_load_s"]
        limit = E2E_RATIO_LIMIT[r["target"]]
        checks.append((f"{r['target']} L end-to-end ≤ {limit:.0f}× bare load", f"{ratio:.1f}×", ratio <= limit))
        if r["target"] in PEAK_GB_LIMIT:
            gb = r["peak_mb"] / 1024
            checks.append((f"{r['target']} L peak memory ≤ {PEAK_GB_LIMIT[r['target']]:.0f} GB", f"{gb:.1f} GB",
                           gb <= PEAK_GB_LIMIT[r["target"]]))  # fmt: skip
            identity = r["stages"].get("identity", 0.0)
            checks.append((f"{r['target']} L identity resolution ≤ {IDENTITY_L_LIMIT_S:.0f} s", f"{identity:.1f} s",
                           identity <= IDENTITY_L_LIMIT_S))  # fmt: skip
        if "append_s" in r:
            share = r["append_s"] / e2e
            checks.append((f"{r['target']} L append a day + hourly job ≤ 5% of the full run", f"{share:.1%}",
                           share <= APPEND_SHARE_LIMIT))  # fmt: skip
    measured_l = {r["target"] for r in results["rows"] if r["size"] == "L"}
    for target in sorted(({r["target"] for r in results["rows"]} - measured_l) & set(E2E_RATIO_LIMIT)):
        limit = E2E_RATIO_LIMIT[target]
        checks.append((f"{target} L end-to-end ≤ {limit:.0f}× bare load", "not measured in this run", False))
    for target, exponent in results["scaling"].items():
        if exponent is not None:
            met = exponent <= SCALING_LIMIT
            checks.append((f"{target} scaling exponent ≤ {SCALING_LIMIT}", f"{exponent:.2f}", met))
    return checks


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = ["# Benchmarks", "", f"Measured {results['measured_at']} by `make bench` on {results['machine']}.", ""]
    lines += ["## Worlds", "", "| size | persons | clicks | conversions | generate (s) | generate peak MB |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for size, w in results["worlds"].items():
        lines.append(
            f"| {size} | {w['persons']:,} | {w['clicks']:,} | {w['conversions']:,} | {w['generate_s']:.1f} | "
            f"{w['generate_peak_mb']:.0f} |"
        )
    run_sizes = {r["size"] for r in results["rows"]}
    generated_only = [size for size in results["worlds"] if size not in run_sizes]
    if generated_only:
        lines += ["", f"Generated and timed only, not run end to end in this measurement: {', '.join(generated_only)}."]
    lines += ["", "## Speed and memory", ""]
    header = "| target | size | bare load (s) | " + " | ".join(f"{s} (s)" for s in STAGE_ORDER[1:])
    header += " | end-to-end (s) | ratio e2e / bare | peak MB | append last day + hourly job (s) | append / full |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results["rows"]:
        e2e = r["load_s"] + r["run_s"]
        stages = " | ".join(f"{r['stages'].get(s, 0.0):.1f}" for s in STAGE_ORDER[1:])
        append = f"{r['append_s']:.1f} | {r['append_s'] / e2e:.1%}" if "append_s" in r else "– | –"
        lines.append(
            f"| {r['target']} | {r['size']} | {r['bare_load_s']:.1f} | {stages} | {e2e:.1f} | "
            f"{e2e / r['bare_load_s']:.1f}× | {r['peak_mb']:.0f} | {append} |"
        )
    lines += ["", "Fixed start-up costs (paid once per run, dominate small worlds): "
              + ", ".join(f"{k} {v:.1f}" for k, v in results["fixed_costs"].items()), ""]  # fmt: skip
    for target, exponent in results["scaling"].items():
        if exponent is not None:
            lines.append(f"- Scaling exponent {target} (end-to-end time vs clicks, smallest → largest): {exponent:.2f}")
    lines += ["", "## Targets (2-core machine)", "", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in target_checks(results):
        lines.append(f"| {name} | {measured} | {'yes' if met else '**no**'} |")
    lines += ["", "## Accuracy (project vs baseline, DuckDB)", ""]
    for size, acc in results["accuracy"].items():
        lines += [f"### {size}", "", "| metric | project | baseline |", "|---|---|---|"]
        for section, keys in (
            ("last_touch", ("precision", "recall", "f1", "accuracy_among_attributable")),
            ("calibration", ("ece",)),
            ("pair_calibration", ("ece",)),
            ("identity", ("precision", "recall")),
            ("bot_filtering", ("precision", "recall")),
            ("multi_touch", ("mean_one_minus_tv",)),
        ):
            for key in keys:
                # Sections an older evaluator did not report show as missing.
                p, b = (acc[side].get(section, {}).get(key) for side in ("project", "baseline"))
                fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
                lines.append(f"| {section}.{key} | {fmt(p)} | {fmt(b)} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,M,L")
    parser.add_argument("--targets", default="duckdb,postgres")
    parser.add_argument("--accuracy-sizes", default="S,M")
    parser.add_argument("--generate-sizes", default="", help="sizes only generated and timed (no pipeline run)")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "BENCHMARKS.md"))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of earlier runs (the committed JSON beside --out) that this run does not re-measure, so "
        "a long benchmark can be taken target by target, across sessions",
    )
    parser.add_argument(
        "--skip-append",
        action="store_true",
        help="do not measure appending the last day and the hourly job (the largest size's extra step); its row "
        "then shows no append figure",
    )
    args = parser.parse_args(argv)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    sizes = [s for s in args.sizes.split(",") if s]
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_mem_gb():.0f} GB RAM, Python "
        f"{platform.python_version()}",
        "worlds": {},
        "rows": [],
        "accuracy": {},
    }
    clicks: dict[str, int] = {}
    for size in sizes:
        world, m = generate(size, SIZES[size])
        import pyarrow.parquet as pq

        n_clicks = pq.ParquetFile(world / "clicks.parquet").metadata.num_rows
        n_conv = pq.ParquetFile(world / "conversions.parquet").metadata.num_rows
        clicks[size] = n_clicks
        results["worlds"][size] = {"persons": SIZES[size], "clicks": n_clicks, "conversions": n_conv,
                                   "generate_s": m.seconds, "generate_peak_mb": m.peak_mb}  # fmt: skip
        print(f"[bench] world {size}: {n_clicks:,} clicks generated in {m.seconds:.1f}s", flush=True)
        for target in args.targets.split(","):
            measure_append = size == sizes[-1] and not args.skip_append
            if target == STANDALONE:
                with standalone_cluster() as cluster_env:
                    row = bench_target("spark", size, world, measure_append, cluster_env, label=STANDALONE)
            else:
                row = bench_target(target, size, world, measure_append)
            row["stages"]["generate"] = m.seconds
            results["rows"].append(row)
            print(f"[bench] {target} {size}: {json.dumps(row, default=str)}", flush=True)
        if size in args.accuracy_sizes.split(","):
            results["accuracy"][size] = accuracy(size, world)
    for size in [s for s in args.generate_sizes.split(",") if s and s not in sizes]:
        world, m = generate(size, SIZES[size])
        import pyarrow.parquet as pq

        results["worlds"][size] = {
            "persons": SIZES[size],
            "clicks": pq.ParquetFile(world / "clicks.parquet").metadata.num_rows,
            "conversions": pq.ParquetFile(world / "conversions.parquet").metadata.num_rows,
            "generate_s": m.seconds,
            "generate_peak_mb": m.peak_mb,
        }
        print(f"[bench] world {size} generated in {m.seconds:.1f}s", flush=True)
    results["fixed_costs"] = fixed_costs(dict(os.environ))
    # The raw figures are committed beside the markdown, so a later partial run can merge into them.
    store = Path(args.out).with_suffix(".json")
    if args.merge:
        results = merge_results(store, results)
        clicks = {size: w["clicks"] for size, w in results["worlds"].items()}
    targets = sorted({r["target"] for r in results["rows"]})
    results["scaling"] = {t: scaling_exponent(results["rows"], clicks, t) for t in targets}
    store.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(results, Path(args.out))
    print(f"[bench] wrote {args.out}")
    return 0


def merge_results(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` on top of the results stored at ``path``: rows re-measured now replace the stored ones."""
    if not path.exists():
        return new
    old = json.loads(path.read_text())
    measured = {(r["target"], r["size"]) for r in new["rows"]}
    order = {size: i for i, size in enumerate(SIZES)}
    rows = [r for r in old.get("rows", []) if (r["target"], r["size"]) not in measured] + new["rows"]
    rows.sort(key=lambda r: (r["target"], order.get(r["size"], 99)))
    return {
        **new,
        "measured_at": f"{old.get('measured_at', '?')} – {new['measured_at']}",
        "worlds": {**old.get("worlds", {}), **new["worlds"]},
        "rows": rows,
        "accuracy": {**old.get("accuracy", {}), **new["accuracy"]},
    }


def _mem_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


if __name__ == "__main__":
    sys.exit(main())
