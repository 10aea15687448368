"""Read a run directory (docs/run-directory.md, format version 1) into tables."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from flashbench.run.rows import COLUMNS, FORMAT_VERSION, KEY, TRACE_KEYS, Row

log = logging.getLogger(__name__)

# The rows table's columns: those every row has (flashbench.run.rows.Row), nullable ones last (the
# order report tables keep); pooled rows' extra "samples" is left out.
ROW_COLUMNS = [
    *(c.name for c in COLUMNS if c.required and not c.nullable),
    *(c.name for c in COLUMNS if c.required and c.nullable),
]
# The pseudo-setting of the baseline re-sampled from another noise seed (the seed floor): it
# has rows like a setting, but is no candidate to rank or gate.
RESEEDED = "reseeded"
# Runs before the expression metric left its pose part to `apd` wrote the same number twice.
RENAMED = {"expression_error_pose": "apd"}
# temporal is a ratio whose best is 1 (metrics/temporal.py): judged by its distance from 1.
TEMPORAL, TEMPORAL_DEVIATION = "temporal", "temporal_deviation"


# The results page's name for the testbed a run sampled: a model and the parameters that make
# it another regime (the reference model's world), never weights (a fine-tune is the same testbed).
TESTBED_NAMES = {
    "reference": lambda args: f"reference {args.get('world', 'v1')}",
    "gmm": lambda args: "exact ODE",
}


def testbed_name(model: str, args: dict[str, Any]) -> str:
    """``reference v1``, ``reference v2``, ``exact ODE``, or the model's own name."""
    name = TESTBED_NAMES.get(model)
    return name(args) if name else model


class RunFormatError(ValueError):
    """A run directory file does not follow docs/run-directory.md."""


@dataclass(frozen=True)
class Run:
    """One loaded run directory: tidy rows, manifest, sampler traces and failed units.

    ``rows`` has the columns of docs/run-directory.md plus ``unit_id`` (the rows file's unit);
    ``traces`` has one record per step, window and branch, tagged with the unit's setting.
    """

    path: Path
    manifest: dict[str, Any]
    rows: pd.DataFrame
    traces: pd.DataFrame
    errors: pd.DataFrame
    videos: dict[str, dict[str, Path]] = field(default_factory=dict)
    # Units with a rows file (a unit may have no rows), and the units plan.json says the run
    # set out to finish (None for runs without plan.json).
    finished: frozenset[str] = frozenset()
    plan: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def baseline(self) -> str:
        return str(self.manifest.get("baseline", "baseline"))

    @property
    def suite(self) -> str:
        return str(self.manifest.get("suite", "?"))

    @property
    def model(self) -> dict[str, Any]:
        """The manifest's model record, ``args`` filled in (``{}``) for runs that predate recording them."""
        model = self.manifest.get("model")
        model = dict(model) if isinstance(model, dict) else {}
        args = model.get("args")
        return {**model, "args": dict(args) if isinstance(args, dict) else {}}

    @property
    def model_args(self) -> dict[str, Any]:
        """The suite's model parameters as run."""
        return self.model["args"]

    @property
    def testbed(self) -> str:
        """The testbed this run sampled (``testbed_name``): a column of the results page."""
        return testbed_name(str(self.model.get("name", "?")), self.model_args)

    @property
    def setting_order(self) -> list[str]:
        """The suite's settings in its order (a sweep's settings in sweep order), from the manifest."""
        settings = self.manifest.get("settings") or []
        return [s["name"] for s in settings if isinstance(s, dict) and "name" in s]

    @property
    def limited(self) -> str:
        """ "limited: N of M cases" for a run made with --limit that left cases out, else ""."""
        limit = self.manifest.get("limit")
        if not isinstance(limit, dict) or limit.get("cases", 0) >= limit.get("of", 0):
            return ""
        return f"limited: {limit['cases']} of {limit['of']} cases"


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> None:
    raise _NonFinite(name)


# JSON strings, or the non-standard constants Python's json reads (strings may contain "NaN").
_CONSTANTS = re.compile(r'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')


