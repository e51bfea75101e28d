"""Generate one answer for one SAMSum / TAT-QA sample and print it next to the reference.

The course's way of comparing the base, LoRA and fully fine-tuned models by eye:

    uv run ftlab inference --model_name_or_path smollm2 --sid 3
    uv run ftlab inference --model_name_or_path saves/smollm2_samsum_merged --sid 3 --dataset samsum
    uv run ftlab inference --model_name_or_path smollm2 --adapter_name_or_path saves/smollm2_lora --sid 3
    DATA_DIR=/work/shared/data uv run ftlab inference --model_name_or_path smollm2 --dataset tatqa --sid 0

Samples come from the same alpaca records the LLaMA-Factory runs train and predict on
(`lfdata.records`, what `dataHelper.py export` writes), and the user turn is built as LLaMA-Factory
builds it (instruction, newline, input), so what you see here is what the fine-tuned model was taught.
Decoding is greedy, so a rerun prints the same answer.

`predict` writes predictions for a whole split, batched, in LLaMA-Factory's format, for eval.py:

    uv run ftlab inference predict --model_name_or_path smollm2 --dataset samsum --max_samples 50 \
        --batch_size 8 --max_new_tokens 64 --output_dir saves/smollm2/base/predict_samsum_hf
    uv run ftlab inference predict --dataset_file lf_data/samsum_test.json --template smollm2 ...
    uv run eval.py saves/smollm2/base/predict_samsum_hf/generated_predictions.jsonl --no_bertscore

Prompts are left-padded (a pad on the right would sit between the prompt and the new tokens) with
attention mask 0 on the pads; generate() derives each row's position ids from that mask (Llama,
Qwen2), so a padded row sees the same positions as alone. Greedy by default, bf16 weights where
the GPU or the CPU (AVX512-BF16/AMX) supports it (not autocast: it would cast every fp32 matrix at
every new token), eager attention on a CPU (torch's CPU flash kernel is slow for one new token), the
prompts sorted by length so a batch holds similar lengths (the file keeps the input order), and, for
greedy decoding, continuous batching: a row that stops leaves the batch and the next prompts join it
(`generate_continuous`; `--continuous_batching false` runs one generate() call per batch). `--template NAME` builds the prompt ids with
LLaMA-Factory's own template (e.g. smollm2: its default system message ends with a period, the
tokenizer's does not); by default the tokenizer's chat template is used. Generation stops at the
eos token or any additional special token (LLaMA-Factory's rule). No prompt is truncated
(LLaMA-Factory cuts prompts longer than its `cutoff_len`). Besides the jsonl, predict_results.json
holds the timing (generation only, model loading excluded).

In fp32 a padded row's logits equal its one-at-a-time logits to ~1e-4, so greedy outputs match
(tested on a tiny Qwen2). In bf16 the logits carry ~0.1-0.5 of rounding noise that
depends on the batch's shape, and exact or near ties flip: on 16 SAMSum dialogues SmolLM2 wrote 7
summaries that part from their batch-1 twins after 12-62 shared tokens. Pass `--bf16 false` when
outputs must not depend on the batch size.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from ftlab import commandline
from ftlab.commandline import one_line_errors
from ftlab.data import llamafactory as lfdata
from ftlab.io import write_atomic, write_json_atomic
from ftlab.models.build import bf16_supported  # train.py's rule: CUDA bf16, or AVX512-BF16/AMX + oneDNN
from ftlab.models.checkpoints import resolve_model_name

# Imported inside functions: peft, llamafactory's templates and tqdm load only in the paths that use them (llamafactory is heavy and Python 3.11+).

logger = logging.getLogger(__name__)


@dataclass
class InferenceArguments:
    model_name_or_path: str = field(default="smollm2", metadata={
        "help": "embedded name (smollm2), Hub id or local folder of a causal LM (a merged or full SFT output)"})
    sid: int = field(default=0, metadata={"help": "index of the sample in the chosen split (0-based)"})
    dataset: str = field(default="samsum", metadata={"help": f"one of: {', '.join(sorted(lfdata.EXPORTS))}"})
    split: str = field(default="test", metadata={"help": "split to take the sample from (train, validation, test)"})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "raw data folder (default: $DATA_DIR, then ./data; the Hub copy when allowed)"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit (greedy decoding)"})
    adapter_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "a PEFT/LoRA adapter folder to load on top of the model (an unmerged LLaMA-Factory LoRA output)"})
    system: Optional[str] = field(default=None, metadata={
        "help": "system message; default: the chat template's own default (if any)"})
    template: Optional[str] = field(default=None, metadata={
        "help": "a LLaMA-Factory template name (smollm2, qwen, llama3, ...): the prompt ids the LLaMA-Factory "
                "run was trained on; default: the tokenizer's chat template"})


def load_records(dataset: str, split: str, data_dir: Optional[str] = None) -> List[Dict[str, str]]:
    """The alpaca records (`instruction`, `input`, `output`) of `dataset`'s `split`, as exported for LLaMA-Factory."""
    if dataset not in lfdata.EXPORTS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(sorted(lfdata.EXPORTS))}")
    entries = lfdata.records(dataset, data_dir)
    entry = f"{dataset}_{split}"
    if entry not in entries:
        valid = sorted(e[len(dataset) + 1:] for e in entries)
        raise ValueError(f"--split {split!r} does not exist for {dataset}; valid: {', '.join(valid)}")
    return entries[entry]


