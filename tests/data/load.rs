//! `data::load` on real files: every format, column rules, and every error a user can hit.

use std::path::Path;

use crate::common::{chain, Files};
use sha2::{Digest, Sha256};
use taskbench::data::{load, DataError, Dataset, Format, LoadOptions};

fn labelled() -> LoadOptions {
    LoadOptions::default()
}

fn load_ok(path: &Path) -> Dataset {
    load(path, &labelled()).unwrap_or_else(|e| panic!("{}", chain(&e)))
}

fn load_err(path: &Path, opts: &LoadOptions) -> String {
    match load(path, opts) {
        Ok(d) => panic!("expected an error, loaded {} rows", d.examples.len()),
        Err(e) => chain(&e),
    }
}

fn texts(d: &Dataset) -> Vec<&str> {
    d.examples.iter().map(|e| e.text.as_str()).collect()
}

fn labels(d: &Dataset) -> Vec<&str> {
    d.examples
        .iter()
        .map(|e| e.label.as_deref().unwrap_or("-"))
        .collect()
}

fn ids(d: &Dataset) -> Vec<&str> {
    d.examples.iter().map(|e| e.id.as_str()).collect()
}

// ---- formats ----------------------------------------------------------------------------------

#[test]
fn csv_with_id_column() {
    let f = Files::new();
    let content = "id,text,label\nc1,Pipe burst in kitchen,water_damage\nc2,Rear-ended at a light,auto_collision\n";
    let path = f.write("claims.csv", content);
    let d = load_ok(&path);
    assert_eq!(d.format, Format::Csv);
    assert_eq!(
        (d.text_col.as_str(), d.label_col.as_deref()),
        ("text", Some("label"))
    );
    assert_eq!(ids(&d), ["c1", "c2"]);
    assert_eq!(
        texts(&d),
        ["Pipe burst in kitchen", "Rear-ended at a light"]
    );
    assert_eq!(labels(&d), ["water_damage", "auto_collision"]);
    assert_eq!(d.examples[1].line, 3);
    assert_eq!(d.path, path);
    assert_eq!(d.sha256, hex::encode(Sha256::digest(content.as_bytes())));
}

#[test]
fn tsv_keeps_quotes_inside_text() {
    let f = Files::new();
    let path = f.write(
        "sms.tsv",
        "label\ttext\nham\t\"Hi\" he said, ok\nspam\tWIN a 50\" TV! Txt \"YES\nham\tsee you \"later\"\n",
    );
    let d = load_ok(&path);
    assert_eq!(d.format, Format::Tsv);
    assert_eq!(
        texts(&d),
        [
            "\"Hi\" he said, ok",
            "WIN a 50\" TV! Txt \"YES",
            "see you \"later\""
        ]
    );
    assert_eq!(labels(&d), ["ham", "spam", "ham"]);
    assert_eq!(d.examples[2].line, 4);
}

#[test]
fn tab_extension_is_tsv() {
    let f = Files::new();
    let d = load_ok(&f.write("x.TAB", "text\tlabel\na\tb\n"));
    assert_eq!(d.format, Format::Tsv);
}

#[test]
fn jsonl_with_integer_labels_numeric_ids_and_blank_lines() {
    let f = Files::new();
    let path = f.write(
        "tweets.jsonl",
        "{\"id\": 10, \"text\": \"$AAPL up\", \"label\": 1}\n\n   \n{\"id\": \"t-2\", \"text\": \"$X down\", \"label\": 0, \"extra\": [1]}\n",
    );
    let d = load_ok(&path);
    assert_eq!(d.format, Format::Jsonl);
    assert_eq!(ids(&d), ["10", "t-2"]);
    assert_eq!(labels(&d), ["1", "0"]);
    assert_eq!(d.examples[1].line, 4);
}

#[test]
fn ndjson_ids_default_to_record_numbers_not_line_numbers() {
    let f = Files::new();
    let path = f.write(
        "a.ndjson",
        "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"text\": \"b\", \"label\": \"y\"}\n",
    );
    let d = load_ok(&path);
    assert_eq!(ids(&d), ["1", "2"]);
    assert_eq!(d.examples[1].line, 3);
}

