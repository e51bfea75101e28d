"""The course's data module: every data set as one `DatasetDict` (text, label), few-shot and aggregated.

    from dataHelper import get_dataset, get_fs
    get_dataset("restaurant_sup", sep_token="[SEP]")  -> DatasetDict{train, test}: text, label (ClassLabel)
    get_fs("acl", "[SEP]", sample_size=32)            -> 32 class-balanced train rows, 32 random test rows

    uv run dataHelper.py describe restaurant_sup [--tokenizer minilm]
    uv run dataHelper.py export samsum|tatqa|all --out lf_data [--max_samples N]
    uv run dataHelper.py timeit [NAME ...] [--fresh]

A thin entry point: the body is ftlab/data/datasets.py (registry, readers, few-shot, aggregation, cache)
and ftlab/data/llamafactory.py (the SAMSum / TAT-QA alpaca records).
"""
import sys

from ftlab.data.datasets import (  # noqa: F401
    DATASETS,
    MRPC_PROMPT,
    RELEASES,
    clear_cache,
    describe,
    get_dataset,
    get_fs,
    load_for_run,
    main,
    sep_token_for,
)
from ftlab.data.llamafactory import (  # noqa: F401
    EXPORTS,
    SAMSUM_INSTRUCTION,
    TATQA_INSTRUCTION,
    ExportSpec,
    export_llamafactory,
    records,
    tatqa_input,
)
from ftlab.metrics.tatqa import tatqa_answer  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
