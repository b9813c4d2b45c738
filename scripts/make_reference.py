#!/usr/bin/env python3
"""Generate taskbench's encoder test fixtures and HF-transformers reference outputs.

What it makes (everything under tests/fixtures/, see tests/fixtures/README.md):

  tiny-bert/        BertForSequenceClassification, random seeded weights, 4 labels
  tiny-distilbert/  DistilBertForSequenceClassification (activation "gelu" = erf), 3 labels
  tiny-roberta/     RobertaForSequenceClassification (pad_token_id 1, 514 positions), 5 labels
      Each is a complete HF folder (config.json, model.safetensors in float32,
      tokenizer.json, tokenizer_config.json, special_tokens_map.json) loadable with
      AutoModelForSequenceClassification / AutoTokenizer, plus reference.json:
      texts, input_ids (truncation=True, max_length 512), logits and softmax
      probabilities computed one text at a time and as one padded batch.
      Sizes: hidden 32, 2 layers, 4 heads, intermediate 37 (odd on purpose).
      Tokenizers are trained here with the `tokenizers` library on a generated
      English corpus: WordPiece (bert-base-uncased style: lowercase + strip
      accents) shared by tiny-bert and tiny-distilbert, byte-level BPE for
      tiny-roberta. Weights are re-randomized after init (LayerNorm weight/bias
      included) so logits differ clearly between labels and texts.

  minilm-head/      heads on top of the real all-MiniLM-L6-v2 backbone
                    (models/all-MiniLM-L6-v2, git-ignored, fetched separately):
      pooler_classifier.safetensors  classifier.weight [5,384], classifier.bias [5]
      reference_pooler.json          BertForSequenceClassification(backbone + that
                                     classifier), pooler (tanh(dense(CLS))) path,
                                     truncation at 512
      mean_dense.safetensors         linear.weight [5,384], linear.bias [5]
                                     (sentence-transformers Dense tensor names)
      reference_mean.json            backbone -> mean over attention mask -> L2
                                     normalize -> linear (NO activation), truncation
                                     at 256 (sentence_bert_config max_seq_length)

How to run (from the repository root; CPU only, takes about a minute):

    /root/.cache/taskbench-anchors/bin/python scripts/make_reference.py

  Options: --minilm DIR (default models/all-MiniLM-L6-v2), --out DIR (default
  tests/fixtures), --skip-minilm (only the tiny classifiers).
  Regeneration overwrites the fixtures. Weights are seeded (torch.manual_seed plus a
  seeded torch.Generator) and tokenizer training is made deterministic, so with the
  same library versions a rerun writes byte-identical files (checked).

Versions it was last run with (also recorded into every reference JSON under
"versions"; the script warns if the running versions differ):

    python 3.11.7, torch 2.15.0+cu132 (run on CPU), transformers 5.24.0,
    tokenizers 0.23.3, safetensors 0.8.0

All reference logits use attn_implementation="eager" in float32 on CPU; the script
also checks the tiny models against the "sdpa" implementation (within 5e-5) and
asserts one-by-one vs batched agreement within 1e-5. Floats are written to JSON with full precision
(the exact float32 value, as a shortest-round-trip double).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
from pathlib import Path

import safetensors
import safetensors.torch
import tokenizers
import torch
import transformers
from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, Tokenizer, processors
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizer,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizer,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizer,
)

DOCUMENTED_VERSIONS = {
    "torch": "2.15.0+cu132",
    "transformers": "5.24.0",
    "tokenizers": "0.23.3",
    "safetensors": "0.8.0",
}

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_LEN = 512          # model max / truncation length for all classifiers
ST_MAX_SEQ_LEN = 256   # sentence-transformers max_seq_length of all-MiniLM-L6-v2
AGREE_TOL = 1e-5       # one-by-one vs batched tolerance (logits and probabilities)
SDPA_TOL = 5e-5        # eager vs sdpa sanity check (different kernels; ~1e-5 seen on logits of size ~5)
ATTN = "eager"

torch.set_grad_enabled(False)


# --------------------------------------------------------------------------- texts

LONG_PARAGRAPHS = [
    "Hello, I am writing about order number 55821 which I placed on the third of March. "
    "The confirmation email said it would arrive within five business days, but it has now been "
    "almost three weeks and the tracking page still shows the parcel sitting in a warehouse in Rotterdam.",
    "I contacted your chat support twice. The first agent told me to wait another forty-eight hours, "
    "and the second agent closed the conversation without answering. Honestly, this is not the "
    "experience I expected after being a customer for more than six years.",
    "On top of that, my credit card was charged twice: once for $249.99 and again for $251.40, "
    "which I assume includes some kind of shipping surcharge that was never mentioned at checkout. "
    "I would like a refund for the duplicate charge and a clear explanation of the extra fee.",
    "I also tried to log into my account to download the invoice, but the password reset link keeps "
    "expiring before I can use it. The error message says 'token invalid or expired (code 0x1F4)'. "
    "I cleared my cookies, switched browsers, and even tried from my phone, with no luck.",
    "Could you please escalate this to a supervisor? I need the package before my daughter's birthday "
    "next Saturday, and if that is impossible I would prefer to cancel the order entirely and get all "
    "of my money back. Thank you for your time, and I look forward to a quick response.",
]


def long_text(n_rounds: int) -> str:
    parts = []
    for r in range(n_rounds):
        for i, p in enumerate(LONG_PARAGRAPHS):
            parts.append(f"[Part {r * len(LONG_PARAGRAPHS) + i + 1}] {p}")
    return "\n\n".join(parts)


MEDIUM_TEXT = " ".join(LONG_PARAGRAPHS[:3])  # ~170 MiniLM tokens, ~280-350 with the tiny vocabularies
# ~470 MiniLM tokens: truncated at 256 (mean head) but not at 512 (pooler head);
# past 512 with the tiny vocabularies
BETWEEN_TEXT = long_text(2)[: len(long_text(2)) * 3 // 4].rsplit(" ", 1)[0]
LONG_TEXT = long_text(4)  # well past 512 tokens for every tokenizer here


def base_texts() -> list[str]:
    return [
        "",
        "refund",
        "I was charged twice for my subscription this month, please refund the extra payment.",
        "My internet connection keeps dropping every few minutes since the last update.",
        "How do I change the email address on my account?",
        "Café crème, naïve façade, Ångström, São Paulo",
        "Cafe\u0301 cre\u0300me with decomposed accents, and ÉLAN in capitals",
        "My order 📦 never arrived 😡🔥",
        "Thanks!! 👍🏽 👩‍💻 🇧🇷 works now",
        "我的订单还没有到，请帮我查一下。",
        "注文した商品が届きません。返金をお願いします。",
        "배송이 너무 늦어요",
        "WHY is my Invoice #4471 STILL 'Pending'?!? ... Call me @ +1 (555) 010-9999!!!",
        "Order 12345 cost $1,299.99 on 2024-03-15 at 10:45pm; tracking no. 9400111899562537 (3 items, 2.5kg, 50%).",
        "ok",
        "   leading and trailing whitespace\tand\ttabs\nand newlines   ",
        "literal specials: [CLS] [SEP] [PAD] <s> </s> <pad> <mask> [mask]",
        "Supercalifragilisticexpialidocious " + "x" * 120 + " end",
        MEDIUM_TEXT,
        BETWEEN_TEXT,
        LONG_TEXT,
        # exact-length boundary texts: "the" is a single token in every tokenizer here
        # (asserted), so n words -> n + 2 tokens with specials.
        " ".join(["the"] * 254),  # 256 tokens: exactly the sentence-transformers limit
        " ".join(["the"] * 255),  # 257 -> truncated to 256 for the mean head
        " ".join(["the"] * 510),  # 512 tokens: exactly the model limit, no truncation
        " ".join(["the"] * 511),  # 513 -> truncated to 512
    ]


# ------------------------------------------------------------- tokenizer corpus

def training_corpus(seed: int = 1234, n_generated: int = 400) -> list[str]:
    rng = random.Random(seed)
    fixed = [
        "I was charged twice for the same order and need a refund.",
        "The app crashes every time I open the settings page.",
        "How can I update my billing address and payment method?",
        "My package was delivered to the wrong address.",
        "Please cancel my subscription before the next renewal date.",
        "The router keeps disconnecting; I have already restarted it three times.",
        "Where can I download last month's invoice as a PDF?",
        "Your technical support team was very helpful, thank you!",
        "I never received the confirmation email for my booking.",
        "Can I change the delivery date to next Tuesday?",
        "The discount code SAVE20 does not work at checkout.",
        "Café, crème brûlée, naïve, façade, jalapeño, Ångström, São Paulo, Zürich, résumé.",
        "Mañana llegará el paquete, según el correo de confirmación.",
        "Das Paket ist noch nicht angekommen, bitte prüfen Sie die Sendungsnummer.",
        "Le remboursement n'est toujours pas arrivé sur mon compte.",
        "我的订单还没有到。请帮我查一下。谢谢。",
        "订单 退款 账单 技术 支持 问题",
        "注文 返金 請求 サポート",
        "Great service 😀 fast delivery 📦 but the box was damaged 😡",
        "Order #98765 shipped on 2023-11-02 for $49.99 (2 items).",
        "Call us at +1 (800) 555-0199 or email support@example.com.",
        "ERROR 500: Internal Server Error -- please try again later!!!",
        "WiFi, Bluetooth, USB-C, HDMI, 4K, 5G, and LTE are all supported.",
        "The quick brown fox jumps over the lazy dog.",
        "Symbols: < > [ ] { } ( ) / \\ | @ # $ % ^ & * _ + = ~ ` ' \" ; : , . ? ! - <b>bold</b> [link]",
        "Brackets [like this] and <tags> or {braces} appear in pasted logs / paths like C:\\Users\\me.",
    ]
    subjects = ["I", "We", "My wife", "Our team", "The customer", "My account", "The technician",
                "Your website", "The mobile app", "My order", "The invoice", "The courier"]
    verbs = ["was charged", "cannot log in", "did not receive", "keeps failing", "needs help with",
             "was refunded for", "is waiting for", "has a problem with", "wants to cancel",
             "asked about", "could not find", "was overcharged for"]
    objects = ["the monthly subscription", "a replacement part", "the tracking number",
               "the premium plan", "two-factor authentication", "the shipping label",
               "a damaged laptop", "the annual invoice", "the password reset email",
               "an international transfer", "the warranty claim", "the internet connection",
               "a double payment", "the gift card balance", "the mobile data bundle"]
    tails = ["since yesterday.", "for three weeks now!", "again and again...", "— please help.",
             "twice this month.", "after the latest update.", "and nobody answered my emails.",
             "even though I paid $19.99.", "on 12/05/2024.", "; order no. 4471.", "?", "!!!",
             "and I am very frustrated.", "but the agent was friendly.", "before Friday, thanks."]
    lines = list(fixed)
    for _ in range(n_generated):
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}"
        r = rng.random()
        if r < 0.15:
            s = s.upper()
        elif r < 0.30:
            s = s.lower()
        if rng.random() < 0.1:
            s += f" Ref {rng.randint(1000, 999999)}."
        lines.append(s)
    lines.extend(LONG_PARAGRAPHS)
    return lines


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4 like roberta-base


def make_wordpiece_tokenizer(corpus: list[str]) -> tuple[BertTokenizer, Tokenizer]:
    trained = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True,
                                     strip_accents=None, lowercase=True)
    # Determinism: the WordPiece trainer assigns ids to the "##c" continuation characters
    # in hash-map order (random per process), which changes tie-breaks and hence the whole
    # vocabulary from run to run. Registering every "##c" up front (sorted) as an extra
    # "special" token for the trainer fixes their ids; the rest of the training is then
    # deterministic. (They become ordinary vocab entries in the saved tokenizer.)
    norm, pre = trained._tokenizer.normalizer, trained._tokenizer.pre_tokenizer
    cont = sorted({"##" + ch for line in corpus
                   for word, _ in pre.pre_tokenize_str(norm.normalize_str(line))
                   for ch in word[1:]})
    trained.train_from_iterator(corpus, vocab_size=700, min_frequency=2,
                                special_tokens=BERT_SPECIALS + cont, limit_alphabet=1000,
                                wordpieces_prefix="##", show_progress=False)
    vocab = trained.get_vocab()
    for i, t in enumerate(BERT_SPECIALS):
        assert vocab[t] == i, (t, vocab[t])
    # keep only the five real specials as special tokens in the trained (cross-check) tokenizer
    trained = BertWordPieceTokenizer(vocab, clean_text=True, handle_chinese_chars=True,
                                     strip_accents=None, lowercase=True)
    for t in BERT_SPECIALS:
        trained.add_special_tokens([t])
    # the trainer leaves no post-processor after training; add the BERT one for the cross-check
    trained._tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]),
                                                                  ("[CLS]", vocab["[CLS]"]))
    # BertTokenizer (transformers 5: backed by `tokenizers`) rebuilds the canonical
    # bert-base-uncased pipeline (BertNormalizer lowercase+strip accents, BertPreTokenizer,
    # WordPiece ##, TemplateProcessing [CLS] $A [SEP]) from this vocab.
    hf = BertTokenizer(vocab=dict(sorted(vocab.items(), key=lambda kv: kv[1])), do_lower_case=True,
                       model_max_length=MAX_LEN)
    return hf, trained._tokenizer


def make_bytelevel_tokenizer(corpus: list[str]) -> tuple[RobertaTokenizer, Tokenizer]:
    trained = ByteLevelBPETokenizer(add_prefix_space=False, lowercase=False, trim_offsets=True)
    trained.train_from_iterator(corpus, vocab_size=800, min_frequency=2,
                                special_tokens=ROBERTA_SPECIALS, show_progress=False)
    vocab = trained.get_vocab()
    for i, t in enumerate(ROBERTA_SPECIALS):
        assert vocab[t] == i, (t, vocab[t])
    model_json = json.loads(trained._tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]
    trained._tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True, add_prefix_space=False)
    hf = RobertaTokenizer(vocab=dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges=merges,
                          add_prefix_space=False, trim_offsets=True, model_max_length=MAX_LEN)
    return hf, trained._tokenizer


def check_wrapper_matches_trained(hf, trained: Tokenizer, texts: list[str]) -> None:
    for t in texts:
        a = hf(t, add_special_tokens=True)["input_ids"]
        b = trained.encode(t).ids
        assert a == b, f"wrapped tokenizer differs from trained one on {t[:40]!r}: {a[:20]} vs {b[:20]}"


def save_tokenizer(hf, out: Path) -> None:
    hf.save_pretrained(out)
    stm = out / "special_tokens_map.json"
    if not stm.exists():  # transformers 5 no longer writes it; keep it for older readers
        stm.write_text(json.dumps({k: str(v) for k, v in hf.special_tokens_map.items()}, indent=2) + "\n")
    # drop files we do not need (vocab.txt / merges.txt are redundant with tokenizer.json)
    for extra in ("vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"):
        p = out / extra
        if p.exists():
            p.unlink()


# ------------------------------------------------------------------- weights

def rerandomize_(model: torch.nn.Module, seed: int, head_names: tuple[str, ...]) -> None:
    """Replace HF's tiny init (std 0.02, LN=1/0) with larger, non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        lname = name.lower()
        if "norm" in lname and name.endswith("weight"):
            new = torch.empty_like(p).uniform_(0.5, 1.5, generator=g)
        elif "norm" in lname and name.endswith("bias"):
            new = torch.randn(p.shape, generator=g) * 0.2
        elif "embeddings" in lname and p.dim() == 2:
            new = torch.randn(p.shape, generator=g) * 1.0
        elif p.dim() == 2:
            fan_in = p.shape[1]
            gain = 3.0 if any(name.startswith(h) for h in head_names) else 1.5
            new = torch.randn(p.shape, generator=g) * (gain / math.sqrt(fan_in))
        elif p.dim() == 1:
            new = torch.randn(p.shape, generator=g) * 0.1
        else:
            raise ValueError(f"unexpected parameter {name} {tuple(p.shape)}")
        p.copy_(new.to(p.dtype))