#[test]
fn bom_is_stripped_but_hashed() {
    let f = Files::new();
    let content = b"\xEF\xBB\xBFtext,label\nhello,greet\n";
    let d = load_ok(&f.write("bom.csv", content));
    assert_eq!(d.text_col, "text");
    assert_eq!(texts(&d), ["hello"]);
    assert_eq!(d.sha256, hex::encode(Sha256::digest(content)));

    let d = load_ok(&f.write(
        "bom.jsonl",
        b"\xEF\xBB\xBF{\"text\": \"hi\", \"label\": \"greet\"}\n",
    ));
    assert_eq!(labels(&d), ["greet"]);
}

#[test]
fn quoted_multiline_csv_fields_and_later_line_numbers() {
    let f = Files::new();
    let path = f.write(
        "notes.csv",
        "text,label\n\"Adjuster note:\nroof torn, \"\"shingles\"\" gone\",storm_damage\nplain,theft_burglary\n,\n",
    );
    let err = load_err(&path, &labelled());
    // The empty row is on line 5: the quoted field spans lines 2 and 3.
    assert_eq!(
        err,
        format!(
            "{}: line 5: empty label in column \"label\"",
            path.display()
        )
    );

    let path = f.write(
        "notes.csv",
        "text,label\n\"Adjuster note:\nroof torn, \"\"shingles\"\" gone\",storm_damage\nplain,theft_burglary\n",
    );
    let d = load_ok(&path);
    assert_eq!(texts(&d)[0], "Adjuster note:\nroof torn, \"shingles\" gone");
    assert_eq!((d.examples[0].line, d.examples[1].line), (2, 4));
}

#[test]
fn crlf_and_trimmed_labels() {
    let f = Files::new();
    let d = load_ok(&f.write("w.csv", "text, label \r\n a ,  fire \r\nb,water\r\n"));
    assert_eq!(texts(&d), [" a ", "b"]);
    assert_eq!(labels(&d), ["fire", "water"]);
}

#[test]
fn label_order_and_counts_are_first_seen() {
    let f = Files::new();
    let d = load_ok(&f.write("c.csv", "text,label\na,b\nc,a\nd,b\ne,c\n"));
    assert_eq!(d.labels(), ["b", "a", "c"]);
    assert_eq!(
        d.label_counts(),
        [
            ("b".to_string(), 2),
            ("a".to_string(), 1),
            ("c".to_string(), 1)
        ]
    );
    assert!(d.is_labelled());
}

// ---- columns ----------------------------------------------------------------------------------

#[test]
fn default_columns_case_insensitive_and_in_priority_order() {
    let f = Files::new();
    let d = load_ok(&f.write("c.csv", "ID,Prompt,Utterance,Target,Intent\n7,p,u,t,i\n"));
    assert_eq!(
        (d.text_col.as_str(), d.label_col.as_deref()),
        ("Utterance", Some("Intent"))
    );
    assert_eq!((ids(&d)[0], texts(&d)[0], labels(&d)[0]), ("7", "u", "i"));
}

#[test]
fn column_overrides() {
    let f = Files::new();
    let path = f.write(
        "c.csv",
        "text,label,body,team,claim_no\nx,y,the body,Property,C-9\n",
    );
    let opts = LoadOptions {
        text_col: Some("Body".into()),
        label_col: Some("team".into()),
        id_col: Some("claim_no".into()),
        allow_unlabelled: false,
    };
    let d = load(&path, &opts).unwrap();
    assert_eq!(
        (d.text_col.as_str(), d.label_col.as_deref()),
        ("body", Some("team"))
    );
    assert_eq!(
        (ids(&d)[0], texts(&d)[0], labels(&d)[0]),
        ("C-9", "the body", "Property")
    );
}

#[test]
fn jsonl_overrides_use_keys() {
    let f = Files::new();
    let path = f.write("q.jsonl", "{\"q\": \"hi\", \"y\": \"greet\"}\n");
    let opts = LoadOptions {
        text_col: Some("q".into()),
        label_col: Some("y".into()),
        ..LoadOptions::default()
    };
    let d = load(&path, &opts).unwrap();
    assert_eq!((texts(&d)[0], labels(&d)[0]), ("hi", "greet"));
}

#[test]
fn missing_named_column_lists_existing_columns() {
    let f = Files::new();
    let path = f.write("claims.csv", "text,label\na,b\n");
    let opts = LoadOptions {
        id_col: Some("claim_id".into()),
        ..LoadOptions::default()
    };
    assert_eq!(
        load_err(&path, &opts),
        format!(
            "{}: no id column \"claim_id\"; the columns are: text, label",
            path.display()
        )
    );
}

