"""bench/results/reliability.md from the figures of a full run (``make test-reliability``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

#: Figures that must be zero; the suite fails where each is measured, and the report shows them.
ZERO_FIGURES = (
    ("wrong_accepts", "ACCEPTs for a request whose checks did not all complete (or that should not pass)"),
    ("lost_acknowledged_enrolments", "acknowledged enrolments not searchable after the kills"),
    ("half_present_enrolments", "refused or unacknowledged enrolments left half-present"),
    ("erased_subjects_still_found", "removed subjects still returned by a read right after RemoveSubject"),
    ("lost_audit_records", "answered decisions whose decision id is missing from the audit log"),
    ("crashes", "inputs answered with an undefined status or an exception (INTERNAL, UNKNOWN, a crash)"),
    ("hangs", "inputs or calls that did not answer within their bound"),
    (
        "unexpected_errors",
        "load requests with a status other than back-pressure or their one-at-a-time status",
    ),
    ("mismatched_decisions", "decisions under load that differ from the same request sent alone"),
    ("log_findings", "image bytes, names, MRZ text or keys in a log line, metric or audit record"),
    ("wedged_processes", "processes not SERVING (or not restarted) after the faults"),
)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_report(figures, path: Path) -> None:
    data = figures.to_dict()
    counts = data["counts"]
    lines = [
        "# Reliability and security: the last full run",
        "",
        "Written by `make test-reliability` (tests/reliability/, `FACEGATE_RELIABILITY=full`) at the end",
        "of its run; the suite fails when a zero-figure is not zero. `make test` runs the same tests on a",
        "small budget. What each part does: [tests/reliability/conftest.py](../../tests/reliability/conftest.py).",
        "",
        f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit `{_git('rev-parse', '--short', 'HEAD')}`,"
        f" {os.cpu_count()} CPU cores, {platform.python_version()}, {data['notes'].get('duration_s', '?')} s",
        "",
        "## Zero-figures",
        "",
        "| figure | value | meaning |",
        "|---|---|---|",
    ]
    for name, meaning in ZERO_FIGURES:
        lines.append(f"| {name.replace('_', ' ')} | **{counts.get(name, 0)}** | {meaning} |")
    lines += ["", "## Volumes", "", "| figure | value |", "|---|---|"]
    for name, value in counts.items():
        if name not in dict(ZERO_FIGURES):
            lines.append(f"| {name} | {value} |")
    lines += ["", "## Recovery after kill -9", ""]
    if data["recovery_s"]:
        lines += ["| process killed | back SERVING and deciding after (s) |", "|---|---|"]
        for name, seconds in data["recovery_s"].items():
            lines.append(f"| {name} | {seconds:.1f} |")
    else:
        lines.append("(none measured)")
    lines += ["", "## Answers by phase and status", "", "| phase / status | count |", "|---|---|"]
    for name, value in data["statuses"].items():
        lines.append(f"| {name} | {value} |")
    lines += ["", "## Not covered", ""]
    if "milvus server (kiosk load)" not in data["recovery_s"]:
        lines.append("- The Milvus server was not killed under the gateway's kiosk load in this run.")
    if "milvus server (watchlist direct)" not in data["recovery_s"]:
        lines.append("- The Milvus server was not killed during enrolment in this run.")
    for what, why in data["notes"].get("skipped", {}).items():
        lines.append(f"- Skipped in this run: {what} ({why}).")
    if lines[-1] == "":
        lines.append("- Nothing of the issue's list was left out in this run.")
    notes = {k: v for k, v in data["notes"].items() if k != "duration_s"}
    if notes:
        lines += ["", "## Notes", "", "```json", json.dumps(notes, indent=2, sort_keys=True), "```"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