def read_json(path: Path) -> Any:
    """A run file's JSON. The runner writes strict JSON, so NaN or Infinity means a hand edit."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RunFormatError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); the file is "
            "corrupt: delete it and resume the run to rewrite it"
        ) from error
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise RunFormatError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "the file is truncated or hand-edited: delete it and resume the run to rewrite it"
        ) from error
    except _NonFinite as error:
        constant = next(m for m in _CONSTANTS.finditer(text) if not m.group().startswith('"'))
        line = text.count("\n", 0, constant.start()) + 1
        raise RunFormatError(
            f"{path}: line {line}: {constant.group()} is not a finite number (the runner writes "
            "none, so the file was edited by hand); restore it, or delete it and resume the run "
            "to rewrite it"
        ) from error


def json_files(directory: Path) -> list[Path]:
    """List *.json files; anything else there is reported, never skipped silently."""
    if not directory.is_dir():
        return []
    others = sorted(p.name for p in directory.iterdir() if p.suffix != ".json")
    if others:
        # Leftovers of an interrupted atomic write (temp files) or stray files.
        log.warning("ignoring non-JSON files in %s: %s", directory, ", ".join(others))
    return sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())


def load_manifest(run: Path) -> dict[str, Any]:
    """Read and check RUN/manifest.json."""
    path = Path(run) / "manifest.json"
    if not path.is_file():
        raise RunFormatError(
            f"run={str(run)!r} has no manifest.json; pass a directory written by `flashbench run`"
        )
    manifest = read_json(path)
    if not isinstance(manifest, dict):
        raise RunFormatError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RunFormatError(
            f"{path}: format_version={version!r} but this reader understands {FORMAT_VERSION}; "
            "use the flashbench version that wrote the run"
        )
    return manifest


def _check_row(row: Any, path: Path, index: int) -> dict[str, Any]:
    try:
        Row.from_json(row)
    except ValueError as error:
        raise RunFormatError(f"{path} rows[{index}]: {error}") from error
    return row


def _load_rows(run: Path) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    units: dict[str, dict[str, Any]] = {}
    for path in json_files(run / "rows"):
        payload = read_json(path)
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
            raise RunFormatError(f'{path} must be {{"unit": ..., "rows": [...]}}')
        unit = payload.get("unit")
        if unit != path.stem:
            raise RunFormatError(
                f"{path}: unit={unit!r} does not match the file name {path.stem!r}; "
                "rows/<unit>.json must name its own unit"
            )
        for index, row in enumerate(payload["rows"]):
            records.append({**_check_row(row, path, index), "unit_id": unit})
        if payload["rows"]:
            first = payload["rows"][0]
            units[unit] = {k: first[k] for k in ("case", "setting", "seed", "stepper", "windowing")}
    rows = pd.DataFrame.from_records(records, columns=[*ROW_COLUMNS, "unit_id"])
    rows["value"] = rows["value"].astype(float)
    rows["seed"] = rows["seed"].astype("int64")
    rows["frames"] = rows["frames"].astype("int64")
    rows["frame"] = rows["frame"].astype("Int64")
    rows["higher_is_better"] = rows["higher_is_better"].astype("boolean")
    _check_consistency(rows)
    return with_temporal_deviation(renamed(rows)), units


def renamed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of an old run under today's names (``RENAMED``): a duplicate of a row the run also
    has under the new name is dropped, any other is renamed; the log says which."""
    for old, new in RENAMED.items():
        mine = rows["metric"] == old
        if not mine.any():
            continue
        key = pd.MultiIndex.from_frame(
            rows[["case", "setting", "seed", "reference", "frame"]].astype(str)
        )
        twice = mine & key.isin(key[(rows["metric"] == new).to_numpy()])
        log.warning(
            "this run names %d rows %r, the measurement now named %r; %d of them repeat a %r row "
            "and are dropped, the rest are read as %r",
            int(mine.sum()), old, new, int(twice.sum()), new, new,
        )  # fmt: skip
        rows = rows[~twice].reset_index(drop=True)
        rows.loc[rows["metric"] == old, "metric"] = new
    return rows