def load_sample(dataset: str, split: str, sid: int, data_dir: Optional[str] = None) -> Dict[str, str]:
    """The alpaca record (`instruction`, `input`, `output`) number `sid` of `dataset`'s `split`."""
    records = load_records(dataset, split, data_dir)
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

        # Merged (W + BA, LoRA's own point: no extra latency): generation runs plain linears.
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
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
    if args.template:  # LLaMA-Factory's ids, and its stop list, exactly as `predict --template` uses them
        (ids,) = encode_prompts(tokenizer, [record], args.system, llamafactory_template(tokenizer, args.template))
        answer = generate_batch(model, tokenizer, [ids], greedy_kwargs(tokenizer, args.max_new_tokens))[0]
        return tokenizer.decode(ids, skip_special_tokens=False), answer, record["output"]
    prompt = render_prompt(tokenizer, build_messages(record, args.system))
    return prompt, generate_answer(model, tokenizer, prompt, args.max_new_tokens), record["output"]


# ---------------------------------------------------------------- predict: a whole split, batched
PREDICTIONS_FILE = "generated_predictions.jsonl"  # LLaMA-Factory's name and format


@dataclass
class PredictArguments:
    output_dir: Optional[str] = field(default=None, metadata={
        "help": f"folder for {PREDICTIONS_FILE} and predict_results.json (required)"})
    model_name_or_path: str = field(default="smollm2", metadata={
        "help": "embedded name (smollm2), Hub id or local folder of a causal LM"})
    adapter_name_or_path: Optional[str] = field(default=None, metadata={"help": "a PEFT/LoRA adapter folder"})
    dataset: str = field(default="samsum", metadata={"help": f"one of: {', '.join(sorted(lfdata.EXPORTS))}"})
    split: str = field(default="test", metadata={"help": "split to predict (train, validation, test)"})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "raw data folder (default: $DATA_DIR, then ./data)"})
    dataset_file: Optional[str] = field(default=None, metadata={
        "help": "an exported alpaca JSON file (e.g. lf_data/samsum_test.json) instead of --dataset/--split"})
    max_samples: Optional[int] = field(default=None, metadata={"help": "only the first N records (file order)"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate() call"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit"})
    do_sample: bool = field(default=False, metadata={"help": "sample instead of greedy decoding"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (with --do_sample)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (with --do_sample)"})
    seed: int = field(default=42, metadata={"help": "seed for --do_sample"})
    template: Optional[str] = field(default=None, metadata={
        "help": "a LLaMA-Factory template name (smollm2, qwen, llama3, ...): its exact prompt ids; "
                "default: the tokenizer's chat template"})
    system: Optional[str] = field(default=None, metadata={"help": "system message; default: the template's own"})
    bf16: Optional[bool] = field(default=None, metadata={
        "help": "bf16 weights; default: on where the GPU or CPU (AVX512-BF16/AMX) supports it. "
                "Greedy outputs then may depend on the batch size (bf16 ties); false for exact repeats"})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "eager | sdpa; default: eager on CPU (torch's CPU flash kernel costs ~4 ms a call for one new "
                "token), the model's own choice on a GPU"})
    continuous_batching: bool = field(default=True, metadata={
        "help": "greedy only: a finished row leaves the batch and a new prompt takes its slot (same outputs "
                "as generate() batches in fp32, faster); false: one generate() call per batch"})
    sort_by_length: bool = field(default=True, metadata={
        "help": "batch prompts of similar length together (less padding); the output keeps the input order"})

    def check(self) -> None:
        if not self.output_dir:
            raise ValueError(f"--output_dir is required: the folder to write {PREDICTIONS_FILE} to")
        for name in ("batch_size", "max_new_tokens", "max_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} {value}: give a positive number")


