"""A killed run never wedges the warehouse (issue 22), on DuckDB and PostgreSQL.

`attribution run` is started as an operator starts it (a subprocess of `.venv/bin/attribution`), SIGKILLed after
its first steps, and run again: the next run says in one line that it found the dead run, marks it failed and frees
its pool slot, finishes, and gives marts identical to a clean run of the same world. `attribution doctor` lists a
stale run, its held slot and its leftover process, and `--fix` clears exactly those (never a live run, never one on
another host). A run waiting for a slot held by a live run says what it waits for and stops on SIGTERM with nothing
left claimed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from cli.recovery import BOOT_TAG, HOST_TAG, PID_TAG, PROCESS_START_TAG, RUN_ID_ENV, process_tags
from cli.runner import prepare_dagster_home, run_job
from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from tests.conftest import assert_run_ok, mart_checksums, module_target
from warehouse.client import Warehouse
from warehouse.loader import load_folder
from warehouse.target import PROJECT_ROOT, Target

WORLD = WorldConfig(persons=250, seed=11, days=10)
ATTRIBUTION = Path(sys.executable).with_name("attribution")
RUN_TIMEOUT = 600  # a full run of this world takes 30-100 s on a shared 2-core machine


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_world(generate_world(WORLD), out)
    return out


def start(*args: str, out: Path) -> subprocess.Popen:
    """`attribution ARGS` with stdout and stderr in ``out``; the environment (target, DAGSTER_HOME) is the test's."""
    with out.open("w") as sink:
        return subprocess.Popen(
            [str(ATTRIBUTION), *args], cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=sink, stderr=subprocess.STDOUT
        )