#[test]
fn no_text_column_lists_what_was_tried() {
    let f = Files::new();
    let path = f.write("claims.csv", "body,label\na,b\n");
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!(
            "{}: no text column (looked for text, sentence,",
            path.display()
        )),
        "{err}"
    );
    assert!(
        err.ends_with("the columns are: body, label. Name it with --text-col"),
        "{err}"
    );
}

#[test]
fn jsonl_missing_column_lists_keys() {
    let f = Files::new();
    let path = f.write("a.jsonl", "{\"body\": \"a\", \"label\": \"x\"}\n");
    let err = load_err(&path, &labelled());
    assert!(
        err.contains("no text column") && err.contains("the columns are: body, label"),
        "{err}"
    );
}

#[test]
fn unlabelled_data_only_when_allowed() {
    let f = Files::new();
    let path = f.write("u.csv", "text\nfirst\nsecond\n");
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!("{}: no label column", path.display())),
        "{err}"
    );
    assert!(err.contains("Name it with --label-col"), "{err}");

    let opts = LoadOptions {
        allow_unlabelled: true,
        ..LoadOptions::default()
    };
    let d = load(&path, &opts).unwrap();
    assert!(!d.is_labelled());
    assert_eq!(labels(&d), ["-", "-"]);
    assert!(d.labels().is_empty());

    let d = load(&f.write("u.jsonl", "{\"text\": \"a\"}\n"), &opts).unwrap();
    assert_eq!(d.label_col, None);
}

// ---- errors -----------------------------------------------------------------------------------

#[test]
fn missing_file_names_path_and_os_reason() {
    let f = Files::new();
    let path = f.dir.path().join("nope.csv");
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!("{}: cannot read the file: ", path.display())),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    let e = load(&path, &labelled()).unwrap_err();
    assert!(
        std::error::Error::source(&e).is_some(),
        "the OS error is kept as the source"
    );
}

#[test]
fn directory_is_unreadable() {
    let f = Files::new();
    let path = f.dir.path().join("dir.csv");
    std::fs::create_dir(&path).unwrap();
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!("{}: cannot read the file: ", path.display())),
        "{err}"
    );
}

#[test]
fn unknown_extension_lists_supported_ones() {
    let f = Files::new();
    let path = f.write("claims.txt", "text\tlabel\na\tb\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: unknown file type \".txt\"; supported: .csv, .tsv, .tab, .jsonl, .ndjson",
            path.display()
        )
    );
}

#[test]
fn empty_files() {
    let f = Files::new();
    for (name, content) in [
        ("e.csv", &b""[..]),
        ("e.tsv", b"\n\n"),
        ("e.jsonl", b"\xEF\xBB\xBF \n"),
    ] {
        let path = f.write(name, content);
        assert_eq!(
            load_err(&path, &labelled()),
            format!("{}: the file is empty", path.display())
        );
    }
}

#[test]
fn header_without_rows() {
    let f = Files::new();
    let path = f.write("h.csv", "text,label\n\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!("{}: no rows of data", path.display())
    );
}

#[test]
fn too_few_fields_names_line_and_header() {
    let f = Files::new();
    let mut content = String::from("text,label,id\n");
    for i in 2..14 {
        content.push_str(&format!("row {i},a,{i}\n"));
    }
    content.push_str("row 14,a\n");
    let path = f.write("claims.csv", content);
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: line 14: expected 3 fields (text,label,id), found 2",
            path.display()
        )
    );
}

#[test]
fn unquoted_comma_hints_at_quoting() {
    let f = Files::new();
    let path = f.write("claims.csv", "text,label\nhail, then wind,storm\n");
    let err = load_err(&path, &labelled());
    assert!(err.starts_with(&format!(
        "{}: line 2: expected 2 fields (text,label), found 3",
        path.display()
    )));
    assert!(err.ends_with("must be in double quotes"), "{err}");
}

#[test]
fn tsv_field_count_error() {
    let f = Files::new();
    let path = f.write("s.tsv", "label\ttext\nham\tone\ttwo\n");
    let err = load_err(&path, &labelled());
    assert_eq!(
        err,
        format!(
            "{}: line 2: expected 2 fields (label,text), found 3; a field cannot contain a tab",
            path.display()
        )
    );
}