def with_temporal_deviation(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` and, per ``temporal`` row, a ``temporal_deviation`` row: |ratio - 1|, lower is better.

    ``temporal`` (metrics/temporal.py) is the frame-to-frame change over the ground truth's:
    1 is as stable as the truth, below is frozen, above is flicker, so it has no better side;
    its distance from 1 has, and is what verdicts and Pareto fronts judge.
    """
    temporal = rows[rows["metric"] == TEMPORAL]
    if temporal.empty or (rows["metric"] == TEMPORAL_DEVIATION).any():
        return rows
    deviation = temporal.assign(
        metric=TEMPORAL_DEVIATION,
        value=(temporal["value"] - 1.0).abs(),
        higher_is_better=pd.array([False] * len(temporal), dtype="boolean"),
    )
    return pd.concat([rows, deviation], ignore_index=True)


def _check_consistency(rows: pd.DataFrame) -> None:
    duplicated = rows[rows.duplicated(list(KEY), keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        units = sorted(set(duplicated["unit_id"]))
        raise RunFormatError(
            f"{len(duplicated)} rows repeat the same measurement, e.g. case={first['case']!r} "
            f"setting={first['setting']!r} seed={first['seed']} metric={first['metric']!r} "
            f"reference={first['reference']!r} in units {units[:5]}; "
            "a unit was written twice: remove the stale rows file"
        )
    directions = rows.groupby("metric")["higher_is_better"].agg(
        lambda s: sorted({None if pd.isna(v) else bool(v) for v in s}, key=str)
    )
    for metric, values in directions.items():
        if len(values) > 1:
            raise RunFormatError(
                f"metric={metric!r} has inconsistent higher_is_better values {values}; "
                "every row of a metric must agree"
            )


def _load_traces(run: Path, units: dict[str, dict[str, Any]]) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for path in json_files(run / "traces"):
        payload = read_json(path)
        if not isinstance(payload, list):
            raise RunFormatError(f"{path} must hold a list of step records")
        owner = units.get(path.stem)
        if owner is None:
            log.warning(
                "trace %s has no rows/%s.json (unfinished unit); not plotted", path, path.stem
            )
            continue
        for index, step in enumerate(payload):
            if not isinstance(step, dict) or any(c not in step for c in TRACE_KEYS):
                raise RunFormatError(f"{path}[{index}] must have the keys {list(TRACE_KEYS)}")
            record = {c: step[c] for c in TRACE_KEYS}
            # A window may be an index or a span; only its identity matters for plots.
            record["window"] = json.dumps(record["window"], sort_keys=True)
            records.append({"unit_id": path.stem, **owner, **record})
    columns = ["unit_id", "case", "setting", "seed", "stepper", "windowing", *TRACE_KEYS]
    traces = pd.DataFrame.from_records(records, columns=columns)
    traces["step"] = traces["step"].astype("int64")
    traces["seconds"] = traces["seconds"].astype(float)
    return traces


def _load_errors(run: Path) -> pd.DataFrame:
    keys = ["unit", "case", "setting", "seed", "error"]
    records = []
    for path in json_files(run / "errors"):
        payload = read_json(path)
        if not isinstance(payload, dict) or any(k not in payload for k in keys):
            raise RunFormatError(f"{path} must be an object with keys {keys}")
        records.append({k: payload[k] for k in keys})
    return pd.DataFrame.from_records(records, columns=keys)


def _find_videos(run: Path) -> dict[str, dict[str, Path]]:
    videos: dict[str, dict[str, Path]] = {}
    root = run / "videos"
    if not root.is_dir():
        return videos
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(case_dir.iterdir())
        hidden = [p.name for p in names if p.name.startswith(".")]
        if hidden:
            # The runner writes videos through hidden temp files; these are leftovers.
            log.warning("ignoring temp files in %s: %s", case_dir, ", ".join(hidden))
        files = {
            p.stem: p for p in names if p.suffix in (".mp4", ".png") and not p.name.startswith(".")
        }
        if files:
            videos[case_dir.name] = files
    return videos


def _load_plan(run: Path) -> tuple[str, ...] | None:
    path = run / "plan.json"
    if not path.is_file():
        return None
    payload = read_json(path)
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(key), list) and all(isinstance(u, str) for u in payload[key])
        for key in ("units", "pooled")
    ):
        raise RunFormatError(f'{path} must be {{"units": [names], "pooled": [names]}}')
    return (*payload["units"], *payload["pooled"])


def _setting_of(unit: str) -> str:
    """The setting of a unit name (``<case>__<setting>__seed<k>`` or ``pooled__<setting>``)."""
    parts = unit.split("__")
    return parts[1] if len(parts) > 1 else unit


def incomplete_units(run: Run) -> pd.DataFrame:
    """Units the run set out to finish that failed or have no rows file: columns unit, setting, problem.

    Failed: every errors/ record of a unit without rows. Missing: planned units (plan.json)
    neither finished nor failed; without plan.json, settings of the manifest with no rows at all.
    """
    records = [
        {"unit": e.unit, "setting": e.setting, "problem": f"failed: {e.error}"}
        for e in run.errors.itertuples(index=False)
        if e.unit not in run.finished
    ]
    failed = {r["unit"] for r in records}
    if run.plan is not None:
        records += [
            {"unit": u, "setting": _setting_of(u), "problem": "no rows: never run or interrupted"}
            for u in run.plan
            if u not in run.finished and u not in failed
        ]
    else:
        measured = set(run.rows["setting"]) | {r["setting"] for r in records}
        for setting in run.manifest.get("settings") or []:
            name = setting.get("name") if isinstance(setting, dict) else None
            if name is not None and name not in measured:
                records.append(
                    {"unit": "*", "setting": name, "problem": "no rows for this setting"}
                )
    return pd.DataFrame.from_records(records, columns=["unit", "setting", "problem"])


def load_run(run: str | Path) -> Run:
    """Load RUN into a :class:`Run`; malformed files raise :class:`RunFormatError`."""
    path = Path(run)
    if not path.is_dir():
        raise RunFormatError(f"run={str(run)!r} is not a directory; pass a run directory")
    manifest = load_manifest(path)
    rows, units = _load_rows(path)
    if rows.empty:
        raise RunFormatError(
            f"run={str(run)!r} has no rows in rows/*.json; the run finished no unit "
            "(see errors/ for failures)"
        )
    traces = _load_traces(path, units)
    finished = frozenset(p.stem for p in (path / "rows").glob("*.json") if p.is_file())
    return Run(
        path,
        manifest,
        rows,
        traces,
        _load_errors(path),
        _find_videos(path),
        finished,
        _load_plan(path),
    )


def metric_label(metric: str, reference: str) -> str:
    """A column name for a metric measured against a reference (``psnr@baseline``)."""
    return f"{metric}@{reference}" if reference else metric