# -------------------------------------------------------------- reference runs

def versions() -> dict:
    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "device": "cpu",
        "dtype": "float32",
        "attn_implementation": ATTN,
    }
    return v


def floats(t: torch.Tensor) -> list:
    # float32 -> python float (exact), json writes shortest repr that round-trips
    return t.detach().to(torch.float64).tolist()


def tokenize_one(tok, text: str, max_length: int) -> dict:
    enc = tok(text, truncation=True, max_length=max_length, padding=False, return_tensors="pt")
    return enc


def tokenize_batch(tok, texts: list[str], max_length: int) -> dict:
    return tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def check_raw_tokenizer_json(tok_json: Path, hf_tok, texts: list[str], max_length: int) -> None:
    """What the Rust side does: tokenizers::Tokenizer::from_file + explicit truncation,
    padding disabled. Must give the same ids as the transformers tokenizer."""
    raw = Tokenizer.from_file(str(tok_json))
    raw.no_padding()
    raw.enable_truncation(max_length=max_length)
    for t in texts:
        a = hf_tok(t, truncation=True, max_length=max_length)["input_ids"]
        e = raw.encode(t, add_special_tokens=True)
        assert a == e.ids, f"tokenizer.json (raw) differs from AutoTokenizer on {t[:40]!r}"


