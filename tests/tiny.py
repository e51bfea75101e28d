"""Tiny random models of every architecture the project supports, saved as real HF folders.

Tests call `make_tiny(kind, tmp_path / kind)`: the folder holds config.json, safetensors
weights and a tokenizer, so the real `from_pretrained` loading code runs on small weights
(offline). Kinds: bert, distilbert, bart, qwen2, llama.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ftlab.models.checkpoints import minilm_path

# Enough English for a byte-level BPE to learn frequent words of the fixtures and SAMSum.
_CORPUS = [
    "The food was great but the service was slow and the waiter was rude.",
    "I love this laptop, the battery lasts all day and the screen is bright.",
    "We propose a method that builds on prior work in citation analysis.",
    "Stocks fell sharply on Monday as investors worried about interest rates.",
    "A gripping, funny and moving film with a terrible ending.",
    "Hannah: Hey, do you have Betty's number? Amanda: Lemme check. Sorry, can't find it.",
    "Summarize the dialogue. Answer the question using the table and the paragraphs.",
    "positive negative neutral paraphrase not equivalent sentence one two",
] * 4

# Decoder special tokens: Qwen's chat markers so LLaMA-Factory's `qwen` template works.
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BART_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_bpe(specials: list[str], vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE trained in ~50 ms on `_CORPUS` (vocab: specials + 256 bytes + merges)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return tok


def _save(model, tokenizer, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return str(out)


def _bert_tokenizer():
    return transformers.BertTokenizerFast(vocab_file=os.path.join(minilm_path(), "vocab.txt"))


def make_tiny(kind: str, out: Path | str, num_labels: int | None = None, causal: bool = False) -> str:
    """Save a tiny random `kind` model (+ tokenizer) to `out`; return the folder path.

    `causal=True` saves a *ForCausalLM (decoders only) instead of the bare config + base model.
    """
    out = Path(out)
    torch.manual_seed(0)
    small = dict(max_position_embeddings=512)
    if kind == "bert":
        tok = _bert_tokenizer()
        cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64, **small)
        model = transformers.BertModel(cfg)
    elif kind == "distilbert":
        tok = transformers.DistilBertTokenizerFast(vocab_file=os.path.join(minilm_path(), "vocab.txt"))
        cfg = transformers.DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2,
                                            hidden_dim=64, **small)
        model = transformers.DistilBertModel(cfg)
    elif kind == "bart":
        bpe = build_bpe(BART_SPECIALS)
        bpe.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", bpe.token_to_id("<s>")), ("</s>", bpe.token_to_id("</s>"))])
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
            unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
        cfg = transformers.BartConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
            decoder_ffn_dim=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id, **small)
        model = transformers.BartModel(cfg)
    elif kind in ("qwen2", "llama"):
        bpe = build_bpe(QWEN_SPECIALS)
        # Like the real Qwen/Llama checkpoints: an eos token but *no* pad token.
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
        tok.chat_template = QWEN_CHAT_TEMPLATE
        common = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.eos_token_id, tie_word_embeddings=False, **small)
        cfg_cls = transformers.Qwen2Config if kind == "qwen2" else transformers.LlamaConfig
        cfg = cfg_cls(**common)
        model_cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
        model = model_cls.from_config(cfg)
    else:
        raise ValueError(f"unknown tiny kind {kind!r}; valid: bert, distilbert, bart, qwen2, llama")
    if num_labels is not None:
        model.config.num_labels = num_labels
    return _save(model, tok, out)
