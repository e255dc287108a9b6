"""The ceiling finders' truth with every verdict repeated (issue #22): a batch fits only when
each of ``--repeats`` fresh plain-Keras ``model.fit`` processes ends under the budget.

One process's peak at a batch is not always the next one's: MobileNetV2 at 96 px read 2.83
GB at batch 128 once and 3.25-3.27 GB in four other processes, over a 3 GiB budget, while
batch 140 and 146 fitted. A single-run bisection then reports a "true maximum" that
batches below it exceed. Here the doubling and the bisection of ``_ceiling_finders`` run
on repeated verdicts, so the truth is a batch that fitted every time with every batch the
search judged below it fitting too; the earlier single runs are kept beside it.

    python benchmarks/ceiling_truth_repeated.py                  # MobileNetV2, 96 px, 3GiB
    python benchmarks/ceiling_truth_repeated.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _ceiling_finders import PlainFitProbe, true_maximum  # noqa: E402


class Repeated:
    """A batch fits when every one of ``repeats`` fresh processes fits (stops at a miss)."""

    def __init__(self, probe: PlainFitProbe, repeats: int) -> None:
        self.probe, self.repeats = probe, repeats
        self.count = 0

    def __call__(self, batch_size: int) -> tuple[bool, int | None]:
        self.count += 1
        peaks = []
        for _ in range(self.repeats):
            fits, peak = self.probe(batch_size)
            peaks.append(peak)
            if not fits:
                return False, peak
        return True, max(p or 0 for p in peaks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--budget", default="3GiB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("/tmp/ceil-work/photos"),
                        help="the photo folder the ceiling benchmark made (run.py --work)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    from autobatch import parse_memory_size

    budget = parse_memory_size(args.budget)
    single = PlainFitProbe(args.data, args.model, args.image_size, budget)
    repeated = Repeated(single, args.repeats)
    truth = true_maximum(repeated, cap=4096)  # type: ignore[arg-type]
    short = args.model.split("_")[0]
    out = args.out or HERE / "results" / f"ceiling_truth_{short}_repeated_bisection.json"
    out.write_text(json.dumps({
        "model": args.model, "image_size": args.image_size, "budget": args.budget,
        "budget_bytes": budget, "repeats": args.repeats, "true_max": truth,
        "verdicts": repeated.count, "runs": single.log,
        "truth": f"bisection over fresh plain-Keras model.fit processes, each verdict "
                 f"repeated {args.repeats} times (a batch fits only when every run fits)",
    }, indent=2) + "\n")
    print(f"{args.model} at {args.image_size} px under {args.budget}: true maximum {truth} "
          f"({repeated.count} verdicts, {len(single.log)} processes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