def read_records_file(path: str) -> List[Dict[str, str]]:
    """An alpaca JSON file: a list of objects with `instruction`, `output` (and `input`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--dataset_file {path!r} not found: pass an alpaca JSON written by "
                                "`dataHelper.py export`")
    with open(path, encoding="utf-8") as fh:
        try:
            records = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty JSON list of alpaca records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str) or "output" not in rec:
            raise ValueError(f"{path}: record {i} is not an alpaca record (instruction, input, output)")
    return records


def select_records(args: PredictArguments) -> List[Dict[str, str]]:
    records = (read_records_file(args.dataset_file) if args.dataset_file
               else load_records(args.dataset, args.split, args.data_dir))
    return records[:args.max_samples] if args.max_samples else records


def llamafactory_template(tokenizer, name: str):
    """LLaMA-Factory's template `name`; it fixes the tokenizer as in LLaMA-Factory (eos, pad, stop words)."""
    from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    if name not in TEMPLATES:
        raise ValueError(f"--template {name!r} is not a LLaMA-Factory template (e.g. smollm2, qwen, llama3)")
    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))


def encode_prompts(tokenizer, records: Sequence[Dict[str, str]], system: Optional[str] = None,
                   template=None) -> List[List[int]]:
    """Prompt token ids per record: LLaMA-Factory's `template` when given, else the tokenizer's chat template."""
    if template is not None:
        return [template.encode_oneturn(tokenizer, build_messages(r) + [{"role": "assistant", "content": ""}],
                                        system)[0] for r in records]
    # The rendered template holds its special tokens: no second BOS from the tokenizer.
    return [tokenizer(render_prompt(tokenizer, build_messages(r, system)), add_special_tokens=False)["input_ids"]
            for r in records]


def stop_token_ids(tokenizer) -> List[int]:
    """eos plus the additional special tokens (LLaMA-Factory's generation stop list), without repeats."""
    ids = [tokenizer.eos_token_id] + list(getattr(tokenizer, "additional_special_tokens_ids", None) or [])
    return list(dict.fromkeys(i for i in ids if i is not None))


def pad_left(batch: Sequence[Sequence[int]], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (batch, longest): pads first, mask 0 on them."""
    longest = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[row, longest - len(ids):] = 1
    return input_ids, mask


def decode_new_tokens(tokenizer, ids: Sequence[int], stops: Sequence[int]) -> str:
    """Text of one row's new tokens up to the first stop token (later ids are generate()'s padding)."""
    ids = list(ids)
    end = next((i for i, t in enumerate(ids) if t in stops), len(ids))
    return tokenizer.decode(ids[:end], skip_special_tokens=True).strip()


def greedy_kwargs(tokenizer, max_new_tokens: int) -> Dict[str, Any]:
    """generate() flags for greedy decoding that stops at any of LLaMA-Factory's stop tokens."""
    return dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(tokenizer))


def generation_kwargs(tokenizer, args: PredictArguments) -> Dict[str, Any]:
    kwargs = greedy_kwargs(tokenizer, args.max_new_tokens)
    if args.do_sample:
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    return kwargs


@torch.no_grad()
def generate_batch(model, tokenizer, batch: Sequence[Sequence[int]], gen_kwargs: Dict[str, Any],
                   bf16: bool = False) -> List[str]:
    """One generate() call on left-padded prompts -> the decoded new text of each row."""
    input_ids, attention_mask = pad_left(batch, tokenizer.pad_token_id)
    with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                             **gen_kwargs)
    new_tokens = out[:, input_ids.shape[1]:].tolist()  # (batch, new): every row's prompt ends at the same column
    stops = gen_kwargs["eos_token_id"]
    return [decode_new_tokens(tokenizer, row, stops) for row in new_tokens]


def batch_order(lengths: Sequence[int], sort_by_length: bool) -> List[int]:
    """Indices in generation order: longest first when sorting (a too-big batch fails at once), else as given."""
    order = list(range(len(lengths)))
    return sorted(order, key=lambda i: -lengths[i]) if sort_by_length else order


def generate_all(model, tokenizer, prompts: Sequence[Sequence[int]], gen_kwargs: Dict[str, Any],
                 batch_size: int, bf16: bool = False, sort_by_length: bool = True) -> List[str]:
    """Predictions for every prompt, `batch_size` at a time, in the input order; a tqdm bar on stderr."""
    from tqdm import tqdm

    order = batch_order([len(p) for p in prompts], sort_by_length)
    preds: List[Optional[str]] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc="predict", unit="sample") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, text in zip(chunk, generate_batch(model, tokenizer, [prompts[i] for i in chunk], gen_kwargs, bf16)):
                preds[i] = text
            bar.update(len(chunk))
    return preds  # type: ignore[return-value]


