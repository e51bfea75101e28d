"""Fine-tune a Hugging Face model on a dataHelper set with one method; write OUTPUT_DIR/run.json.

    uv run train.py                                   # LoRA on the embedded MiniLM, bbc_news (embedded BBC News)
    uv run train.py configs/main.yaml --seed 43       # a config file, flags override it
    uv run train.py --dataset_name restaurant_sup --method full --seed 1 --output_dir runs/x
    torchrun --nproc_per_node 2 train.py ...          # data-parallel (gloo on CPU), one run.json

Flags: model, data, method and run arguments plus every `TrainingArguments` flag (ftlab/train/arguments.py);
several defaults differ from HF's for speed and model selection. The course's named steps stay importable
from here: `from train import load_data, get_model, compute_metrics` (also tokenize_data, build_trainer, run).
A thin entry point: the body is ftlab/train/ (steps.py, arguments.py, trainer.py) and ftlab/models/build.py.
"""
import sys

from ftlab.metrics.classification import compute_metrics  # noqa: F401
from ftlab.models.build import get_model  # noqa: F401
from ftlab.train.steps import build_trainer, load_data, main, run, tokenize_data  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
