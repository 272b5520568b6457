"""`attribution forget`: erase one person, through the dbt operation that holds the SQL (macros/privacy).

The person's identifiers go to dbt in environment variables, and dbt logs to a temporary folder that is removed
afterwards: neither dbt's log (which records command lines and executed SQL) nor any file under the project keeps
them. What the operation removed is printed, one line per table.
"""

from __future__ import annotations

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

    if target.is_spark:
        # Erasing rows means rewriting every table that holds them; Parquet tables have no delete.
        raise ForgetError("forget is not available on the experimental Spark target yet: nothing was erased")
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
        proc = subprocess.run(cmd, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    lines = [line.split(LINE_MARK, 1)[1].strip() for line in proc.stdout.splitlines() if LINE_MARK in line]
    if proc.returncode != 0:
        # Only dbt's error lines: the statements it echoes could hold the identifiers being erased.
        errors = [line.strip() for line in proc.stdout.splitlines() if "Error" in line][-3:]
        raise ForgetError(f"the erasure failed on {target.describe()}, nothing was committed: {' | '.join(errors)}")
    return lines
