"""bench.py's one run on a tiny model: the figures it reads from run.json are where run.json keeps them."""
import bench
from tests.test_train import FIXTURES


def test_run_once_reads_batch_bf16_and_throughput(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES]
    default = bench.run_once("default", 2, "full", extra, None, "restaurant_sup")
    naive = bench.run_once("naive", 2, "full", extra + bench.NAIVE, 128, "restaurant_sup")
    assert default["batch"] == 32 and naive["batch"] == 8 and naive["bf16"] is False
    assert default["samples_per_second"] > 0 and default["useful_tokens_per_second"] > 0
    # naive pads every input to 128 tokens: it executes more tokens than it uses
    assert naive["executed_tokens_per_second"] > naive["useful_tokens_per_second"]
