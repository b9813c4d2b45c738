#!/usr/bin/env python3
"""Check that a model folder written by `taskbench train` loads in Hugging Face transformers
and gives the probabilities taskbench reported.

    python scripts/check_saved_model.py MODEL_DIR PREDICTIONS_JSONL [--limit N]

MODEL_DIR is either layout `train --head-only` writes: a HF BertForSequenceClassification
folder (loaded with AutoModelForSequenceClassification) or a sentence-transformers folder
with a Dense head (loaded with AutoModel, pooled as modules.json says, head applied by hand,
exactly as the folder's README shows). PREDICTIONS_JSONL is `taskbench eval --out`'s
predictions.jsonl for that model. Prints the max abs difference of probabilities and exits 1
above 1e-4. Needs torch, transformers and safetensors (the anchors venv has them).
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer


def hf_probs(path, texts, max_length):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    out = []
    for text in texts:
        enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            out.append(model(**enc).logits.softmax(-1)[0].tolist())
    return labels, out


def st_probs(path, texts):
    modules = json.load(open(os.path.join(path, "modules.json")))
    pooling = json.load(open(os.path.join(path, "1_Pooling", "config.json")))
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    dense_dir = next(m["path"] for m in modules if m["type"].endswith("Dense"))
    head = load_file(os.path.join(path, dense_dir, "model.safetensors"))
    max_length = json.load(open(os.path.join(path, "sentence_bert_config.json")))["max_seq_length"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    out = []
    for text in texts:
        enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        if pooling["pooling_mode_mean_tokens"]:
            mask = enc["attention_mask"].unsqueeze(-1).float()
            features = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        else:
            features = hidden[:, 0]
        if normalize:
            features = torch.nn.functional.normalize(features, dim=-1)
        logits = features @ head["linear.weight"].T + head["linear.bias"]
        out.append(logits.softmax(-1)[0].tolist())
    return labels, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("predictions")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.predictions)]
    rows = rows[: args.limit] if args.limit else rows
    texts = [r["text"] for r in rows]
    if os.path.exists(os.path.join(args.model_dir, "modules.json")):
        layout = "sentence-transformers + Dense"
        labels, probs = st_probs(args.model_dir, texts)
    else:
        layout = "AutoModelForSequenceClassification"
        labels, probs = hf_probs(args.model_dir, texts, 512)
    worst = 0.0
    agree = 0
    for row, p in zip(rows, probs):
        ours = [row["probabilities"][label] for label in labels]
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, p)))
        agree += labels[max(range(len(p)), key=p.__getitem__)] == row["predicted"]
    print(json.dumps({"layout": layout, "items": len(rows), "max_abs_diff": worst, "same_prediction": agree}))
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
