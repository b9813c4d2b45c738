//! Bad data files: each fails with exit code 2 and one `taskbench: ` line naming the file.

use crate::common::*;

#[test]
fn data_file_missing() {
    let s = Scratch::new();
    let data = s.path("nope.csv");
    let line = fails(&mut eval_tiny(&data), &["nope.csv"]);
    assert!(
        line.contains("cannot read") || line.contains("No such file") || line.contains("not found"),
        "{line}"
    );
}

#[test]
fn data_file_with_unsupported_extension() {
    let s = Scratch::new();
    let data = s.write("claims.xlsx", "id,text,label\n1,hello,billing\n");
    fails(
        &mut eval_tiny(&data),
        &["claims.xlsx", ".xlsx", ".csv", ".tsv", ".jsonl"],
    );
}

#[test]
fn csv_row_with_wrong_field_count_names_the_line() {
    let s = Scratch::new();
    let data = s.write(
        "bad.csv",
        "id,text,label\n1,my card was charged twice,billing\n2,I want my money back\n3,where is my parcel,shipping\n",
    );
    fails(
        &mut eval_tiny(&data),
        &["bad.csv", "line 3", "expected 3 fields", "found 2"],
    );
}

#[test]
fn header_only_csv_is_an_empty_dataset() {
    let s = Scratch::new();
    let data = s.write("empty.csv", "id,text,label\n");
    fails(&mut eval_tiny(&data), &["empty.csv", "no rows"]);
}

#[test]
fn jsonl_line_that_is_not_json_names_the_line() {
    let s = Scratch::new();
    let data = s.write(
        "bad.jsonl",
        "{\"text\": \"my card was charged twice\", \"label\": \"billing\"}\n\
         {\"text\": \"I want my money back\", \"label\": \"refund\"}\n\
         this is not json\n",
    );
    let line = fails(
        &mut eval_tiny(&data),
        &["bad.jsonl", "line 3", "not valid JSON"],
    );
    // The parser's own position ("at line 1 column 2" of the one-line document) contradicts
    // the file's line number; only line 3 may be cited.
    assert_eq!(
        line.matches("line ").count(),
        1,
        "only the file's line should be cited: {line}"
    );
}

#[test]
fn text_col_naming_a_missing_column_lists_the_columns() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = eval_tiny(&data);
    cmd.args(["--text-col", "body"]);
    fails(&mut cmd, &["d.csv", "\"body\"", "id, text, label"]);
}