def run_reference(forward, tok, texts: list[str], max_length: int) -> dict:
    """forward(encoding_dict) -> logits [B, C]."""
    pad_id = tok.pad_token_id
    single_ids, single_logits, untrunc_lens, extra_keys = [], [], [], set()
    for t in texts:
        enc = tokenize_one(tok, t, max_length)
        assert enc["input_ids"].shape[0] == 1
        extra_keys |= set(enc.keys())
        if "token_type_ids" in enc:
            assert int(enc["token_type_ids"].abs().sum()) == 0
        assert bool(enc["attention_mask"].all())
        single_ids.append(enc["input_ids"][0].tolist())
        single_logits.append(forward(enc)[0])
        untrunc_lens.append(len(tok(t, truncation=False)["input_ids"]))
    single_logits = torch.stack(single_logits)

    benc = tokenize_batch(tok, texts, max_length)
    padded_len = benc["input_ids"].shape[1]
    assert padded_len == max(len(x) for x in single_ids)
    for i, ids in enumerate(single_ids):
        row = benc["input_ids"][i].tolist()
        mask = benc["attention_mask"][i].tolist()
        assert row[: len(ids)] == ids and all(x == pad_id for x in row[len(ids):]), i
        assert mask == [1] * len(ids) + [0] * (padded_len - len(ids)), i
    batch_logits = forward(benc)

    single_probs = torch.softmax(single_logits, dim=-1)
    batch_probs = torch.softmax(batch_logits, dim=-1)
    dl = (single_logits - batch_logits).abs().max().item()
    dp = (single_probs - batch_probs).abs().max().item()
    assert dl < AGREE_TOL and dp < AGREE_TOL, f"single vs batch disagree: logits {dl}, probs {dp}"

    per_label_std = single_logits.std(dim=0)  # std across texts, per label
    cases = []
    for i, t in enumerate(texts):
        cases.append({
            "index": i,
            "text": t,
            "num_tokens_untruncated": untrunc_lens[i],
            "truncated": untrunc_lens[i] > max_length,
            "input_ids": single_ids[i],
            "logits_single": floats(single_logits[i]),
            "probs_single": floats(single_probs[i]),
            "logits_batch": floats(batch_logits[i]),
            "probs_batch": floats(batch_probs[i]),
        })
    return {
        "tokenizer_output_keys": sorted(extra_keys),
        "pad_token_id": pad_id,
        "batch_padded_length": padded_len,
        "max_abs_diff_single_vs_batch": {"logits": dl, "probs": dp},
        "logit_std_across_texts_per_label": floats(per_label_std),
        "logit_std_across_texts_min": float(per_label_std.min()),
        "mean_max_prob": float(single_probs.max(dim=-1).values.mean()),
        "texts": list(texts),
        "cases": cases,
        "_batch_logits": batch_logits,
    }


