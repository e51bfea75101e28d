"""Score generated text against references: BLEU-4, ROUGE-L, ROUGE-Lsum, BERTScore, corpus BLEU; TAT-QA answers
by exact match and numeracy-aware F1.

    uv run eval.py saves/samsum/predict/generated_predictions.jsonl [--out metrics.json]
        [--bertscore_model facebook/bart-large | --no_bertscore]
    uv run eval.py saves/tatqa/predict/generated_predictions.jsonl [--task tatqa]
        [--tatqa_gold $DATA_DIR/tatqa/tatqa_dataset_test_gold.json]

The course's functions stay importable from here: `from eval import compute_bleu, compute_rouge,
compute_bertscore`. A thin entry point: the metrics are ftlab/metrics/text_generation.py and
ftlab/metrics/tatqa.py, the command ftlab/llm/scoring.py.
"""
import sys

from ftlab.llm.scoring import main
from ftlab.metrics.text_generation import (  # noqa: F401
    compute_bertscore,
    compute_bleu,
    compute_corpus_bleu,
    compute_rouge,
    compute_rouge_lsum,
)

if __name__ == "__main__":
    sys.exit(main())
