#!/usr/bin/env python3
"""Check the hand-written claims dataset and write its fixed train/test split.

Usage (from the repository root; python3 standard library only):

    python3 scripts/split_claims.py          # check raw/, then write the outputs
    python3 scripts/split_claims.py --check  # check raw/ and that the outputs are up to date

Input:
    datasets/claims/README.md      the table under "## Claim types" is the list of labels
                                   (first column) and their one-line definitions
                                   (second column)
    datasets/claims/raw/*.jsonl    one {"text": ..., "label": ...} object per line

Checks (every problem is reported, with file and line, before exiting 1):
    - each line is valid JSON: an object with exactly the keys "text" and "label"
    - "text" is a non-empty string, no leading/trailing whitespace, no control
      characters (so no line breaks)
    - "label" is one of the labels in the README table
    - no duplicate texts (compared case-insensitively, whitespace collapsed)
    - no near-duplicates: difflib.SequenceMatcher ratio > 0.9 between any two
      texts (same normalisation), across all labels
    - every label has more than TEST_PER_LABEL examples

Output (all UTF-8 without BOM, "\\n" line endings):
    datasets/claims/train.csv      header id,text,label; rows sorted by id
    datasets/claims/test.csv       same; exactly TEST_PER_LABEL rows per label
    datasets/claims/labels.json    the labels in alphabetical order, each with
                                   its definition from the README

Ids: all examples are sorted by label (alphabetically), then by the SHA-256 hex
digest of the UTF-8 text, and numbered claim-0001, claim-0002, ... in that
order. Ids depend only on the content of raw/, not on file or line order.
Adding or removing an example renumbers the examples after it.

Split: within each label, examples are ranked by SHA-256 of
"<SEED>:<text>" and the first TEST_PER_LABEL go to test, the rest to train.
This is a seeded, stratified sample that does not depend on Python's random
module, so it gives the same split on every Python version; a given example
stays on its side of the split when other examples are added or removed.

CSV: Python's csv module, QUOTE_MINIMAL (RFC 4180 quoting: a field is quoted
when it contains a comma, a double quote or a line break; quotes are doubled),
lineterminator "\\n". Running the script twice gives byte-identical files.
"""

import csv
import difflib
import hashlib
import io
import json
import re
import sys
import unicodedata
from pathlib import Path

SEED = "taskbench-claims-v1"
TEST_PER_LABEL = 35
NEAR_DUPLICATE_RATIO = 0.9
ID_PREFIX = "claim-"

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "claims"
RAW = DATA / "raw"
README = DATA / "README.md"

# A row of the README's "Claim types" table: | `label` | definition | includes | excludes |
TABLE_ROW = re.compile(r"^\|\s*`([a-z][a-z0-9_]*)`\s*\|\s*([^|]+?)\s*\|")


def read_labels():
    """The (label, definition) pairs of the README table, in table order."""
    labels = []
    in_section = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_section = line.strip() == "## Claim types"
            continue
        m = TABLE_ROW.match(line)
        if in_section and m:
            labels.append((m.group(1), m.group(2)))
    names = [name for name, _ in labels]
    if not labels:
        sys.exit(f'{README}: no label table under "## Claim types" (rows like | `label` | definition | ... |)')
    if len(set(names)) != len(names):
        sys.exit(f"{README}: a label appears twice in the table: {names}")
    return labels


def normalise(text):
    return " ".join(text.lower().split())


def has_control(text):
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text)


def read_raw(label_names, errors):
    """All examples as dicts with text, label and where (file:line)."""
    files = sorted(RAW.glob("*.jsonl"))
    if not files:
        errors.append(f"{RAW}: no .jsonl files")
    examples = []
    for path in files:
        rel = path.relative_to(ROOT)
        raw = path.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            errors.append(f"{rel}: starts with a UTF-8 BOM")
            raw = raw[3:]
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append(f"{rel}: not UTF-8: {e}")
            continue
        for n, line in enumerate(content.split("\n"), start=1):
            where = f"{rel}:{n}"
            if line.strip() == "":
                if line != "" or n != content.count("\n") + 1:
                    errors.append(f"{where}: blank line")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: invalid JSON: {e}")
                continue
            if not isinstance(obj, dict) or set(obj) != {"text", "label"}:
                keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                errors.append(f'{where}: expected an object with keys "text" and "label", found {keys}')
                continue
            text, label = obj["text"], obj["label"]
            ok = True
            if not isinstance(text, str) or not text.strip():
                errors.append(f"{where}: text is empty or not a string")
                ok = False
            elif text != text.strip():
                errors.append(f"{where}: text has leading or trailing whitespace")
                ok = False
            elif has_control(text):
                errors.append(f"{where}: text contains a control character or line break")
                ok = False
            if label not in label_names:
                errors.append(f"{where}: label {label!r} is not one of {sorted(label_names)}")
                ok = False
            if ok:
                examples.append({"text": text, "label": label, "where": where})
    return examples