def write_json(path: Path, obj: dict) -> None:
    obj = {k: v for k, v in obj.items() if not k.startswith("_")}
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def assert_single_token_the(tok) -> None:
    ids = tok("the the the", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3 and tok.unk_token_id not in ids, ids


# -------------------------------------------------------------- tiny fixtures

TINY_COMMON = dict(hidden=32, layers=2, heads=4, intermediate=37)


def build_tiny(kind: str, out_root: Path, wp_tok, bl_tok, texts: list[str]) -> dict:
    out = out_root / f"tiny-{kind}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if kind == "bert":
        id2label = {0: "billing", 1: "refund", 2: "Technical Support", 3: "shipping"}
        tok = wp_tok
        cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, hidden_act="gelu", max_position_embeddings=512,
                         type_vocab_size=2, pad_token_id=tok.pad_token_id, layer_norm_eps=1e-12,
                         id2label=id2label, label2id={v: k for k, v in id2label.items()})
        seed, cls, heads = 101, BertForSequenceClassification, ("classifier",)
    elif kind == "distilbert":
        id2label = {0: "billing", 1: "Technical Support", 2: "account access"}
        # same WordPiece vocab, but DistilBertTokenizer (no token_type_ids in its outputs)
        tok = DistilBertTokenizer(vocab=wp_tok.get_vocab(), do_lower_case=True, model_max_length=MAX_LEN)
        cfg = DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                               activation="gelu", max_position_embeddings=512, sinusoidal_pos_embds=False,
                               pad_token_id=tok.pad_token_id,
                               id2label=id2label, label2id={v: k for k, v in id2label.items()})
        seed, cls, heads = 202, DistilBertForSequenceClassification, ("classifier",)
    elif kind == "roberta":
        id2label = {0: "billing", 1: "refund", 2: "Technical Support", 3: "shipping", 4: "other"}
        tok = bl_tok
        cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, hidden_act="gelu", max_position_embeddings=514,
                            type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                            layer_norm_eps=1e-5,
                            id2label=id2label, label2id={v: k for k, v in id2label.items()})
        assert tok.pad_token_id == 1
        seed, cls, heads = 303, RobertaForSequenceClassification, ("classifier.out_proj",)
    else:
        raise ValueError(kind)

    torch.manual_seed(seed)
    model = cls(cfg).eval()
    rerandomize_(model, seed, heads)
    model = model.to(torch.float32)
    # transformers 5 always writes safetensors (the old safe_serialization=True default)
    model.save_pretrained(out)
    assert (out / "model.safetensors").exists()
    save_tokenizer(tok, out)

    # ---- reload from disk exactly as a user would, compute the reference from that
    re_tok = AutoTokenizer.from_pretrained(out)
    re_model = AutoModelForSequenceClassification.from_pretrained(out, attn_implementation=ATTN).eval()
    assert type(re_model) is cls, type(re_model)
    sd0, sd1 = model.state_dict(), re_model.state_dict()
    for k, v in sd0.items():
        assert torch.equal(v, sd1[k]), f"reloaded weight differs: {k}"
    with safetensors.safe_open(str(out / "model.safetensors"), "pt") as f:
        for k in f.keys():
            assert f.get_slice(k).get_dtype() == "F32" or k.endswith("position_ids"), k
    assert re_tok.model_max_length == MAX_LEN
    assert_single_token_the(re_tok)
    # tokenizer on disk == in-memory tokenizer == raw tokenizer.json (what Rust loads)
    for t in texts:
        assert re_tok(t, truncation=True, max_length=MAX_LEN)["input_ids"] == \
            tok(t, truncation=True, max_length=MAX_LEN)["input_ids"]
    check_raw_tokenizer_json(out / "tokenizer.json", re_tok, texts, MAX_LEN)

    def fwd(enc):
        return re_model(**enc).logits

    ref = run_reference(fwd, re_tok, texts, MAX_LEN)
    # cross-check eager against sdpa
    sdpa = AutoModelForSequenceClassification.from_pretrained(out, attn_implementation="sdpa").eval()
    benc = tokenize_batch(re_tok, texts, MAX_LEN)
    d = (sdpa(**benc).logits - ref["_batch_logits"]).abs().max().item()
    assert d < SDPA_TOL, f"eager vs sdpa differ by {d}"
    assert ref["logit_std_across_texts_min"] > 0.1, ref["logit_std_across_texts_per_label"]
    assert any(c["truncated"] for c in ref["cases"])

    doc = {
        "fixture": f"tiny-{kind}",
        "generated_by": "scripts/make_reference.py",
        "versions": versions(),
        "architecture": cls.__name__,
        "model_type": cfg.model_type,
        "num_labels": len(id2label),
        "id2label": {str(k): v for k, v in id2label.items()},
        "truncation": {"max_length": MAX_LEN, "side": "right", "strategy": "longest_first",
                       "note": "tokenizer(text, truncation=True, max_length=512): content truncated so that "
                               "the sequence INCLUDING special tokens is <= 512"},
        "padding_side": "right",
        "eager_vs_sdpa_max_abs_diff": d,
        "seed": seed,
    }
    doc.update(ref)
    write_json(out / "reference.json", doc)
    return {"name": f"tiny-{kind}", "logit_std": ref["logit_std_across_texts_per_label"],
            "std_min": ref["logit_std_across_texts_min"], "mean_max_prob": ref["mean_max_prob"],
            "diff": ref["max_abs_diff_single_vs_batch"], "sdpa": d,
            "keys": ref["tokenizer_output_keys"], "vocab": len(re_tok)}


