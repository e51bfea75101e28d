"""ftlab/runs/record.py: one builder and one reader of run.json, schema 1 files read in the schema-2 shape."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ftlab import hardware
from ftlab.analysis import memory_estimate as memory
from ftlab.analysis import report
from ftlab.runs import record

SCHEMA1 = Path(__file__).parent / "fixtures" / "runs" / "schema1_lora"  # written by train.py before schema 2


def make_record(**overrides):
    kw = dict(config={"model_name_or_path": "minilm", "per_device_train_batch_size": 16, "bf16": True,
                      "gradient_checkpointing": False, "lora_r": 8},
              seed=1, method="lora", model="minilm", model_path="minilm", dataset="bbc_news",
              settings={"lora_r": 8}, metrics={"test": {"accuracy": 0.5}}, params={"trainable": 25, "total": 100},
              time={"train_seconds": 1.0}, memory={"peak_bytes": 10, "how": "cpu_peak_rss_minus_baseline"},
              data={"train_samples": 4, "num_labels": 2, "max_length": 64, "max_tokens": 40},
              training={"steps": 3, "epochs": 1.0}, versions={"python": "3"})
    kw.update(overrides)
    return record.build_record(**kw)


def test_build_record_is_schema_2_with_each_fact_once():
    rec = make_record()
    assert rec["schema"] == record.SCHEMA == 2
    assert rec["params"] == {"trainable": 25, "total": 100, "trainable_pct": 25.0}
    assert rec["training"] == {"steps": 3, "epochs": 1.0}  # no copies of config values
    assert rec["config"]["per_device_train_batch_size"] == 16 and (rec["device"] == "cpu" or "cuda" in rec["device"])
    assert set(rec) >= {"config", "seed", "method", "model", "dataset", "versions", "device", "metrics", "params",
                        "time", "memory", "data", "training", "finished_at"}


def test_write_then_read_round_trip(tmp_path):
    rec = make_record()
    path = record.write_record(str(tmp_path), rec)
    assert path == str(tmp_path / "run.json")
    assert record.read_record(str(tmp_path)) == rec
    assert record.read_record(path) == rec


def test_schema1_file_is_read_in_the_schema2_shape():
    raw = json.loads((SCHEMA1 / "run.json").read_text())
    assert raw["schema"] == 1 and raw["training"]["per_device_train_batch_size"] == 32  # the old duplicate
    rec = record.read_record(str(SCHEMA1))
    assert rec["schema"] == 2 and rec["upgraded_from"] == 1
    assert rec["training"] == {"steps": 108, "epochs": 2.0}
    assert (rec["config"]["per_device_train_batch_size"], rec["config"]["bf16"],
            rec["config"]["gradient_checkpointing"]) == (32, True, False)
    assert rec["metrics"]["test"]["accuracy"] == raw["metrics"]["test"]["accuracy"]


def test_old_files_load_in_report_and_memory_compare(tmp_path):
    for i in (1, 2):  # two seeds of the old run
        shutil.copytree(SCHEMA1, tmp_path / f"seed{i}")
    rep = report.build_report([str(tmp_path)], str(tmp_path / "out"), plots=False)
    assert [(g.method, g.dataset, len(g.runs)) for g in rep.groups] == [("lora", "bbc_news", 2)]
    assert (tmp_path / "out" / "table.md").read_text().count("0.7617") >= 1
    row = memory.compare_run(str(tmp_path / "seed1"))
    assert (row["method"], row["batch_size"], row["seq_len"]) == ("lora", 32, 128)
    # the same run written as schema 2 gives the same estimate
    rec = record.read_record(str(SCHEMA1))
    del rec["upgraded_from"]
    record.write_record(str(tmp_path / "new"), rec)
    assert memory.compare_run(str(tmp_path / "new"))["estimated"] == row["estimated"]


@pytest.mark.parametrize("content, message", [
    ("{", "invalid JSON"), ("[1]", r"not a JSON object \(got list\)")])
def test_read_errors_are_one_line(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        record.read_record(str(tmp_path))
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="no run.json in"):
        record.read_record(str(tmp_path / "nothing"))


def test_peak_memory_is_high_water_minus_baseline(monkeypatch):
    # Readings in bytes as /proc/self/status gives them (kB * 1024): baseline RSS 500 MiB, then
    # VmHWM 700 MiB with RSS back at 600 MiB -> peak 200 MiB; a lagging VmHWM below the RSS -> RSS wins.
    readings = {"VmRSS": 500 * 2**20}
    monkeypatch.setattr(record.PeakMemory, "_status_bytes", staticmethod(lambda key: readings[key]))
    mem = record.PeakMemory()
    if mem.cuda:
        pytest.skip("CUDA measures with max_memory_allocated")
    readings.update(VmHWM=700 * 2**20, VmRSS=600 * 2**20)
    assert mem.peak() == 200 * 2**20
    readings.update(VmHWM=510 * 2**20, VmRSS=650 * 2**20)
    assert mem.peak() == 150 * 2**20
    readings.update(VmHWM=400 * 2**20, VmRSS=400 * 2**20)
    assert mem.peak() == 0  # never negative
    mem.mark_training_done()
    readings.update(VmHWM=900 * 2**20)
    out = mem.result()
    assert (out["peak_bytes"], out["peak_bytes_with_eval"]) == (0, 400 * 2**20)
    assert out["baseline_bytes"] == 500 * 2**20 and out["how"].startswith("cpu_")


def test_peak_memory_sees_a_real_allocation():
    mem = record.PeakMemory()
    if mem.cuda:
        pytest.skip("CUDA measures with max_memory_allocated")
    before = mem._status_bytes("VmRSS")
    block = np.ones(256 * 2**20, dtype=np.uint8)  # 256 MiB, every page touched
    grown = mem._status_bytes("VmRSS") - before
    peak = mem.peak()
    assert block.sum() == 256 * 2**20
    if grown < 200 * 2**20:  # the kernel's own counter did not show it (approximate per-CPU RSS counters)
        pytest.skip(f"this kernel's VmRSS grew by {grown} bytes for a 256 MiB allocation")
    assert peak >= grown

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 avx512_vnni
"""


def test_machine_names_the_cpu_and_its_best_matrix_instruction_set(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.cpu_flags(CPUINFO) >= {"avx2", "avx512_bf16"} and "avx512bf16" not in hardware.cpu_flags(CPUINFO)
    assert hardware.machine(CPUINFO) == {"cpu": "AMD EPYC 9B14", "isa": "avx512_bf16", "threads": 2, "gpu": None}
    avx2 = CPUINFO.replace(" avx512f avx512_bf16 avx512_vnni", "")  # the 2-core machine of 2026-12-02 06:20
    assert hardware.machine(avx2)["isa"] == "avx2"
    assert hardware.machine("")["isa"] == "other" and hardware.cpu_flags("") == frozenset()  # no /proc (macOS)


def test_run_record_carries_the_machine():
    rec = make_record()
    assert set(rec["machine"]) == {"cpu", "isa", "threads", "gpu"} and rec["machine"]["threads"] >= 1
