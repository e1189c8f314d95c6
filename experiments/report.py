"""REPORT.md from the claims' results folders: a summary table, then a section per claim."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .claim import Claim, Finding
from .stats import INCONCLUSIVE


def _folders(out: Path, claim: Claim) -> list[Path]:
    """The claim's results folders: its default seed set first, then other seed sets by name."""
    main = [out / claim.name] if (out / claim.name / "claim.json").exists() else []
    return main + sorted(p for p in out.glob(f"{claim.name}.seeds-*") if (p / "claim.json").exists())


def analyse_folder(claim: Claim, folder: Path) -> tuple[dict, Finding]:
    """Read one folder, draw its figure, and analyse it."""
    import bnlab

    record = json.loads((folder / "claim.json").read_text())
    path = folder / "measurements.json"
    measurements = json.loads(path.read_text()) if path.exists() else {}
    results = bnlab.load_results(folder)
    claim.figure(results, measurements, folder / "figure.png")
    return record, claim.analyse(results, measurements)


def combined(findings: list[Finding]) -> tuple[str, str]:
    """One verdict over seed sets: it stands only if every seed set gives it."""
    verdicts = {f.verdict for f in findings}
    if len(verdicts) == 1:
        return findings[0].verdict, findings[0].reason
    return INCONCLUSIVE, "the verdict differs between seed sets (" + "; ".join(f.verdict for f in findings) + "), so it hangs on the seeds."


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' would end the cell."""
    return text.replace("|", "\\|")


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def render_report(claims: list[Claim], out: Path, base: Path) -> str:
    rows, sections = [], []
    for number, claim in enumerate(claims, 1):
        folders = _folders(out, claim)
        head = f"## {number}. {claim.title}\n\n> {claim.quote}\n>\n> — {claim.source}\n"
        if not folders:
            skipped = out / claim.name / "skipped.txt"
            why = skipped.read_text().strip() if skipped.exists() else "not run yet"
            rows.append(f"| {number} | [{claim.title}](#{_anchor(number, claim)}) | {claim.source} | not run | {why} | |")
            sections.append(head + f"\n**Not run**: {why}\n")
            continue
        analysed = [analyse_folder(claim, f) for f in folders]
        findings = [finding for _, finding in analysed]
        verdict, reason = combined(findings)
        first_record, first = analysed[0]
        figure = _link(folders[0] / "figure.png", base)
        rows.append(
            f"| {number} | [{claim.title}](#{_anchor(number, claim)}) | {claim.source} | **{verdict}** | "
            f"{_cell(first.statistic)}: {first.value_text()} | [figure]({figure}) |"
        )
        text = [head]
        seeds = ", ".join(str(s) for s in first_record["seeds"])
        text.append(f"**Setup** ({first_record['scale']} scale, seeds {seeds}, `{first_record['config']}`): {claim.setup}\n")
        text.append(f"![{claim.title}]({figure})\n")
        text.append(f"**Verdict rule** (fixed before the runs): {claim.rule}\n")
        for (record, finding), folder in zip(analysed, folders):
            label = f"seeds {', '.join(str(s) for s in record['seeds'])}"
            text.append(f"**Statistic** ({label}, `{_link(folder, base)}`): {finding.statistic} = {finding.value_text()} → {finding.verdict}\n")
            text.extend(f"- {line}" for line in finding.details)
            if finding.details:
                text.append("")
        text.append(f"**Verdict: {verdict}.** {reason[:1].upper() + reason[1:]}\n")
        if claim.differs:
            text.append(f"**Where this differs from the paper**: {claim.differs}\n")
        sections.append("\n".join(text))
    header = (
        "# Claims about Batch Normalization: what reproduces at our scale\n\n"
        "Written by `bnlab reproduce` and rebuilt from the saved runs alone by `bnlab report` (byte for byte). "
        "Each verdict rule was fixed in its experiment module (`experiments/`) before its results were read. "
        "Intervals are 95% Student-t intervals over seeds, of the per-seed difference where the arms share seeds; "
        "a verdict that differs between seed sets is reported as inconclusive.\n\n"
        "| # | Claim | Source | Verdict | Statistic [95% interval] | Figure |\n|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n\n" + "\n".join(sections)


def _anchor(number: int, claim: Claim) -> str:
    """GitHub's heading anchor of the claim's section."""
    text = f"{number}. {claim.title}".lower()
    kept = "".join(c for c in text if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")
