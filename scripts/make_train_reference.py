"""Reference for tests/finetune/pytorch_steps.rs: six full fine-tuning steps of
all-MiniLM-L6-v2 with HF's sequence-classification head (pooler + classifier) in PyTorch,
dropout off, on the first 48 rows of datasets/claims/train.csv in batches of 8, truncated at
64 tokens, torch.optim.AdamW (lr 1e-4, weight decay 0.01). Writes the classifier's initial
weights (so taskbench starts from the same head), the loss of every step before its update,
and the logits of the next 8 rows after the last step.

Run with the anchors venv from the repository root:
~/.cache/taskbench-anchors/bin/python scripts/make_train_reference.py
"""
import csv
import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL = "models/all-MiniLM-L6-v2"
DATA = "datasets/claims/train.csv"
OUT = "tests/fixtures/minilm-train-steps.json"
BATCH, STEPS, MAX_LEN, LR, DECAY = 8, 6, 64, 1e-4, 0.01

torch.set_num_threads(2)
torch.manual_seed(0)
rows = list(csv.DictReader(open(DATA, encoding="utf-8")))
labels = sorted({r["label"] for r in rows})
texts = [r["text"] for r in rows]
targets = [labels.index(r["label"]) for r in rows]

tok = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForSequenceClassification.from_pretrained(
    MODEL, num_labels=len(labels), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
)
init = {
    "classifier.weight": model.classifier.weight.detach().flatten().tolist(),
    "classifier.bias": model.classifier.bias.detach().flatten().tolist(),
}
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=DECAY)


def encode(lo, hi):
    return tok(texts[lo:hi], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")


model.train()
losses = []
for step in range(STEPS):
    lo, hi = step * BATCH, (step + 1) * BATCH
    out = model(**encode(lo, hi), labels=torch.tensor(targets[lo:hi]))
    losses.append(out.loss.item())
    out.loss.backward()
    opt.step()
    opt.zero_grad()

model.eval()
held_out = (STEPS * BATCH, (STEPS + 1) * BATCH)
with torch.no_grad():
    logits = model(**encode(*held_out)).logits
json.dump(
    {
        "source": "scripts/make_train_reference.py (PyTorch "
        + torch.__version__
        + ", transformers "
        + __import__("transformers").__version__
        + ")",
        "model": MODEL,
        "data": DATA,
        "labels": labels,
        "batch": BATCH,
        "steps": STEPS,
        "max_len": MAX_LEN,
        "lr": LR,
        "weight_decay": DECAY,
        "initial_head": init,
        "losses": losses,
        "held_out_rows": list(held_out),
        "held_out_logits": logits.tolist(),
    },
    open(OUT, "w"),
)
print("losses", losses)
print("held-out logits[0]", logits[0].tolist())
