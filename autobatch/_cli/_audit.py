"""``autobatch audit``: which image files training will use, and why not the others."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from autobatch import DataError
from autobatch._cli._common import add_max_pixels, console, err_console, print_json, shown

EXAMPLES_PER_REASON = 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="account for every file in an image folder (no TensorFlow unless --deep)",
        description=(
            "Identify every file in DATA_DIR by content, say which ones training will use, "
            "and give each skipped file a reason. Exit code 0: every file is usable; "
            "1: something is skipped; 2: usage error (missing folder, no images)."
        ),
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder of class sub-folders")
    parser.add_argument("--deep", action="store_true",
                        help="also decode every usable file with TensorFlow, as training will")
    parser.add_argument("--json", action="store_true", help="print JSON (keys in the README)")
    parser.add_argument("--workers", type=int, default=None,
                        help="threads for header reads (default 4 x CPUs, at most 32)")
    add_max_pixels(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import autobatch

    report = _run_audit(args, autobatch.audit)
    if report.files_on_disk == 0:
        raise DataError(f"{shown(report.data_dir, markup=False)} holds no files; pass a folder "
                        "of class sub-folders of images")
    if args.json:
        print_json(report.to_dict())
    else:
        _print_human(report)
    if report.usable_images == 0:
        raise DataError(f"no usable images in {shown(report.data_dir, markup=False)}: all "
                        f"{report.files_on_disk} files are skipped (reasons above)")
    return 1 if report.skipped else 0


def _run_audit(args: argparse.Namespace, audit: Any) -> Any:
    if args.json or not err_console().is_terminal:
        return audit(args.data_dir, deep=args.deep, workers=args.workers,
                     max_pixels=args.max_pixels)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    labels = {"scan": "reading headers", "decode": "decoding with TensorFlow"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err_console(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(done: int, total: int, phase: str) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        return audit(args.data_dir, deep=args.deep, workers=args.workers, progress=progress,
                     max_pixels=args.max_pixels)


def _print_human(report: Any) -> None:
    from rich.table import Table

    out = console()
    table = Table(title=f"autobatch audit {shown(report.data_dir)}", show_header=False,
                  title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("files on disk", str(report.files_on_disk))
    table.add_row("usable images", str(report.usable_images))
    table.add_row("skipped", str(len(report.skipped)))
    table.add_row("Keras would index", f"{report.keras_loadable} (image_dataset_from_directory)")
    if report.classes:
        classes = ", ".join(f"{shown(k)} {v}" for k, v in report.classes.items())
        table.add_row("classes", f"{len(report.classes)}: {classes}")
    else:
        table.add_row("classes", "none (unlabeled folder)")
    ratio = report.class_imbalance_ratio
    table.add_row("class imbalance", "n/a" if ratio is None else f"{ratio:g} (largest/smallest)")
    table.add_row("formats", ", ".join(f"{k} {v}" for k, v in report.formats.items()) or "-")
    table.add_row("channels", ", ".join(f"{k}: {v}" for k, v in report.channels.items()) or "-")
    sizes = report.image_sizes
    if sizes.get("width"):
        w, h = sizes["width"], sizes["height"]
        table.add_row("width px", f"min {w['min']}, median {w['median']:g}, max {w['max']}")
        table.add_row("height px", f"min {h['min']}, median {h['median']:g}, max {h['max']}")
    table.add_row("decoded", "yes (--deep)" if report.deep else "headers only (use --deep)")
    out.print(table)

    by_reason: dict[str, list[dict[str, str]]] = defaultdict(list)
    for item in report.skipped:
        by_reason[item["reason"]].append(item)
    if by_reason:
        out.print("\n[bold]Skipped[/bold]")
        for reason in report.skipped_by_reason:
            items = by_reason[reason]
            out.print(f"  [bold]{reason}[/bold]: {len(items)}")
            for item in items[:EXAMPLES_PER_REASON]:
                out.print(f"    {shown(item['path'])}  [dim]{shown(item['detail'])}[/dim]")
            if len(items) > EXAMPLES_PER_REASON:
                out.print(f"    ... and {len(items) - EXAMPLES_PER_REASON} more (--json lists "
                          "all)")
    by_kind: dict[str, list[dict[str, str]]] = defaultdict(list)
    for warning in report.warnings:
        by_kind[warning["kind"]].append(warning)
    if by_kind:
        out.print("\n[bold]Warnings[/bold]")
        for kind, items in by_kind.items():
            out.print(f"  [bold yellow]{kind}[/bold yellow]: {len(items)}")
            for item in items[:EXAMPLES_PER_REASON]:
                out.print(f"    {shown(item['path'])}  {shown(item['message'])}")
            if len(items) > EXAMPLES_PER_REASON:
                out.print(f"    ... and {len(items) - EXAMPLES_PER_REASON} more")
    out.print()
    out.print(f"[bold]{shown(report.summary_sentence())}[/bold]")
