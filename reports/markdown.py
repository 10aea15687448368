"""report.md: the run's manifest, comparison table, metric backends, figures and grids."""

from __future__ import annotations

import pandas as pd

from reports.differences import difference_table, lead_sections
from reports.load import Run
from reports.tables import metric_table, quality_table, speed_table, timing_warnings


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``table`` (cells as ``str``)."""
    if table.empty:
        return "_(none)_\n"

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def manifest_table(run: Run) -> pd.DataFrame:
    """Key facts of the manifest as a two-column table (long values shortened)."""
    manifest = run.manifest
    keys = ["suite", "suite_version", "suite_sha256", "suite_hash", "protocol", "baseline",
            "model", "steps", "shift", "git_hash", "git", "created", "threads", "devices",
            "seeds", "device", "versions"]  # fmt: skip
    rows = []
    for key in keys:
        if key in manifest:
            value = manifest[key]
            if isinstance(value, dict) and "name" in value:
                value = value["name"]  # the model's weights hashes are in manifest.json
            text = str(value)
            rows.append((key, text if len(text) <= 160 else text[:157] + "..."))
    return pd.DataFrame(rows, columns=["field", "value"])


def render_markdown(
    run: Run,
    summary: pd.DataFrame,
    figures: dict[str, tuple[str, str]],
    grids: list[tuple[str, str]],
    differences: pd.DataFrame | None = None,
) -> str:
    """The Markdown report; ``figures`` map name -> (title, path), ``grids`` are (title, path)."""
    parts = [
        f"# FlashBench report: {run.suite} ({run.name})\n",
        markdown_table(manifest_table(run)),
    ]
    differences = difference_table(run) if differences is None else differences
    for heading, note, table in lead_sections(run, differences):
        parts += [f"\n## {heading}\n\n{note}\n\n", markdown_table(table)]
    parts += [
        f"\n## Comparison: suite `{run.suite}`\n\n",
        "Means with bootstrap 95% CIs over cases x seeds; speedups are baseline / setting "
        f"(baseline `{run.baseline}`). ↑ higher is better, ↓ lower is better.\n\n",
        "\n### Speed\n\n",
        markdown_table(speed_table(summary, run.baseline)),
        *(f"\n> **Warning:** {line}\n" for line in timing_warnings(run, summary)),
        "\n### Quality\n\n",
        markdown_table(quality_table(summary, run.baseline)),
        "\n## Metrics and backends\n\n",
        markdown_table(metric_table(summary)),
    ]
    if not run.errors.empty:
        parts += ["\n## Failed units\n\n", markdown_table(run.errors)]
    parts.append("\n## Figures\n")
    for name, (title, path) in figures.items():
        parts.append(f"\n### {title}\n\n![{name}]({path})\n")
    if grids:
        parts.append("\n## Videos (reference | ground truth | settings)\n")
        for title, path in grids:
            preview = path.removesuffix(".mp4") + ".gif"
            parts.append(f"\n### {title}\n\n![{title}]({preview})\n\n[mp4]({path})\n")
    return "".join(parts)
