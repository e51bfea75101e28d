"""Generate one answer for one SAMSum / TAT-QA sample and print it next to the reference.

The course's way of comparing the base, LoRA and fully fine-tuned models by eye:

    uv run inference.py --model_name_or_path smollm2 --sid 3
    uv run inference.py --model_name_or_path saves/smollm2_samsum_merged --sid 3 --dataset samsum
    uv run inference.py --model_name_or_path smollm2 --adapter_name_or_path saves/smollm2_lora --sid 3
    DATA_DIR=/work/shared/data uv run inference.py --model_name_or_path smollm2 --dataset tatqa --sid 0

Samples come from the same alpaca records the LLaMA-Factory runs train and predict on
(`dataHelper.export_llamafactory`), and the user turn is built as LLaMA-Factory builds it
(instruction, newline, input), so what you see here is what the fine-tuned model was taught.
Decoding is greedy, so a rerun prints the same answer.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

import dataHelper
from models import resolve_model_name

logger = logging.getLogger(__name__)


@dataclass
class InferenceArguments:
    model_name_or_path: str = field(default="smollm2", metadata={
        "help": "embedded name (smollm2), Hub id or local folder of a causal LM (a merged or full SFT output)"})
    sid: int = field(default=0, metadata={"help": "index of the sample in the chosen split (0-based)"})
    dataset: str = field(default="samsum", metadata={"help": f"one of: {', '.join(sorted(dataHelper.EXPORTS))}"})
    split: str = field(default="test", metadata={"help": "split to take the sample from (train, validation, test)"})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "raw data folder (default: $DATA_DIR, then ./data; the Hub copy when allowed)"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit (greedy decoding)"})
    adapter_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "a PEFT/LoRA adapter folder to load on top of the model (an unmerged LLaMA-Factory LoRA output)"})
    system: Optional[str] = field(default=None, metadata={
        "help": "system message; default: the chat template's own default (if any)"})


def load_sample(dataset: str, split: str, sid: int, data_dir: Optional[str] = None) -> Dict[str, str]:
    """The alpaca record (`instruction`, `input`, `output`) number `sid` of `dataset`'s `split`."""
    if dataset not in dataHelper.EXPORTS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(sorted(dataHelper.EXPORTS))}")
    with tempfile.TemporaryDirectory(prefix="ftlab-inference-") as tmp:
        entries = dataHelper.export_llamafactory(dataset, tmp, data_dir=data_dir)
        entry = f"{dataset}_{split}"
        if entry not in entries:
            valid = sorted(e[len(dataset) + 1:] for e in entries)
            raise ValueError(f"--split {split!r} does not exist for {dataset}; valid: {', '.join(valid)}")
        with open(os.path.join(tmp, f"{entry}.json"), encoding="utf-8") as fh:
            records = json.load(fh)
    if not 0 <= sid < len(records):
        raise ValueError(f"--sid {sid} is out of range for {dataset} {split}: "
                         f"valid 0..{len(records) - 1} ({len(records)} samples)")
    return records[sid]


def build_messages(record: Dict[str, str], system: Optional[str] = None) -> List[Dict[str, str]]:
    """Chat messages for one alpaca record: the user turn is `instruction\\ninput` (LLaMA-Factory's way)."""
    user = "\n".join(part for part in (record.get("instruction", ""), record.get("input", "")) if part)
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": user}]


def load_model(model_name_or_path: str, adapter: Optional[str] = None):
    """(model, tokenizer) in eval mode on the GPU when there is one; a pad token is set (= eos) if missing."""
    path = resolve_model_name(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # Qwen/Llama checkpoints ship without one; generate() needs an id
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer


def render_prompt(tokenizer, messages: List[Dict[str, str]]) -> str:
    """The exact prompt text the model sees: chat template + the assistant turn opener."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    logger.warning("the tokenizer has no chat template: using the plain message text as the prompt")
    return "\n\n".join(m["content"] for m in messages) + "\n"


@torch.no_grad()
def generate_answer(model, tokenizer, prompt: str, max_new_tokens: int = 128) -> str:
    """Greedy continuation of `prompt`, special tokens stripped."""
    # The template already contains its special tokens: do not let the tokenizer add a BOS again.
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False,
                    return_token_type_ids=False).to(model.device)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    new_tokens = out[0, enc["input_ids"].shape[1]:]  # (new,) ids after the prompt
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def run(args: InferenceArguments) -> Tuple[str, str, str]:
    """(prompt, answer, reference) for `args.sid`."""
    if args.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens {args.max_new_tokens}: give a positive number")
    record = load_sample(args.dataset, args.split, args.sid, args.data_dir)
    model, tokenizer = load_model(args.model_name_or_path, args.adapter_name_or_path)
    prompt = render_prompt(tokenizer, build_messages(record, args.system))
    return prompt, generate_answer(model, tokenizer, prompt, args.max_new_tokens), record["output"]


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    (args,) = HfArgumentParser(InferenceArguments).parse_args_into_dataclasses(args=argv)
    try:
        prompt, answer, reference = run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"=== prompt ({args.dataset} {args.split} #{args.sid}) ===\n{prompt}")
    print(f"=== answer ({args.model_name_or_path}) ===\n{answer}")
    print(f"=== reference ===\n{reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
