#!/usr/bin/env python3
"""Generate taskbench's causal-LM (safetensors path) fixtures and HF-transformers reference logits.

What it makes (under tests/fixtures/, read by tests/generative/):

  tiny-llama/   LlamaForCausalLM, untied output head (lm_head.weight saved), rope_theta 1000
  tiny-qwen2/   Qwen2ForCausalLM (q/k/v biases), tied output head (no lm_head.weight), rope_theta 100000
      Each is a complete HF folder: config.json, model.safetensors (float32), tokenizer.json
      (a byte-level BPE trained here with the `tokenizers` library, 300 tokens, ids 0-2 are
      <|endoftext|>, <|im_start|>, <|im_end|>), tokenizer_config.json with a ChatML
      chat_template, plus reference.json:
        texts[i]      text, ids (tokenizer(text, add_special_tokens=False), BOS first when
                      tokenizer_config says add_bos_token), logits [len][vocab]
        chat          messages, rendered (apply_chat_template(add_generation_prompt=True))
      Sizes: hidden 64, intermediate 112, 2 layers, 4 heads, 2 key/value heads (head_dim 16),
      max_position_embeddings 64, rms_norm_eps 1e-6. Weights are re-randomized after init
      (embeddings N(0,1), linear N(0, 1/sqrt(fan_in)), norms in [0.5, 1.5], biases N(0, 0.2))
      so logits spread over several units and differ clearly between positions.

How to run (from the repository root; CPU only, a few seconds):

    ~/.cache/taskbench-anchors/bin/python scripts/make_causal_reference.py

Logits are transformers' float32 eager attention on CPU, one full forward per sequence,
written with 9 significant digits (exact for float32). Seeded: with the same library
versions a rerun writes identical files (the versions are recorded under "versions").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import safetensors
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                          Qwen2ForCausalLM)

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 300
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a tiny test model.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Classify the sentiment of this review as positive or negative.",
    "The movie was wonderful and the service was terrible.",
    "Is this email spam or ham? Answer with one word.",
    "the cat sat on the mat; the dog sat on the log.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 1234.",
] * 4

TEXTS = [
    "The",
    "The capital of France is",
    "Classify the sentiment: the movie was wonderful!",
    "<|im_start|>user\nIs this spam?<|im_end|>\n<|im_start|>assistant\n",
    "Zoë's café, 3.14 and 🎉 — bytes the merges never saw.",
]


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "device": "cpu",
        "dtype": "float32",
        "attn_implementation": "eager",
    }


def make_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i
    return tok


def rerandomize_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def f32(x: float) -> float:
    return float(f"{x:.9g}")


def build(kind: str, out_root: Path, raw_tok: Tokenizer) -> None:
    common = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, hidden_act="silu", bos_token_id=1, eos_token_id=2,
        attn_implementation="eager",
    )
    torch.manual_seed(1000 if kind == "llama" else 2000)
    if kind == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
        model = LlamaForCausalLM(config)
        add_bos = True
    else:
        config = Qwen2Config(**common, tie_word_embeddings=True, use_sliding_window=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
        model = Qwen2ForCausalLM(config)
        add_bos = False
    rerandomize_(model, 1001 if kind == "llama" else 2001)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.eval()
    out = out_root / f"tiny-{kind}"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=raw_tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token=None, pad_token="<|endoftext|>", model_max_length=64,
    )
    hf_tok.chat_template = CHATML
    hf_tok.save_pretrained(out)
    # transformers writes its own keys; add_bos_token is what taskbench reads for BOS.
    cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(cfg_path.read_text())
    tok_cfg["add_bos_token"] = add_bos
    tok_cfg["chat_template"] = CHATML
    cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    for extra in ("chat_template.jinja", "special_tokens_map.json", "generation_config.json"):
        if (out / extra).exists():
            (out / extra).unlink()

    reloaded = type(model).from_pretrained(out, attn_implementation="eager").eval()
    tok = PreTrainedTokenizerFast.from_pretrained(out)
    cases = []
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == raw_tok.encode(text, add_special_tokens=False).ids
        if add_bos:
            ids = [tok.bos_token_id] + ids
        with torch.no_grad():
            logits = reloaded(torch.tensor([ids])).logits[0]
        cases.append({"text": text, "ids": ids,
                      "logits": [[f32(v) for v in row.tolist()] for row in logits]})
    # One sequence of the full context (64 positions), ids spread over the vocabulary.
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, VOCAB, (64,), generator=g).tolist()
    with torch.no_grad():
        logits = reloaded(torch.tensor([ids])).logits[0]
    cases.append({"text": None, "ids": ids,
                  "logits": [[f32(v) for v in row.tolist()] for row in logits]})
    spread = torch.stack([torch.tensor(c["logits"]).std() for c in cases]).min().item()
    assert spread > 0.5, f"logits too flat ({spread})"
    messages = [{"role": "user", "content": "Is this spam?"}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    reference = {
        "versions": versions(),
        "model": kind,
        "tie_word_embeddings": config.tie_word_embeddings,
        "add_bos": add_bos,
        "chat": {"messages": messages, "rendered": rendered},
        "cases": cases,
    }
    (out / "reference.json").write_text(json.dumps(reference, ensure_ascii=False) + "\n")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    assert all(s < 1_000_000 for s in sizes.values()), sizes
    print(out, sizes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(ROOT / "tests" / "fixtures"))
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    raw_tok = make_tokenizer()
    for kind in ("llama", "qwen2"):
        build(kind, Path(a.out), raw_tok)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