#[test]
fn empty_label_cell_names_line_and_column() {
    let f = Files::new();
    let path = f.write("claims.csv", "text,Category\na,x\nb,\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: line 3: empty label in column \"Category\"",
            path.display()
        )
    );
}

#[test]
fn empty_id_cell_is_an_error() {
    let f = Files::new();
    let path = f.write("claims.csv", "id,text,label\n1,a,x\n ,b,y\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!("{}: line 3: empty id in column \"id\"", path.display())
    );
}

#[test]
fn duplicate_ids_name_the_id_and_both_lines() {
    let f = Files::new();
    let path = f.write("claims.csv", "id,text,label\nA1,a,x\nA2,b,y\n\"A1\",c,z\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: id \"A1\" is on line 2 and on line 4; ids must be unique",
            path.display()
        )
    );
    let path = f.write("claims.jsonl", "{\"id\": 5, \"text\": \"a\", \"label\": 1}\n{\"id\": \"5\", \"text\": \"b\", \"label\": 1}\n");
    assert!(load_err(&path, &labelled()).contains("id \"5\" is on line 1 and on line 2"));
}

#[test]
fn invalid_utf8_names_the_line() {
    let f = Files::new();
    let path = f.write("latin1.csv", b"text,label\nok,a\nCaf\xE9 fire,b\n");
    let err = load_err(&path, &labelled());
    assert_eq!(
        err,
        format!(
            "{}: line 3: not valid UTF-8 (byte 0xE9 at byte 4 of the line); save the file as UTF-8",
            path.display()
        )
    );
}

#[test]
fn unclosed_quote_is_caught() {
    let f = Files::new();
    // The quote before "oops" is never closed, so the rest of the file is one field.
    let path = f.write("q.csv", "text,label\na,x\n\"oops,y\nb,z\n");
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!("{}: line 3: expected 2 fields", path.display())),
        "{err}"
    );
}

#[test]
fn jsonl_line_that_is_not_an_object() {
    let f = Files::new();
    let path = f.write("a.jsonl", "{\"text\": \"a\", \"label\": \"x\"}\n[1, 2]\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: line 2: expected a JSON object, found an array",
            path.display()
        )
    );
}

#[test]
fn jsonl_invalid_json_names_line_and_keeps_cause() {
    let f = Files::new();
    let path = f.write(
        "a.jsonl",
        "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"text\": \"b\" \"label\": \"y\"}\n",
    );
    let err = load_err(&path, &labelled());
    assert!(
        err.starts_with(&format!("{}: line 3: not valid JSON (", path.display())),
        "{err}"
    );
    assert!(err.contains("expected `,` or `}`"), "{err}");
}

#[test]
fn jsonl_missing_text_field() {
    let f = Files::new();
    let path = f.write(
        "a.jsonl",
        "{\"text\": \"a\", \"label\": \"x\"}\n{\"label\": \"y\"}\n",
    );
    assert_eq!(
        load_err(&path, &labelled()),
        format!("{}: line 2: no \"text\" field", path.display())
    );
}

#[test]
fn jsonl_wrong_types() {
    let f = Files::new();
    let path = f.write("a.jsonl", "{\"text\": 5, \"label\": \"x\"}\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: line 1: field \"text\" must be a string, found a number",
            path.display()
        )
    );
    let path = f.write("b.jsonl", "{\"text\": \"a\", \"label\": true}\n");
    assert_eq!(
        load_err(&path, &labelled()),
        format!(
            "{}: line 1: field \"label\" must be a string or an integer, found true or false",
            path.display()
        )
    );
    let path = f.write(
        "c.jsonl",
        "{\"id\": [1], \"text\": \"a\", \"label\": \"x\"}\n",
    );
    assert!(load_err(&path, &labelled())
        .ends_with("field \"id\" must be a string or a number, found an array"));
}

#[test]
fn errors_are_data_error_variants() {
    let f = Files::new();
    let path = f.write("claims.csv", "text,label\na,b,c\n");
    assert!(matches!(
        load(&path, &labelled()),
        Err(DataError::FieldCount {
            line: 2,
            expected: 2,
            found: 3,
            ..
        })
    ));
}