def check_duplicates(examples, errors):
    seen = {}
    for ex in examples:
        key = normalise(ex["text"])
        if key in seen:
            errors.append(f"{ex['where']}: duplicate of {seen[key]['where']}")
        else:
            seen[key] = ex
    unique = list(seen.values())
    norm = [normalise(ex["text"]) for ex in unique]
    for i in range(len(unique)):
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(norm[i])
        for j in range(i + 1, len(unique)):
            matcher.set_seq1(norm[j])
            # real_quick_ratio and quick_ratio are upper bounds of ratio.
            if (
                matcher.real_quick_ratio() > NEAR_DUPLICATE_RATIO
                and matcher.quick_ratio() > NEAR_DUPLICATE_RATIO
                and matcher.ratio() > NEAR_DUPLICATE_RATIO
            ):
                errors.append(
                    f"{unique[j]['where']}: near-duplicate of {unique[i]['where']} "
                    f"(difflib ratio {matcher.ratio():.3f} > {NEAR_DUPLICATE_RATIO})"
                )


def sha256(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def assign_ids(examples):
    ordered = sorted(examples, key=lambda ex: (ex["label"], sha256(ex["text"])))
    width = max(4, len(str(len(ordered))))
    for n, ex in enumerate(ordered, start=1):
        ex["id"] = f"{ID_PREFIX}{n:0{width}d}"
    return ordered


def split(ordered, label_names):
    test_ids = set()
    for label in sorted(label_names):
        group = [ex for ex in ordered if ex["label"] == label]
        ranked = sorted(group, key=lambda ex: sha256(f"{SEED}:{ex['text']}"))
        test_ids.update(ex["id"] for ex in ranked[:TEST_PER_LABEL])
    train = [ex for ex in ordered if ex["id"] not in test_ids]
    test = [ex for ex in ordered if ex["id"] in test_ids]
    return train, test


def csv_bytes(rows):
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(["id", "text", "label"])
    for ex in sorted(rows, key=lambda ex: ex["id"]):
        writer.writerow([ex["id"], ex["text"], ex["label"]])
    return buf.getvalue().encode("utf-8")


def labels_bytes(labels):
    entries = [{"label": name, "definition": definition} for name, definition in sorted(labels)]
    return (json.dumps(entries, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def main(argv):
    check_only = argv[1:] == ["--check"]
    if argv[1:] and not check_only:
        sys.exit(__doc__)

    labels = read_labels()
    label_names = {name for name, _ in labels}
    errors = []
    examples = read_raw(label_names, errors)
    check_duplicates(examples, errors)
    for label in sorted(label_names):
        count = sum(ex["label"] == label for ex in examples)
        if count <= TEST_PER_LABEL:
            errors.append(f"label {label}: {count} examples, need more than {TEST_PER_LABEL}")
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        sys.exit(f"{len(errors)} problem(s) in {RAW.relative_to(ROOT)}; nothing written")

    ordered = assign_ids(examples)
    train, test = split(ordered, label_names)
    outputs = {
        DATA / "train.csv": csv_bytes(train),
        DATA / "test.csv": csv_bytes(test),
        DATA / "labels.json": labels_bytes(labels),
    }

    stale = []
    for path, data in outputs.items():
        current = path.read_bytes() if path.exists() else None
        if current == data:
            continue
        if check_only:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_bytes(data)
    if stale:
        sys.exit(f"out of date (run python3 scripts/split_claims.py): {', '.join(stale)}")

    print(f"{len(ordered)} examples, {len(label_names)} labels: {len(train)} train, {len(test)} test")
    for label in sorted(label_names):
        n_train = sum(ex["label"] == label for ex in train)
        n_test = sum(ex["label"] == label for ex in test)
        print(f"  {label:20} train {n_train:4}  test {n_test:3}")
    print("up to date" if check_only else "wrote " + ", ".join(str(p.relative_to(ROOT)) for p in outputs))


if __name__ == "__main__":
    main(sys.argv)