# -------------------------------------------------------------- MiniLM fixtures

MINILM_LABELS = {0: "Water Damage", 1: "theft", 2: "auto collision", 3: "Fire and Smoke", 4: "liability"}


def build_minilm(minilm_dir: Path, out_root: Path, texts: list[str]) -> list[dict]:
    out = out_root / "minilm-head"
    out.mkdir(parents=True, exist_ok=True)
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    assert_single_token_the(tok)
    for ml in (MAX_LEN, ST_MAX_SEQ_LEN):
        check_raw_tokenizer_json(minilm_dir / "tokenizer.json", tok, texts, ml)
    st_cfg = json.loads((minilm_dir / "sentence_bert_config.json").read_text())
    assert st_cfg["max_seq_length"] == ST_MAX_SEQ_LEN, st_cfg
    pool_cfg = json.loads((minilm_dir / "1_Pooling" / "config.json").read_text())
    assert pool_cfg["pooling_mode_mean_tokens"] and not pool_cfg["pooling_mode_cls_token"], pool_cfg
    results = []

    # ---- (a) pooler + classifier (BertForSequenceClassification)
    g = torch.Generator().manual_seed(4242)
    head = {
        "classifier.weight": (torch.randn(5, 384, generator=g) * 0.5).contiguous(),
        "classifier.bias": (torch.randn(5, generator=g) * 0.5).contiguous(),
    }
    safetensors.torch.save_file(head, str(out / "pooler_classifier.safetensors"))
    head = safetensors.torch.load_file(str(out / "pooler_classifier.safetensors"))
    model, info = BertForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=5, id2label=MINILM_LABELS, label2id={v: k for k, v in MINILM_LABELS.items()},
        attn_implementation=ATTN, output_loading_info=True)
    model.eval()
    missing = sorted(info["missing_keys"])
    assert missing == ["classifier.bias", "classifier.weight"], info
    assert not info.get("mismatched_keys"), info
    model.classifier.weight.copy_(head["classifier.weight"])
    model.classifier.bias.copy_(head["classifier.bias"])
    # every backbone tensor really came from the checkpoint
    with safetensors.safe_open(str(minilm_dir / "model.safetensors"), "pt") as f:
        sd = model.state_dict()
        for k in f.keys():
            if k.endswith("position_ids"):
                continue
            assert torch.equal(sd["bert." + k], f.get_tensor(k)), k

    ref = run_reference(lambda enc: model(**enc).logits, tok, texts, MAX_LEN)
    assert any(c["truncated"] for c in ref["cases"])
    doc = {
        "fixture": "minilm-head/pooler",
        "generated_by": "scripts/make_reference.py",
        "versions": versions(),
        "backbone": "sentence-transformers/all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2/model.safetensors, "
                    "BertModel keys without 'bert.' prefix)",
        "head_file": "pooler_classifier.safetensors",
        "architecture": "BertForSequenceClassification",
        "pipeline": "BertModel -> pooler: tanh(pooler.dense(hidden[:,0])) -> classifier (Linear 384->5) -> softmax",
        "num_labels": 5,
        "id2label": {str(k): v for k, v in MINILM_LABELS.items()},
        "truncation": {"max_length": MAX_LEN, "side": "right", "strategy": "longest_first"},
        "padding_side": "right",
        "head_seed": 4242,
        "head_init": "normal(0, 0.5) for weight and bias",
    }
    doc.update(ref)
    write_json(out / "reference_pooler.json", doc)
    results.append({"name": "minilm-head/pooler", "logit_std": ref["logit_std_across_texts_per_label"],
                    "std_min": ref["logit_std_across_texts_min"], "mean_max_prob": ref["mean_max_prob"],
                    "diff": ref["max_abs_diff_single_vs_batch"], "keys": ref["tokenizer_output_keys"]})
    del model

    # ---- (b) mean pooling -> L2 normalize -> linear
    g = torch.Generator().manual_seed(4343)
    dense = {
        "linear.weight": (torch.randn(5, 384, generator=g) * 0.5).contiguous(),
        "linear.bias": (torch.randn(5, generator=g) * 0.5).contiguous(),
    }
    safetensors.torch.save_file(dense, str(out / "mean_dense.safetensors"))
    dense = safetensors.torch.load_file(str(out / "mean_dense.safetensors"))
    backbone = BertModel.from_pretrained(minilm_dir, attn_implementation=ATTN).eval()

    def fwd_mean(enc):
        h = backbone(**enc).last_hidden_state                       # [B, T, 384]
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)           # [B, T, 1]
        summed = (h * m).sum(dim=1)
        counts = m.sum(dim=1).clamp(min=1e-9)                          # as sentence-transformers Pooling
        pooled = summed / counts
        normed = torch.nn.functional.normalize(pooled, p=2, dim=1)   # eps 1e-12, as st Normalize
        return normed @ dense["linear.weight"].T + dense["linear.bias"]

    ref = run_reference(fwd_mean, tok, texts, ST_MAX_SEQ_LEN)
    assert any(c["truncated"] for c in ref["cases"])
    doc = {
        "fixture": "minilm-head/mean",
        "generated_by": "scripts/make_reference.py",
        "versions": versions(),
        "backbone": "sentence-transformers/all-MiniLM-L6-v2 (models/all-MiniLM-L6-v2/model.safetensors)",
        "head_file": "mean_dense.safetensors",
        "pipeline": "BertModel last_hidden_state -> mean over tokens with attention_mask==1 "
                    "(sum / clamp(count, 1e-9)) -> L2 normalize (F.normalize, eps 1e-12) -> "
                    "linear: x @ linear.weight.T + linear.bias (identity activation, no tanh) -> softmax",
        "num_labels": 5,
        "id2label": {str(k): v for k, v in MINILM_LABELS.items()},
        "truncation": {"max_length": ST_MAX_SEQ_LEN, "side": "right", "strategy": "longest_first",
                       "note": "sentence_bert_config.json max_seq_length (256), including [CLS]/[SEP]"},
        "padding_side": "right",
        "head_seed": 4343,
        "head_init": "normal(0, 0.5) for weight and bias",
    }
    doc.update(ref)
    write_json(out / "reference_mean.json", doc)
    results.append({"name": "minilm-head/mean", "logit_std": ref["logit_std_across_texts_per_label"],
                    "std_min": ref["logit_std_across_texts_min"], "mean_max_prob": ref["mean_max_prob"],
                    "diff": ref["max_abs_diff_single_vs_batch"], "keys": ref["tokenizer_output_keys"]})
    return results


# ----------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures")
    ap.add_argument("--minilm", type=Path, default=REPO_ROOT / "models" / "all-MiniLM-L6-v2")
    ap.add_argument("--skip-minilm", action="store_true")
    args = ap.parse_args()

    v = versions()
    for k, want in DOCUMENTED_VERSIONS.items():
        if v[k] != want:
            print(f"WARNING: running {k} {v[k]}, docstring documents {want}; update the docstring",
                  file=sys.stderr)

    texts = base_texts()
    corpus = training_corpus()
    wp_tok, wp_trained = make_wordpiece_tokenizer(corpus)
    bl_tok, bl_trained = make_bytelevel_tokenizer(corpus)
    check_wrapper_matches_trained(wp_tok, wp_trained, texts + corpus[:50])
    check_wrapper_matches_trained(bl_tok, bl_trained, texts + corpus[:50])

    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for kind in ("bert", "distilbert", "roberta"):
        summary.append(build_tiny(kind, args.out, wp_tok, bl_tok, texts))
    if not args.skip_minilm:
        summary.extend(build_minilm(args.minilm, args.out, texts))

    for s in summary:
        print(json.dumps({k: (float(f"{x:.4g}") if isinstance(x, float) else x) for k, x in s.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
