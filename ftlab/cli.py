"""`ftlab <tool> [flags]`: every user tool behind one console script (`uv run ftlab --help` lists them;
`uv run ftlab <tool> --help` shows a tool's flags). The course's own entry points are the root scripts
train.py, eval.py and dataHelper.py.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, Optional, Sequence, Tuple

# tool -> (module with main(argv), what it does). Imported only when chosen: each tool loads its own
# libraries (torch, transformers, optuna ...), and `ftlab --help` loads none.
TOOLS: Dict[str, Tuple[str, str]] = {
    "predict": ("ftlab.runs.predict", "classify new texts with a trained run, or export it merged (--merge_to)"),
    "modelcard": ("ftlab.runs.modelcard", "(re)write a run folder's model card (README.md) from its run.json"),
    "tracking": ("ftlab.runs.tracking", "read a run's offline wandb record"),
    "record": ("ftlab.runs.record", "a run folder's state: finished, resumable, partial or new (grids resume by it)"),
    "report": ("ftlab.analysis.report", "mean ± std over seeds of every run.json under folders: tables, plots"),
    "memory": ("ftlab.analysis.memory_estimate", "estimate training memory before a run; --compare with measured peaks"),
    "baseline": ("ftlab.analysis.baseline", "frozen-encoder features + a linear SVM, the same run.json"),
    "search": ("ftlab.analysis.search", "seeded, resumable optuna search of train.py flags on validation"),
    "bench": ("ftlab.analysis.bench", "training throughput: train.py's defaults vs a naive setup, per phase"),
    "batch_bench": ("ftlab.analysis.batch_bench", "memory and speed of LoRA vs full on a causal LM, per batch size"),
    "inference": ("ftlab.llm.inference", "generate answers for SAMSum / TAT-QA samples with a causal LM"),
    "models": ("ftlab.models.checkpoints", "the embedded model names: list them, prepare (convert + link)"),
}


def usage() -> str:
    width = max(map(len, TOOLS))
    lines = ["usage: ftlab <tool> [flags]   (ftlab <tool> --help: the tool's flags)", "", "tools:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in TOOLS.items()]
    lines += ["", "course entry points: uv run train.py | uv run eval.py | uv run dataHelper.py"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    tool, rest = argv[0], argv[1:]
    if tool not in TOOLS:
        print(f"error: unknown tool {tool!r}; choose one of {', '.join(TOOLS)} (ftlab --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(TOOLS[tool][0])
    sys.argv[0] = f"ftlab {tool}"  # argparse's usage line names the sub-command
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
