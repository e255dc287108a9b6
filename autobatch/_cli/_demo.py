"""``autobatch demo``: the whole job on a built-in default, nothing to download.

Makes an image folder from photographs that ship with scikit-image (plus a few of the
files that make Keras users lose images silently), then runs audit, tune, fit and report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autobatch._cli._common import console


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run audit, tune, fit and report on a built-in photo folder",
        description=(
            "Build a small image folder from scikit-image's sample photographs (with a few "
            "broken files), then audit it, tune a small CNN for this machine, train one epoch "
            "with the coverage check, and write the report."
        ),
    )
    parser.add_argument("--dir", default="autobatch-demo",
                        help="work folder (default ./autobatch-demo)")
    parser.add_argument("--model", default="small_cnn", help="model SPEC (default small_cnn)")
    parser.add_argument("--image-size", type=int, default=64, help="square input size in pixels")
    parser.add_argument("--images-per-class", type=int, default=80)
    parser.add_argument("--time-budget", type=float, default=60.0, help="tuning seconds")
    parser.add_argument("--epochs", type=int, default=1)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import autobatch
    from autobatch._demo import make_demo_folder
    from autobatch._framework import require_tensorflow

    require_tensorflow("the demo")  # before a photo folder is made for nothing
    out = console()
    work = Path(args.dir)
    data_dir = work / "images"
    if not data_dir.exists():
        out.print(f"[bold]1/5[/] making a photo folder in {data_dir} ...")
        make_demo_folder(data_dir, images_per_class=args.images_per_class)
    else:
        out.print(f"[bold]1/5[/] reusing the photo folder in {data_dir}")

    report = autobatch.audit(data_dir)
    out.print(f"[bold]2/5[/] audit: {report.summary_sentence()}")

    out.print(f"[bold]3/5[/] tuning {args.model} at {args.image_size} px "
              f"(about {args.time_budget:.0f} s) ...")
    plan_path = work / "plan.json"
    plan = autobatch.tune(args.model, data_dir, image_size=args.image_size,
                          time_budget=args.time_budget, output=plan_path, verbose="auto")
    rate = plan.measured["examples_per_s"]
    out.print(f"      batch size {plan.batch_size}, {rate:.1f} examples/s; "
              f"plan written to {plan_path}")

    out.print(f"[bold]4/5[/] training {args.epochs} epoch(s) with the plan ...")
    history = autobatch.fit(args.model, data_dir, epochs=args.epochs, plan=plan,
                            image_size=args.image_size)
    seen = history.history.get("examples_seen") or []
    if seen:
        out.print(f"      examples trained on per epoch: {', '.join(str(int(s)) for s in seen)} "
                  f"(usable: {report.usable_images})")

    from autobatch._report import write_report

    files = write_report(plan, work / "report.html", png_dir=work)
    out.print(f"[bold]5/5[/] report: {getattr(files, 'html', work / 'report.html')}")
    return 0