# ---------------------------------------------------------------- continuous batching (greedy)
# generate() runs a batch until its longest answer ends: rows that stopped keep costing a slot, and on
# a CPU each new token costs ~50 ms of weight streaming whatever the batch holds. Here a finished row
# leaves the batch at once and new prompts join when a quarter of the slots are free: their prompts
# are prefilled on their own, then their KV cache is left-padded (or the running one is) to a common
# length and stacked on the batch axis. Positions come from the attention mask (pads do not count),
# so a row sees the same positions and keys as alone: fp32 outputs equal one-at-a-time generate().
@torch.no_grad()
def _step(model, input_ids: torch.Tensor, mask: torch.Tensor, cache) -> Tuple[torch.Tensor, Any]:
    """Forward the new columns `input_ids` (batch, new) over `cache`; the greedy next token per row."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]  # (batch, new)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1].argmax(-1), out.past_key_values  # (batch,), the cache holding the new columns


def _left_pad_cache(cache, mask: torch.Tensor, length: int) -> torch.Tensor:
    """Pad every layer's keys/values (batch, heads, seq, dim) and the mask on the left up to `length`."""
    extra = length - mask.shape[1]
    if extra > 0:
        for layer in cache.layers:
            layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, extra, 0))
            layer.values = torch.nn.functional.pad(layer.values, (0, 0, extra, 0))
        mask = torch.nn.functional.pad(mask, (extra, 0))
    return mask


def _join(cache, mask: torch.Tensor, new_cache, new_mask: torch.Tensor) -> torch.Tensor:
    """Stack `new_cache`'s rows under `cache`'s (in place in `cache`); the joined mask."""
    length = max(mask.shape[1], new_mask.shape[1])
    mask, new_mask = _left_pad_cache(cache, mask, length), _left_pad_cache(new_cache, new_mask, length)
    for layer, new_layer in zip(cache.layers, new_cache.layers):
        layer.keys = torch.cat([layer.keys, new_layer.keys])
        layer.values = torch.cat([layer.values, new_layer.values])
    return torch.cat([mask, new_mask])


def _keep_rows(cache, mask: torch.Tensor, rows: List[int]) -> torch.Tensor:
    """Only `rows` stay; leading columns that are padding in every kept row are cut. The new mask."""
    index = torch.tensor(rows, device=mask.device)
    mask = mask[index]
    start = int(mask.any(0).nonzero()[0])
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]
    return mask[:, start:]


