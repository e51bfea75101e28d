"""configs/accelerate/: each file read by accelerate's own config reader, and a real 2-process CPU launch of
train.py through `accelerate launch` that ends with torchrun's metrics for the same seed."""
import json
import os
import socket
import subprocess
import sys

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs", "accelerate")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# file -> (distributed_type, num_processes, use_cpu)
EXPECTED = {
    "cpu_2proc.yaml": (DistributedType.MULTI_GPU, 2, True),
    "multi_gpu_ddp.yaml": (DistributedType.MULTI_GPU, 2, False),
    "fsdp.yaml": (DistributedType.FSDP, 2, False),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 2, False),
}


def test_every_config_is_tested():
    assert sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_reads_the_config(name):
    config = load_config_from_file(os.path.join(CONFIGS, name))
    assert isinstance(config, ClusterConfig)
    assert (config.distributed_type, config.num_processes, config.use_cpu) == EXPECTED[name]
    assert (config.num_machines, config.machine_rank) == (1, 0)
    # train.py's --bf16 decides the precision under every launcher (deepspeed: its JSON's "auto")
    assert config.mixed_precision in ("no", None)
    # accelerate copies the nested keys into launch flags without checking them: a misspelt key would be dropped
    flags = {action.dest for action in launch_command_parser()._actions}
    for nested in (config.fsdp_config, config.deepspeed_config):
        assert set(nested) <= flags, set(nested) - flags


def test_fsdp_shards_by_decoder_layer_and_saves_full_weights():
    fsdp = load_config_from_file(os.path.join(CONFIGS, "fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and fsdp["fsdp_reshard_after_forward"] is True


def test_deepspeed_config_names_the_zero2_json():
    ds = load_config_from_file(os.path.join(CONFIGS, "deepspeed_zero2.yaml")).deepspeed_config
    path = os.path.join(ROOT, ds["deepspeed_config_file"])  # relative to the repo root, where runs start
    with open(path) as f:
        zero = json.load(f)
    assert zero["zero_optimization"]["stage"] == 2
    assert zero["train_micro_batch_size_per_gpu"] == "auto" and zero["optimizer"]["params"]["lr"] == "auto"


def _free_port() -> int:
    with socket.socket() as sock:  # another run on 29500 (a second test suite) must not collide
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train(launcher, out, model):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "CUDA_VISIBLE"))}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="")  # CPU processes, as the config says
    proc = subprocess.run([sys.executable, "-m", *launcher, "train.py", "--model_name_or_path", model,
                           "--dataset_name", "rotten_tomatoes", "--data_dir", FIXTURES, "--max_steps", "2",
                           "--per_device_train_batch_size", "8", "--seed", "7", "--disable_tqdm", "true",
                           "--report_to", "none", "--output_dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run record:") == 1  # rank 0 only
    with open(os.path.join(out, "run.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_accelerate_launch_on_two_cpu_processes_matches_torchrun(tiny_models, tmp_path):
    model = tiny_models("bert")
    accelerate = _train(["accelerate.commands.launch", "--config_file", os.path.join(CONFIGS, "cpu_2proc.yaml"),
                         "--main_process_port", str(_free_port())], tmp_path / "accelerate", model)
    torchrun = _train(["torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())],
                      tmp_path / "torchrun", model)
    for record in (accelerate, torchrun):
        assert record["world_size"] == 2 and record["training"]["steps"] == 2
        assert record["device"] == "cpu" and record["seed"] == 7
    assert accelerate["training"]["epochs"] == pytest.approx(2 * 8 * 2 / 80)  # 2 processes x batch 8 per step
    assert accelerate["metrics"] == torchrun["metrics"]
