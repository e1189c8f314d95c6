"""REPORT.md from the claims' results folders: a table with every judged part, a section per claim
(setup, rule, statistics per seed set, the source's numbers beside ours, where we differ), the rule
changes, and the cost of reproducing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import describe
from .claim import Claim, Finding
from .stats import INCONCLUSIVE, LEVEL, all_of, seeds_to_settle


def _folders(out: Path, claim: Claim) -> list[Path]:
    """The claim's results folders: its default seed set first, then other seed sets by name."""
    main = [out / claim.name] if (out / claim.name / "claim.json").exists() else []
    return main + sorted(p for p in out.glob(f"{claim.name}.seeds-*") if (p / "claim.json").exists())


def read_measurements(folder: Path, record: dict) -> dict:
    """A claim folder's measurements as its analysis takes them: a tuned claim's lr choice among them."""
    path = folder / "measurements.json"
    measurements = json.loads(path.read_text()) if path.exists() else {}
    if "tuned" in record:
        measurements["tuned"] = record["tuned"]
    return measurements


def analyse_folder(claim: Claim, folder: Path):
    """Read one folder, draw its figure, and analyse it: (record, results, measurements, finding)."""
    import bnlab

    record = json.loads((folder / "claim.json").read_text())
    measurements = read_measurements(folder, record)
    results = bnlab.load_results(folder)
    claim.figure(results, measurements, folder / "figure.png")
    return record, results, measurements, claim.analyse(results, measurements)


CEILING = 0.97  # a comparison cannot show a difference for an arm whose test accuracy is this high at every setting


def ceiling_line(results) -> str:
    """Which norms sit at the ceiling (mean final test accuracy >= CEILING at every setting of the
    other swept keys, a diverged run at 0), as one line of the report; '' where no test accuracy."""
    runs = results.runs
    if "test_acc" not in runs or "config.model.norm" not in runs:
        return ""
    acc = runs["test_acc"].where(runs["status"] == "done", 0.0).astype(float)
    varying = [c for c in runs.columns if c.startswith("config.") and c not in ("config.seed", "config.model.norm")]
    settings = [c for c in varying if runs[c].astype(str).nunique() > 1]
    at = []
    for norm, rows in runs.assign(acc=acc).groupby("config.model.norm", sort=False):
        means = rows.groupby([rows[c].astype(str) for c in settings])["acc"].mean() if settings else rows["acc"].mean()
        if (means >= CEILING).all() if settings else means >= CEILING:
            at.append(describe.NORM_NAMES.get(norm, norm))
    if not at:
        return f"**Ceiling check**: no arm's mean final test accuracy is {CEILING:.0%} or more at every setting."
    return (
        f"**Ceiling check**: {', '.join(at)} {'sits' if len(at) == 1 else 'sit'} at {CEILING:.0%} final test accuracy or more at every "
        "setting; a comparison with an arm at the ceiling cannot show it doing better."
    )