def generate_continuous(model, tokenizer, prompts: Sequence[Sequence[int]], gen_kwargs: Dict[str, Any],
                        batch_size: int, sort_by_length: bool = True) -> List[str]:
    """Greedy answers to every prompt with at most `batch_size` rows decoding at once (input order kept)."""
    from tqdm import tqdm
    from transformers import DynamicCache

    stops, limit, pad_id = set(gen_kwargs["eos_token_id"]), gen_kwargs["max_new_tokens"], gen_kwargs["pad_token_id"]
    queue = batch_order([len(p) for p in prompts], sort_by_length)
    answers: List[List[int]] = [[] for _ in prompts]
    alive: List[int] = []  # prompt index of each batch row
    cache, mask, next_ids = None, None, None
    with tqdm(total=len(prompts), desc="predict", unit="sample") as bar:
        while queue or alive:
            free = batch_size - len(alive)
            if queue and (not alive or free >= max(1, batch_size // 4)):
                take, queue = queue[:free], queue[free:]
                ids, new_mask = pad_left([prompts[i] for i in take], pad_id)
                ids, new_mask = ids.to(model.device), new_mask.to(model.device)
                new_next, new_cache = _step(model, ids, new_mask, DynamicCache())
                if alive:
                    mask = _join(cache, mask, new_cache, new_mask)
                    next_ids = torch.cat([next_ids, new_next])
                else:
                    cache, mask, next_ids = new_cache, new_mask, new_next
                alive += take
            tokens = next_ids.tolist()
            keep = []
            for row, (i, token) in enumerate(zip(alive, tokens)):
                if token not in stops:
                    answers[i].append(token)
                if token in stops or len(answers[i]) >= limit:
                    bar.update(1)
                else:
                    keep.append(row)
            if len(keep) < len(alive):
                alive = [alive[row] for row in keep]
                if not alive:
                    continue
                mask = _keep_rows(cache, mask, keep)
                next_ids = next_ids[torch.tensor(keep, device=next_ids.device)]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            next_ids, cache = _step(model, next_ids[:, None], mask, cache)
    return [decode_new_tokens(tokenizer, ids, stops) for ids in answers]


def write_predictions(path: str, tokenizer, prompts: Sequence[Sequence[int]], preds: Sequence[str],
                      records: Sequence[Dict[str, str]]) -> None:
    """LLaMA-Factory's generated_predictions.jsonl: {"prompt" (with special tokens), "predict", "label"} a line."""
    lines = [json.dumps({"prompt": tokenizer.decode(ids, skip_special_tokens=False), "predict": pred,
                         "label": rec["output"]}, ensure_ascii=False) + "\n"
             for ids, pred, rec in zip(prompts, preds, records)]
    write_atomic(path, "".join(lines))


def resolve_bf16(flag: Optional[bool]) -> bool:
    return bf16_supported() if flag is None else bool(flag)


def prepare_for_generation(model, bf16: bool, attn_implementation: Optional[str] = None) -> str:
    """Weights in bf16 when `bf16` (autocast would cast every fp32 matrix at every new token: 1.5x slower
    at batch 32 on SmolLM2 here), and the attention kernel; returns the kernel's name."""
    if bf16:
        model.to(torch.bfloat16)
    if attn_implementation is None and model.device.type == "cpu":
        attn_implementation = "eager"  # batch 32 x 1 new token: bmm + softmax beat the CPU flash kernel
    if attn_implementation:
        model.set_attn_implementation(attn_implementation)
    return model.config._attn_implementation


def plain_greedy(model, args: PredictArguments) -> bool:
    """True when generate() would pick plain argmax tokens (what generate_continuous does): no sampling, one
    beam, no logits processors from the model's generation_config (repetition penalty, banned n-grams ...)."""
    config = model.generation_config
    return (not args.do_sample and (config.repetition_penalty or 1.0) == 1.0 and not config.no_repeat_ngram_size
            and not config.bad_words_ids and not config.suppress_tokens and not config.begin_suppress_tokens
            and not config.min_new_tokens and not config.min_length)


def run_predict(args: PredictArguments) -> Dict[str, Any]:
    """Predict every selected record; write the jsonl and predict_results.json; return the results."""
    args.check()
    records = select_records(args)
    model, tokenizer = load_model(args.model_name_or_path, args.adapter_name_or_path)
    template = llamafactory_template(tokenizer, args.template) if args.template else None
    prompts = encode_prompts(tokenizer, records, args.system, template)
    bf16 = resolve_bf16(args.bf16)
    attention = prepare_for_generation(model, bf16, args.attn_implementation)
    if args.do_sample:
        torch.manual_seed(args.seed)
    start = time.perf_counter()
    continuous = args.continuous_batching and plain_greedy(model, args)
    generate = generate_continuous if continuous else generate_all
    preds = generate(model, tokenizer, prompts, generation_kwargs(tokenizer, args), args.batch_size,
                     sort_by_length=args.sort_by_length)
    seconds = time.perf_counter() - start
    path = os.path.join(args.output_dir, PREDICTIONS_FILE)
    write_predictions(path, tokenizer, prompts, preds, records)
    results = {"predictions": os.path.abspath(path), "n": len(records), "model": args.model_name_or_path,
               "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample,
               "bf16": bf16, "attn_implementation": attention, "continuous_batching": continuous, "template": args.template or "tokenizer chat template",
               "predict_runtime": round(seconds, 3), "samples_per_minute": round(60 * len(records) / seconds, 2)}
    write_json_atomic(os.path.join(args.output_dir, "predict_results.json"), results)
    return results


@one_line_errors(ValueError, OSError)
def predict_main(argv: Optional[List[str]] = None) -> int:
    (args,) = commandline.parse_dataclasses(HfArgumentParser(PredictArguments, prog="ftlab inference predict"), argv)
    results = run_predict(args)
    print(f"{results['n']} predictions in {results['predict_runtime']:.1f} s "
          f"({results['samples_per_minute']:.1f}/min, batch {results['batch_size']}, bf16 {results['bf16']}): "
          f"wrote {results['predictions']}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:
        return predict_main(argv[1:])
    return answer_main(argv)


@one_line_errors()
def answer_main(argv: List[str]) -> int:
    (args,) = commandline.parse_dataclasses(HfArgumentParser(InferenceArguments, prog="ftlab inference"), argv)
    prompt, answer, reference = run(args)
    print(f"=== prompt ({args.dataset} {args.split} #{args.sid}) ===\n{prompt}")
    print(f"=== answer ({args.model_name_or_path}) ===\n{answer}")
    print(f"=== reference ===\n{reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