def attribution(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ATTRIBUTION), *args], cwd=PROJECT_ROOT, env=os.environ.copy(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen, out: Path, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = out.read_text()
        if text in content:
            return content
        assert proc.poll() is None, f"exited with {proc.returncode} before printing {text!r}:\n{content}"
        time.sleep(0.3)
    proc.kill()
    proc.wait()
    raise AssertionError(f"no {text!r} within {timeout} s:\n{out.read_text()}")


def run_of(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun:
    runs = [r for r in instance.get_runs() if r.tags.get(PID_TAG) == str(pid)]
    assert len(runs) == 1, runs
    return runs[0]


def claims(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every slot held and every queue place taken by ``run_id``, in any pool."""
    storage = instance.event_log_storage
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys())).values()
    held = [f"{i.concurrency_key}/{s.step_key}" for i in infos for s in i.claimed_slots if s.run_id == run_id]
    queued = [f"{i.concurrency_key}/{p.step_key}" for i in infos for p in i.pending_steps if p.run_id == run_id]
    # A step holding a slot also keeps its (assigned) place in the queue until it frees both.
    return [f"slot {c}" for c in held] + [f"queued {c}" for c in queued if c not in held]


@pytest.fixture
def instance(target: Target, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """The instance `attribution` uses for ``target`` (same DAGSTER_HOME and dagster.yaml)."""
    prepare_dagster_home(target, tmp_path / "dagster_home")
    with dg.DagsterInstance.get() as inst:
        yield inst


def add_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    """A run that says it is executing, as a process would have left it."""
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(job_name="attribution_all", run_id=run_id, tags=tags, status=dg.DagsterRunStatus.STARTED)
    )
    return run_id


def fill_pool(instance: dg.DagsterInstance, run_id: str, pool: str = "warehouse") -> int:
    """Claim every slot of ``pool`` for ``run_id``; returns the limit."""
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(pool)
    limit = storage.get_concurrency_info(pool).limit
    for i in range(limit):
        assert storage.claim_concurrency_slot(pool, run_id, f"step_{i}", 0).is_claimed
    return limit


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------------- kill -9 ---
def test_a_run_killed_mid_way_is_recovered_by_the_next_run_with_identical_marts(
    target: Target, world: Path, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    load_folder(Warehouse(target), world)

    killed_out = tmp_path / "killed.out"
    killed = start("run", out=killed_out)
    # Two steps done; the next (a dbt build) is killed while it holds the pool's slot.
    wait_for_line(killed, killed_out, "ok     identity_graph", timeout=RUN_TIMEOUT)
    dead = run_of(instance, killed.pid)
    deadline = time.monotonic() + RUN_TIMEOUT
    while not claims(instance, dead.run_id) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED  # what kill -9 leaves
    assert claims(instance, dead.run_id), "the killed run held no slot: the scenario did not reproduce the wedge"

    started = time.monotonic()
    again = attribution("run", timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    recovered = [line for line in again.stdout.splitlines() if line.startswith("recovered run")]
    assert len(recovered) == 1, again.stdout
    assert recovered[0].startswith(f"recovered run {dead.run_id[:8]} (attribution_all, started ")
    assert f"process {killed.pid} " in recovered[0]
    assert "marked failed, freed 1 slot of pool warehouse" in recovered[0]
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not claims(instance, dead.run_id)
    assert " succeeded in " in again.stdout, again.stdout
    assert elapsed < RUN_TIMEOUT
    recovered_marts = mart_checksums(Warehouse(target))

    # The same world in a fresh warehouse, never interrupted.
    with module_target(target.name, tmp_path / "clean", prefix="attr_recovery") as clean:
        load_folder(Warehouse(clean), world)
        assert_run_ok(run_job(clean, instance=dg.DagsterInstance.ephemeral()))
        clean_marts = mart_checksums(Warehouse(clean))
    assert recovered_marts == clean_marts


# -------------------------------------------------------------------------------------------------- doctor ---
def test_doctor_lists_a_stale_run_its_slot_and_leftover_and_fix_clears_only_those(
    target: Target, instance: dg.DagsterInstance
) -> None:
    here = socket.gethostname()
    dead = add_run(instance, {PID_TAG: str(dead_pid()), HOST_TAG: here})
    fill_pool(instance, dead)
    # A process the dead run started (its dbt) that outlived it: found by the run id it inherited.
    leftover = subprocess.Popen(["sleep", "300"], env={**os.environ, RUN_ID_ENV: dead})
    alive = add_run(instance, process_tags())  # this test's own process: alive, never touched
    elsewhere = add_run(instance, {PID_TAG: "1", HOST_TAG: "another-host", BOOT_TAG: "", PROCESS_START_TAG: ""})
    try:
        before = attribution("doctor")
        assert before.returncode == 1, before.stdout + before.stderr
        out = before.stdout
        assert f"STALE    run {dead[:8]} (attribution_all, started " in out, out
        assert f"leftover process {leftover.pid}: sleep 300" in out, out
        assert f"running  run {alive[:8]} " in out, out
        assert f"UNKNOWN  run {elsewhere[:8]} " in out and "runs on host another-host" in out, out
        assert f"held by run {dead[:8]} (step_0)" in out, out
        assert "last successful run per job:" in out and "attribution_all" in out, out
        assert f"problems: stale run {dead[:8]}" in out, out
        lock = "warehouse lock:" if target.is_duckdb else "database sessions at work:"
        assert lock in out, out

        fixed = attribution("doctor", "--fix")
        out = fixed.stdout
        assert f"fixed: recovered run {dead[:8]} " in out, out
        assert "freed " in out and f"stopped its leftover process (sleep 300 pid {leftover.pid})" in out, out
        # SIGTERM first; on a machine loaded past the doctor's grace period the follow-up SIGKILL may land first.
        assert leftover.wait(timeout=30) in (-signal.SIGTERM, -signal.SIGKILL)
        assert "STALE" not in out and "problems:" not in out, out
        # The other host's run is left for a person: exit 1 with a note naming the command that settles it.
        assert fixed.returncode == 1 and f"attribution doctor --fix --run {elsewhere[:8]}" in out, out
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
        assert not claims(instance, dead)
        assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(elsewhere).status == dg.DagsterRunStatus.STARTED

        # Named runs: the live one is refused (its process runs here), the other host's run is settled.
        named = attribution("doctor", "--fix", "--run", alive[:8], "--run", elsewhere[:8])
        assert named.returncode == 0, named.stdout + named.stderr
        assert f"fixed: recovered run {elsewhere[:8]} " in named.stdout
        assert f"recovered run {alive[:8]}" not in named.stdout
        assert instance.get_run_by_id(elsewhere).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
    finally:
        leftover.kill()
        leftover.wait()


# ---------------------------------------------------------------------------------------- waiting + SIGTERM ---
def test_a_run_waiting_for_a_slot_says_for_what_and_stops_cleanly_on_sigterm(
    target: Target, world: Path, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    load_folder(Warehouse(target), world)
    holder = add_run(instance, process_tags())  # a live run (this process) holding every slot of the pool
    limit = fill_pool(instance, holder)

    out = tmp_path / "waiting.out"
    waiting = start("run", out=out)
    text = wait_for_line(waiting, out, "waiting for a slot of pool warehouse", timeout=180)
    assert f"(limit {limit}), held by run {holder[:8]} (attribution_all, pid {os.getpid()}, step step_0)" in text, text
    assert "recovered" not in text  # a live run is never taken for a dead one
    run = run_of(instance, waiting.pid)
    queued = claims(instance, run.run_id)
    assert queued and all(c.startswith("queued warehouse/") for c in queued), queued

    waiting.send_signal(signal.SIGTERM)
    assert waiting.wait(timeout=60) == 130
    lines = out.read_text().splitlines()
    assert lines[-1].startswith(f"run {run.run_id}: interrupted after "), lines
    assert "nothing left claimed" in lines[-1]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert not claims(instance, run.run_id)
    assert len(claims(instance, holder)) == limit  # the live holder keeps its slots
