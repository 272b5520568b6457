"""The installed entry points, started the way cron, systemd units and IDE run buttons start them: by their path in
.venv/bin, with PATH holding only the system directories. Then the dbt loop an analytics engineer types at the
repository root, and what the Dagster UI shows of the run (GraphQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.synthetic import WorldConfig, generate_world
from lab.world_files import write_world
from tests.conftest import graphql, serving
from warehouse.target import PROJECT_ROOT

BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/bin:/bin"
WORLD = WorldConfig(persons=250, seed=5, days=6)


@dataclass(frozen=True)
class PlainShell:
    env: dict[str, str]
    world: Path
    outputs: dict[str, subprocess.CompletedProcess[str]]


def _plain_env(folder: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k.startswith(("PG", "LANG", "LC_", "HOME", "TMP"))}
    return {
        **keep,
        "PATH": SYSTEM_PATH,
        "ATTRIBUTION_TARGET": "duckdb",
        "ATTRIBUTION_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }


def _attribution(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "attribution"), *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def plain_shell(tmp_path_factory: pytest.TempPathFactory) -> PlainShell:
    folder = tmp_path_factory.mktemp("plain_shell")
    world = folder / "world"
    write_world(generate_world(WORLD), world)
    env = _plain_env(folder)
    outputs = {"load": _attribution(env, "load", str(world))}
    outputs["run"] = _attribution(env, "run")
    outputs["report"] = _attribution(env, "report")
    return PlainShell(env, world, outputs)


@pytest.mark.e2e
def test_load_run_report_work_without_the_environment_on_path(plain_shell: PlainShell) -> None:
    for name, proc in plain_shell.outputs.items():
        assert proc.returncode == 0, f"attribution {name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "raw.clicks +" in plain_shell.outputs["load"].stdout
    assert "Revenue by attribution model" in plain_shell.outputs["report"].stdout


@pytest.mark.e2e
def test_run_prints_one_line_per_step_and_logs_the_rest(plain_shell: PlainShell) -> None:
    lines = plain_shell.outputs["run"].stdout.splitlines()
    # The first run of a new warehouse says once that it created the warehouse's own salt, then the run begins.
    assert lines[0].startswith("created this warehouse's own PII salt"), lines
    assert lines[1].startswith("running job attribution_all") and "full log: " in lines[1]
    log = Path(lines[1].split("full log: ")[1].rstrip(")"))
    steps = [line.split()[1] for line in lines if line.startswith("  ok ")]
    assert {"dbt_staging_intermediate", "attribution", "dbt_marts"} <= set(steps), lines
    assert any(line.startswith("run ") and "succeeded" in line for line in lines), lines
    assert len(lines) < 40, lines
    text = log.read_text()
    assert "Running dbt command" in text and "OK created sql" in text, "dbt's output belongs in the log"
    assert "Running dbt command" not in plain_shell.outputs["run"].stdout


@pytest.mark.e2e
def test_dbt_builds_a_staging_model_and_its_children_from_the_repository_root(
    plain_shell: PlainShell, tmp_path: Path
) -> None:
    """README "Editing models": after `attribution run`, plain dbt at the root, no profiles flag."""
    env = {**plain_shell.env, "DBT_TARGET_PATH": str(tmp_path / "target")}
    proc = subprocess.run(
        [str(BIN / "dbt"), "build", "-s", "stg_raw__links+"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for model in ("stg_raw__links", "int_clicks", "rpt_link_daily"):
        assert f"model marts.{model}" in proc.stdout or f".{model} " in proc.stdout, proc.stdout[-3000:]


@pytest.fixture
def webserver(plain_shell: PlainShell, tmp_path: Path) -> Iterator[int]:
    """``dagster-webserver -f orchestration/definitions.py`` from a plain shell, on the run's instance."""

    def argv(port: int) -> list[str]:
        return [
            str(BIN / "dagster-webserver"),
            "-f",
            "orchestration/definitions.py",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]

    with serving(argv, plain_shell.env, tmp_path / "webserver.log") as port:
        yield port


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
METADATA_FIELDS = """metadataEntries { label __typename
  ... on MarkdownMetadataEntry { mdStr } ... on TableSchemaMetadataEntry { schema { columns { name } } } }"""
ASSET_METADATA = (
    "{ assetNodes { assetKey { path } computeKind "
    + METADATA_FIELDS
    + " assetMaterializations(limit: 1) { "
    + METADATA_FIELDS
    + " } } }"
)


@pytest.mark.e2e
def test_webserver_from_a_plain_shell_shows_the_graph_with_native_metadata(webserver: int) -> None:
    entries = graphql(webserver, LOCATIONS)["workspaceOrError"]["locationEntries"]
    assert [e["locationOrLoadError"]["__typename"] for e in entries] == ["RepositoryLocation"], entries
    nodes = {tuple(n["assetKey"]["path"]): n for n in graphql(webserver, ASSET_METADATA)["assetNodes"]}
    layers = {("raw", "clicks"), ("staging", "stg_raw__clicks"), ("intermediate", "attribution_credits")}
    assert layers | {("marts", "rpt_link_daily")} <= set(nodes), sorted(nodes)

    def latest(key: tuple[str, ...]) -> dict[str, str]:
        materializations = nodes[key]["assetMaterializations"]
        assert materializations, f"{key} has no materialization"
        return {e["label"]: e["__typename"] for e in materializations[0]["metadataEntries"]}

    # dbt assets: the column schema of the model's yml, and a row count on every materialized table (a view's
    # count would run its query: left out, as dagster-dbt does).
    clicks = nodes[("staging", "stg_raw__clicks")]
    schemas = [e for e in clicks["metadataEntries"] if e["__typename"] == "TableSchemaMetadataEntry"]
    assert schemas and {"click_id", "clicked_at"} <= {c["name"] for c in schemas[0]["schema"]["columns"]}
    assert latest(("staging", "stg_raw__clicks"))["dagster/row_count"] == "IntMetadataEntry"
    assert "dagster/row_count" not in latest(("intermediate", "int_identifiers"))

    # Python assets: tables as tables, figures as numbers the UI can plot across materializations.
    python_assets = [("intermediate", "match_model"), ("intermediate", "channel_weights")]
    kinds = [latest(key) for key in python_assets]
    assert any("TableMetadataEntry" in k.values() for k in kinds), kinds
    assert all({"FloatMetadataEntry", "IntMetadataEntry"} & set(k.values()) for k in kinds), kinds
    for key, node in nodes.items():
        for materialization in node["assetMaterializations"]:
            for entry in materialization["metadataEntries"]:
                md = entry.get("mdStr") or ""
                assert "\n|" not in md and not md.startswith("|"), f"{key} {entry['label']} is a markdown table"