def part_verdicts(findings: list[Finding], labels: list[str]) -> dict[str, tuple[str, str]]:
    """Each part's verdict over the seed sets: it stands only if every set gives it. label ->
    (verdict, a note naming each set's verdict where they differ)."""
    out = {}
    for i, label in enumerate(labels):
        verdicts = [f.parts[i].verdict for f in findings]
        if len(set(verdicts)) == 1:
            out[label] = (verdicts[0], "")
        else:
            out[label] = (INCONCLUSIVE, "differs between seed sets: " + "; ".join(verdicts))
    return out


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _anchor(number: int, claim: Claim) -> str:
    """GitHub's heading anchor of the claim's section."""
    text = f"{number}. {claim.title}".lower()
    kept = "".join(c for c in text if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _seeds(record: dict) -> str:
    return describe.seeds(record["seeds"])


def _setup_line(claim: Claim, record: dict, results) -> str:
    overrides = record.get("overrides") or []
    extra = f", overrides `{' '.join(overrides)}`" if overrides else ""
    return f"**Setup** ({record['scale']} scale, seeds {_seeds(record)}, `{record['config']}`{extra}): {claim.setup(results, record)}\n"


def _rule_line(claim: Claim) -> str:
    r = claim.rule
    return (
        f"**Verdict rule** (version {r.version}, fixed and committed on {r.fixed}, before this version's confirmation runs; "
        f"looked at before it was fixed: {r.explored_on}; a claim of several parts is supported if every part is, not supported if any "
        f"part is not): {r.text}\n"
    )


def _part_table(finding: Finding) -> list[str]:
    rows = ["| part | says | statistic | value | verdict |", "|---|---|---|---|---|"]
    notes = []
    for p in finding.parts:
        rows.append(f"| {p.label or '-'} | {_cell(p.says)} | {_cell(p.statistic)} | {_cell(p.value_text())} | {p.verdict} |")
        if p.verdict == INCONCLUSIVE and p.threshold is not None and not isinstance(p.value, str):
            n = seeds_to_settle(p.value, p.threshold)
            what = f"about {n} seeds would settle it" if n else "more seeds would not settle it soon"
            notes.append(f"- part {p.label or '(the claim)'}: {what} if its estimate and spread stayed as they are (threshold {p.threshold:g})")
    return rows + ([""] + notes if notes else [])


def _paper_table(claim: Claim, findings: list[tuple[dict, Finding]]) -> list[str]:
    if not claim.paper and not any(f.ours for _, f in findings):
        return []
    rows = ["**The source's numbers beside ours**\n", "| | quantity | model | data | scale | value |", "|---|---|---|---|---|---|"]
    for n in claim.paper:
        rows.append(f"| {_cell(n.where)} | {_cell(n.quantity)} | {_cell(n.model)} | {_cell(n.data)} | {_cell(n.scale)} | {_cell(n.value)} |")
    for record, f in findings:
        for o in f.ours:
            rows.append(
                f"| ours, seeds {_seeds(record)} | {_cell(o.quantity)} | {_cell(o.model)} | {_cell(o.data)} | {_cell(o.scale)} | {_cell(o.value)} |"
            )
    return rows + [""]


def _cost(claim: Claim, folder: Path, record: dict, results, measurements: dict) -> dict:
    import json as _json

    run_seconds = compile_seconds = 0.0
    steps = runs = 0
    tuning = [folder.parent / f"{claim.name}.tuning"] if record.get("tuned") and folder.name == claim.name else []  # the tuning runs count once
    for status_path in sorted(p for f in [folder, *tuning] for p in (f / "runs").glob("*/status.json")):
        s = _json.loads(status_path.read_text())
        run_seconds += float(s.get("wall_time") or 0.0)
        compile_seconds += float(s.get("compile_time") or 0.0)
        steps += int(s.get("step") or 0)
        runs += 1
    return {
        "runs": runs,
        "steps": steps,
        "run_seconds": run_seconds,
        "compile_seconds": compile_seconds,
        "measure_seconds": float(measurements.get("seconds") or 0.0),
        "wall_seconds": record.get("wall_seconds"),
    }


def render_report(claims: list[Claim], out: Path, base: Path) -> str:
    rows, sections, changes, costs = [], [], [], []
    for claim in claims:
        number = claim.number
        folders = _folders(out, claim)
        head = f"## {number}. {claim.title}\n\n> {claim.quote}\n>\n> — {claim.source}\n"
        anchor = f"[{claim.title}](#{_anchor(number, claim)})"
        for change in claim.rule.history:
            changes.append(
                f"### {number}. {claim.title}: version {change.version} replaced by version {claim.rule.version} on {change.changed}\n\n"
                f"- **Version {change.version}** (fixed {change.fixed}): {change.text}\n"
                f"- **Its verdict**: {change.verdict}\n"
                f"- **Why it changed**: {change.reason}\n"
            )
        if not folders:
            skipped = out / claim.name / "skipped.txt"
            why = skipped.read_text().strip() if skipped.exists() else "not run yet"
            rows.append(f"| {number} | {anchor} | {claim.source} | not run | {_cell(why)} | |")
            sections.append(head + f"\n**Not run**: {why}\n")
            continue
        analysed = [(f, *analyse_folder(claim, f)) for f in folders]
        findings = [a[4] for a in analysed]
        labels = [p.label for p in findings[0].parts]
        verdicts = part_verdicts(findings, labels)
        verdict = all_of(*(v for v, _ in verdicts.values()))
        first_folder, first_record, first_results, _, first = analysed[0]
        figure = _link(first_folder / "figure.png", base)
        if len(first.parts) == 1:
            p = first.parts[0]
            note = f" ({verdicts[p.label][1]})" if verdicts[p.label][1] else ""
            rows.append(
                f"| {number} | {anchor} | {claim.source} | **{verdict}**{note} | {_cell(p.statistic)}: {_cell(p.value_text())} | [figure]({figure}) |"
            )
        else:
            span = f"{number}{labels[0]}-{number}{labels[-1]}"
            rows.append(f"| {number} | {anchor} | {claim.source} | **{verdict}** (all of {span}) | | [figure]({figure}) |")
            for p in first.parts:
                v, note = verdicts[p.label]
                rows.append(
                    f"| {number}{p.label} | {_cell(p.says)} | | {v}{f' ({note})' if note else ''} | {_cell(p.statistic)}: {_cell(p.value_text())} | |"
                )
        text = [head, _setup_line(claim, first_record, first_results), f"![{claim.title}]({figure})\n", _rule_line(claim)]
        for folder, record, results, measurements, finding in analysed:
            text.append(f"**Seeds {_seeds(record)}** (`{_link(folder, base)}`): {finding.verdict}\n")
            text.extend(_part_table(finding))
            text.append("")
            text.extend(f"- {line}" for line in finding.details)
            if finding.details:
                text.append("")
            if claim.ceiling and ceiling_line(results):
                text.append(ceiling_line(results) + "\n")
            costs.append((number, claim, record, _cost(claim, folder, record, results, measurements)))
        differing = [f"part {label or '(the claim)'} {note}" for label, (_, note) in verdicts.items() if note]
        tail = f" The verdict of {'; '.join(differing)}, so it hangs on the seeds." if differing else ""
        text.append(f"**Verdict: {verdict}.** {first.reason[:1].upper() + first.reason[1:]}{tail}\n")
        text.extend(_paper_table(claim, [(a[1], a[4]) for a in analysed]))
        if claim.differs:
            text.append(f"**Where this differs from the paper**: {claim.differs.format(**first.facts)}\n")
        sections.append("\n".join(text))
    level = f"{LEVEL:.0%}"
    header = (
        "# Claims about Batch Normalization: what reproduces at our scale\n\n"
        "Written by `bnlab reproduce` and rebuilt from the saved runs alone by `bnlab report` (byte for byte). "
        "Each verdict rule was fixed and committed in its experiment module (`experiments/`) before the runs that confirm it, and each "
        "section says what had been looked at before (the seeds of earlier versions among them); "
        "a rule changed later keeps its old text and verdict under [Rule changes](#rule-changes). "
        f"Intervals are {level} intervals: Student-t over seeds, of the per-seed difference where the arms share seeds, or exact "
        "(order-statistic) intervals of the median for grid outcomes over seeds and for step-time ratios over interleaved timing rounds. "
        "'Better' means the whole interval lies above a stated minimum effect; 'no difference' means both ends lie inside a stated margin, "
        "and 'not worse' (non-inferiority) that the interval lies above minus the margin. A claim of several parts shows each part and is "
        "supported only if every part is (no correction needed), but not supported as soon as one part is: with k parts the chance of a "
        "false 'not supported' grows up to k times a single part's. A verdict that differs between seed sets is reported as inconclusive.\n\n"
        f"| # | Claim | Source | Verdict | Statistic that decides it [{level} interval] | Figure |\n|---|---|---|---|---|---|\n"
    )
    body = header + "\n".join(rows) + "\n\n" + "\n".join(sections)
    body += "\n## Rule changes\n\n" + ("\n".join(changes) if changes else "None.\n")
    return body + "\n" + _cost_table(costs)


def _cost_table(costs) -> str:
    lines = [
        "## Appendix: the cost of reproducing\n",
        "From each claim's saved runs: runs, training steps, the seconds its runs took (summed over the worker processes that ran them "
        "side by side, compiling excluded) and compiling, its extra measurement, and the wall time of the `bnlab reproduce` call that "
        "ran it (sweep, measurement and dataset preparation; the report's analysis and figures excluded). A claim that tunes each arm's "
        "lr counts its tuning runs in the row of its default seeds.\n",
        "| # | claim | seeds | runs | training steps | run seconds | compile seconds | measurement seconds | wall seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = {"runs": 0, "steps": 0, "run_seconds": 0.0, "compile_seconds": 0.0, "measure_seconds": 0.0, "wall_seconds": 0.0}
    for number, claim, record, c in costs:
        wall = "" if c["wall_seconds"] is None else f"{c['wall_seconds']:,.0f}"
        lines.append(
            f"| {number} | {claim.name} | {_seeds(record)} | {c['runs']:,} | {c['steps']:,} | {c['run_seconds']:,.0f} | "
            f"{c['compile_seconds']:,.0f} | {c['measure_seconds']:,.0f} | {wall} |"
        )
        for k in total:
            total[k] += c[k] or 0
    lines.append(
        f"| | all | | {total['runs']:,} | {total['steps']:,} | {total['run_seconds']:,.0f} | {total['compile_seconds']:,.0f} | "
        f"{total['measure_seconds']:,.0f} | {total['wall_seconds']:,.0f} |"
    )
    return "\n".join(lines) + "\n"


README_START = "<!-- verdicts: generated by `bnlab report --readme README.md` from results/REPORT.md; do not edit by hand -->"
README_END = "<!-- /verdicts -->"


def verdict_table(report_text: str, report: Path, readme: Path) -> str:
    """The report's verdict table, its links made relative to the README."""
    import re

    lines = report_text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| # | Claim |"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    base = Path(os.path.relpath(report.parent.resolve(), readme.parent.resolve())).as_posix()
    prefix = "" if base == "." else base + "/"

    def rebase(target: str) -> str:
        return f"{prefix}{report.name}{target}" if target.startswith("#") else f"{prefix}{target}"

    return "\n".join(re.sub(r"\]\(([^)]*)\)", lambda m: f"]({rebase(m.group(1))})", line) for line in lines[start:end])


def update_readme(readme_text: str, report_text: str, report: Path, readme: Path) -> str:
    """`readme_text` with the block between README_START and README_END replaced by the verdict table."""
    if README_START not in readme_text or README_END not in readme_text:
        raise ValueError(f"{readme}: no verdict table block ({README_START} ... {README_END}) to replace")
    head, rest = readme_text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_START + "\n" + verdict_table(report_text, report, readme) + "\n" + README_END + tail
