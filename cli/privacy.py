"""`attribution forget`: erase one person, through the dbt operation that holds the SQL (macros/privacy).

The person's identifiers go to dbt in environment variables, and dbt logs to a temporary folder that is removed
afterwards: neither dbt's log (which records command lines and executed SQL) nor any file under the project keeps
them. What the operation removed is printed, one line per table.

DuckDB and PostgreSQL run the operation in a dbt process of its own, in one transaction. Spark runs it in this
process (``orchestration/dbt_in_process.py``): the embedded metastore admits one JVM, and the session dbt uses is
then the one the command's own steps (the run that follows) use. Spark has no transactions: the operation erases
staging before raw, so one interrupted part-way finds the same rows when run again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from warehouse.target import PROJECT_ROOT, Target, target_env

FORGET_ENV = {
    "email": "ATTRIBUTION_FORGET_EMAIL",
    "user_id": "ATTRIBUTION_FORGET_USER_ID",
    "cookie": "ATTRIBUTION_FORGET_COOKIE",
}
LINE_MARK = "forget: "


class ForgetError(RuntimeError):
    pass


def forget_person(target: Target, email: str | None, user_id: str | None, cookie: str | None) -> list[str]:
    """Run the dbt operation ``forget_person`` on ``target``; returns its report lines."""
    from orchestration.resources import dbt_executable

    given = {"email": email, "user_id": user_id, "cookie": cookie}
    if not any((v or "").strip() for v in given.values()):
        raise ForgetError("name the person: --email, --user-id or --cookie")
    env = {**os.environ, **target_env(target)}
    env.update({FORGET_ENV[k]: (v or "").strip() for k, v in given.items()})
    with tempfile.TemporaryDirectory(prefix="attribution-forget-") as tmp:
        state = PROJECT_ROOT / "target" / target.name / "partial_parse.msgpack"
        if state.exists():
            shutil.copy(state, Path(tmp) / state.name)  # dbt re-parses only what changed
        cmd = [dbt_executable(), "run-operation", "forget_person", "--project-dir", str(PROJECT_ROOT),
               "--profiles-dir", str(PROJECT_ROOT / "dbt_project"), "--target", target.name,
               "--target-path", tmp, "--log-path", tmp]  # fmt: skip
        if target.is_spark:
            returncode, messages = _run_in_process(cmd, env)
        else:
            proc = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
            returncode, messages = proc.returncode, proc.stdout.splitlines()
    lines = [line.split(LINE_MARK, 1)[1].strip() for line in messages if LINE_MARK in line]
    if returncode != 0:
        # Only dbt's error lines: the statements it echoes could hold the identifiers being erased.
        errors = [line.strip() for line in messages if "Error" in line][-3:]
        committed = (
            "it stopped part-way (Spark tables have no transactions): run it again to finish"
            if target.is_spark
            else "nothing was committed"
        )
        raise ForgetError(f"the erasure failed on {target.describe()}, {committed}: {' | '.join(errors)}")
    return lines


def _run_in_process(cmd: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """dbt in this process (Spark); its log events' messages, as a dbt process would print them."""
    from orchestration.dbt_in_process import InProcessDbt

    proc = InProcessDbt(cmd, env=env, cwd=PROJECT_ROOT)
    messages = []
    for raw in proc.stdout.getvalue().decode().splitlines():
        try:
            messages.append(str(json.loads(raw)["info"]["msg"]))
        except (ValueError, KeyError, TypeError):
            messages.append(raw)
    return proc.returncode, messages
