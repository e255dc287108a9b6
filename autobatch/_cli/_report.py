"""``autobatch report``: an HTML page and PNG plots from a plan file (no TensorFlow)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report with plots from a plan file (no TensorFlow import)",
        description=(
            "Write one self-contained HTML page (plots embedded) and the same plots as PNG "
            "files: peak memory and throughput against batch size, input wait, the audit, "
            "the chosen settings and the hardware they were measured on."
        ),
    )
    parser.add_argument("plan", metavar="PLAN.json", help="plan file written by `autobatch tune`")
    parser.add_argument("--out", default="report.html", metavar="HTML",
                        help="HTML file to write (default: report.html)")
    parser.add_argument("--png-dir", default=None, metavar="DIR",
                        help="folder for the PNG plots (default: the HTML file's folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autobatch._cli._common import console
    from autobatch._report import load_plan_dict, write_report
    from autobatch._report._format import lookup
    from autobatch._report._html import dashboard_command

    plan = load_plan_dict(args.plan)
    files = write_report(plan, args.out, png_dir=args.png_dir)
    out = console()
    # Paths are printed verbatim: no rich markup, no wrapping, so they can be copied.
    first, *more = files.pngs
    lines = [f"report: {files.html}", f"plots:  {first}", *(f"        {p}" for p in more)]
    command = dashboard_command(lookup(plan, "study.storage"))
    if command:
        lines.append(f"study:  {command}")
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
    return 0
