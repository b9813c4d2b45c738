//! `taskbench run SUITE.toml` and `taskbench report RUN_DIR` end to end: every kind of model
//! (a head trained here, a local generative model, one served over HTTP in-process, an
//! OpenAI-compatible API with and without a price, an API whose key is not set), reuse on a
//! rerun, the report rebuilt from the files alone, and the suite's bad inputs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
#[path = "../support/browser.rs"]
#[allow(dead_code)]
mod browser;
use crate::remote::{Server, KEY};

const TRAIN: &str = "text,label\n\
The kitchen caught fire last night,fire\n\
Smoke from the toaster blackened the walls,fire\n\
A candle set the curtains alight,fire\n\
The garage burned down after an electrical fault,fire\n\
Flames spread from the barbecue to the fence,fire\n\
Water came through the ceiling,water\n\
A pipe burst under the sink,water\n\
The washing machine flooded the utility room,water\n\
The bathtub overflowed into the flat below,water\n\
A leaking water heater soaked the carpet,water\n\
Someone broke into the shed,theft\n\
My bike was stolen from the garage,theft\n\
Thieves took the laptop from my bag,theft\n\
A parcel was taken from the porch,theft\n\
Burglars forced the back door and stole jewellery,theft\n";

const TEST: &str = "id,text,label\n\
t1,The oven caught fire and smoke filled the house,fire\n\
t2,Sparks from the fireplace burned the rug,fire\n\
t3,The dishwasher leaked all over the floor,water\n\
t4,A frozen pipe split and flooded the cellar,water\n\
t5,My phone was stolen on the train,theft\n\
t6,Someone took the tools from my van,theft\n\
t7,A fire in the chimney damaged the roof,fire\n\
t8,Water dripped from the upstairs toilet,water\n";

const PRICING: &str = r#"[models."openai:priced"]
input_per_mtok = 0.15
output_per_mtok = 0.60
as_of = "2025-08-07"
source = "https://example.test/pricing"
"#;

/// A suite over TRAIN / TEST with every kind of model; `api_url` is a loopback `taskbench
/// serve` standing in for a hosted API.
fn suite_text(api_url: &str) -> String {
    let minilm = minilm().display().to_string();
    let llama = root()
        .join("tests/fixtures/tiny-llama")
        .display()
        .to_string();
    format!(
        r#"name = "tiny"
[data]
train = "train.csv"
test = "test.csv"
[goals]
slo_latency_ms = 5000
accuracy_floor = 0.9
[cost_matrix]
default = 2.0
pairs = [{{ gold = "fire", predicted = "water", usd = 50.0 }}]
[costs]
hourly_usd = 0.09
monthly_hosting_usd = 65
pricing = "pricing.toml"
[[models]]
name = "head"
base = "{minilm}"
train = "head-only"
pooling = "mean"
[[models]]
name = "llama-score"
model = "{llama}"
method = "score"
[[models]]
name = "llama-served"
serve = "{llama}"
max_tokens = 4
[[models]]
name = "priced"
model = "openai:priced"
base_url = "{api_url}"
max_tokens = 4
[[models]]
name = "unpriced"
model = "openai:unpriced"
base_url = "{api_url}"
max_tokens = 4
"#
    )
}

struct Setup {
    scratch: Scratch,
    suite: PathBuf,
    out: PathBuf,
}

fn setup(api_url: &str) -> Setup {
    let scratch = Scratch::new();
    scratch.write("train.csv", TRAIN);
    scratch.write("test.csv", TEST);
    scratch.write("pricing.toml", PRICING);
    let suite = scratch.write("suite.toml", suite_text(api_url));
    let out = scratch.path("run");
    Setup {
        scratch,
        suite,
        out,
    }
}

fn run_suite(s: &Setup) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .arg("run")
        .arg(&s.suite)
        .arg("--out")
        .arg(&s.out)
        .args(["--threads", "2"]);
    cmd
}

fn statuses(run_dir: &Path) -> Vec<(String, String)> {
    let run = read_json(&run_dir.join("run.json"));
    run["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn model<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no model {name} in {summary:#}"))
}

#[test]
fn a_suite_runs_every_kind_of_model_reuses_them_and_rebuilds_its_report() {
    let server = Server::start();
    let s = setup(&server.base_url);
    let (stdout, stderr) = succeeds(run_suite(&s).env("OPENAI_API_KEY", KEY));
    assert!(stdout.contains("Verdict"), "{stdout}");
    assert!(stdout.contains("report.html"), "{stdout}");
    assert_no_key_anywhere(&s.out, &[&stdout, &stderr]);
    let evaluated = statuses(&s.out);
    for name in ["head", "llama-score", "llama-served", "priced", "unpriced"] {
        assert!(
            evaluated.contains(&(name.to_string(), "evaluated".to_string())),
            "{name}: {evaluated:?}"
        );
    }

    let summary = read_json(&s.out.join("summary.json"));
    assert_eq!(summary["schema_version"], 1);
    assert_eq!(
        summary["models"].as_array().unwrap().len(),
        5,
        "{summary:#}"
    );
    // The report's point estimates are the results files' own.
    for name in ["head", "llama-score", "llama-served", "priced", "unpriced"] {
        let results = read_json(&s.out.join("evals").join(name).join("results.json"));
        let m = model(&summary, name);
        let close =
            |a: &Value, b: &Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-12;
        assert!(
            close(&m["accuracy"], &results["metrics"]["accuracy"]),
            "{name}: {m:#}"
        );
        assert!(
            close(&m["macro_f1"], &results["metrics"]["macro_f1"]),
            "{name}: {m:#}"
        );
        let (lo, hi) = (
            m["accuracy_ci"]["lo"].as_f64().unwrap(),
            m["accuracy_ci"]["hi"].as_f64().unwrap(),
        );
        let acc = m["accuracy"].as_f64().unwrap();
        assert!(lo <= acc && acc <= hi, "{name}: {m:#}");
    }
    // Local models are priced by the machine, the priced API by its tokens; the unpriced one
    // runs and says its cost is unknown.
    assert!(model(&summary, "head")["usd_per_1000"].as_f64().unwrap() > 0.0);
    assert!(
        model(&summary, "llama-served")["usd_per_1000"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(model(&summary, "priced")["usd_per_1000"].as_f64().unwrap() > 0.0);
    assert!(model(&summary, "unpriced")["usd_per_1000"].is_null());
    assert!(
        model(&summary, "unpriced")["cost_basis"]
            .as_str()
            .unwrap()
            .contains("cost unknown"),
        "{summary:#}"
    );
    assert!(
        model(&summary, "head")["training"]["seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Every other model is compared with the most accurate one on the same items.
    assert_eq!(
        summary["comparisons"].as_array().unwrap().len(),
        4,
        "{summary:#}"
    );
    // Only the trained head clears the 90% floor on these easy items.
    assert_eq!(summary["recommended"], "head", "{summary:#}");
    let verdict = summary["verdict"].as_array().unwrap();
    assert!(
        verdict[0]
            .as_str()
            .unwrap()
            .starts_with("Recommended: head"),
        "{summary:#}"
    );
    assert!(
        verdict
            .iter()
            .any(|v| v.as_str().unwrap().starts_with("priced costs")),
        "the API's cost next to the recommended model's: {summary:#}"
    );
    assert!(
        summary["cascade"]["curve"]["points"]
            .as_array()
            .unwrap()
            .len()
            >= 3,
        "{summary:#}"
    );
    assert_eq!(summary["break_even"][0]["api"], "priced", "{summary:#}");
    // Every answer of the served tiny model is off the list: 8 mistakes at the default $2.
    let mistakes = &model(&summary, "llama-served")["mistakes"];
    assert_eq!(mistakes["total_usd"], 16.0, "{summary:#}");
    assert_eq!(mistakes["usd_per_1000_queries"], 2000.0, "{summary:#}");
    let html = std::fs::read_to_string(s.out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "charts missing");
    assert!(
        !html.contains("http://") || !html.contains("<script"),
        "no scripts, no network"
    );
    check_in_browser(&s.out.join("report.html"));
    let md = std::fs::read_to_string(s.out.join("report.md")).unwrap();
    assert!(md.contains("## Verdict") && md.contains("| head"), "{md}");
    let results_before = std::fs::read(s.out.join("evals/priced/results.json")).unwrap();

    // A rerun with nothing changed reuses every model and rewrites no result.
    let (_, stderr) = succeeds(run_suite(&s).env("OPENAI_API_KEY", KEY));
    assert!(stderr.contains("head: reused"), "{stderr}");
    for (name, status) in statuses(&s.out) {
        assert_eq!(status, "reused", "{name}");
    }
    assert_eq!(
        results_before,
        std::fs::read(s.out.join("evals/priced/results.json")).unwrap()
    );

    // The report is rebuilt from the files alone, with the same figures.
    let (stdout, _) = succeeds(taskbench().arg("report").arg(&s.out));
    assert!(stdout.contains("Verdict"), "{stdout}");
    let rebuilt = read_json(&s.out.join("summary.json"));
    let without_status = |v: &Value| -> Vec<Value> {
        let mut models = v["models"].as_array().unwrap().clone();
        for m in &mut models {
            m.as_object_mut().unwrap().remove("status");
        }
        models
    };
    assert_eq!(without_status(&rebuilt), without_status(&summary));
    assert_eq!(rebuilt["verdict"], summary["verdict"]);
    drop(s.scratch);
}

/// The report opened in headless Chromium: every chart draws, nothing logs an error. The
/// screenshot is kept in target/tmp/ for a person to look at.
fn check_in_browser(html: &Path) {
    let Some(chromium) = browser::chromium_or_skip("report.html in chromium") else {
        return;
    };
    let shot = root().join("target/tmp/suite-report.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let page = browser::check_page(&chromium, html, Some(&shot)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        page.svg_count, 5,
        "cost, latency, distribution, confusion, cascade: {page:?}"
    );
    assert!(page.empty_svgs.is_empty(), "{page:?}");
    assert!(page.console_errors.is_empty(), "{page:?}");
    assert!(page.js_errors.is_empty(), "{page:?}");
    assert_eq!(page.title, "taskbench: tiny");
    let (width, height) = browser::png_dimensions(&shot).unwrap();
    assert!(width >= 1000 && height >= 1000, "{width}x{height}");
}

/// The API key never reaches an output: not the terminal, not a result, not the report.
fn assert_no_key_anywhere(dir: &Path, outputs: &[&str]) {
    for text in outputs {
        assert!(
            !text.contains("NEVERPRINTME"),
            "the key was printed:\n{text}"
        );
    }
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("NEVERPRINTME"),
            "{} holds the key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_changed_input_reruns_only_the_models_it_feeds_and_a_missing_key_skips_its_api() {
    let s = setup("http://127.0.0.1:9/v1");
    let llama = root()
        .join("tests/fixtures/tiny-llama")
        .display()
        .to_string();
    let text = format!(
        "name = \"t\"\n[data]\ntrain = \"train.csv\"\ntest = \"test.csv\"\n[[models]]\nname = \"head\"\nbase = \"{}\"\ntrain = \"head-only\"\n[[models]]\nname = \"llama\"\nmodel = \"{llama}\"\nlimit = 4\n[[models]]\nname = \"gpt\"\nmodel = \"openai:gpt-4o-mini\"\n",
        minilm().display()
    );
    std::fs::write(&s.suite, &text).unwrap();
    let (_, stderr) = succeeds(&mut run_suite(&s));
    assert!(
        stderr.contains("gpt: skipped: set OPENAI_API_KEY to include it"),
        "{stderr}"
    );
    std::fs::write(&s.suite, text.replace("limit = 4", "limit = 5")).unwrap();
    let (_, stderr) = succeeds(&mut run_suite(&s));
    assert!(stderr.contains("head: reused"), "{stderr}");
    assert!(stderr.contains("llama: evaluated"), "{stderr}");
    let summary = read_json(&s.out.join("summary.json"));
    assert_eq!(model(&summary, "llama")["items"], 5);
    assert_eq!(summary["not_evaluated"][0]["name"], "gpt");
    assert!(
        summary["verdict"]
            .to_string()
            .contains("Not evaluated: gpt (set OPENAI_API_KEY"),
        "{summary:#}"
    );
}

#[test]
fn bad_suites_are_refused_naming_the_file_and_the_model() {
    let s = setup("http://127.0.0.1:9/v1");
    let write = |text: &str| std::fs::write(&s.suite, text).unwrap();
    let base = "name = \"t\"\n[data]\ntest = \"test.csv\"\n";

    write(&format!(
        "{base}[[models]]\nname = \"m\"\nmodel = \"no-such-model\"\n"
    ));
    fails(
        &mut run_suite(&s),
        &["suite.toml", "\"m\"", "no-such-model", "no such file"],
    );

    write(&format!(
        "{base}[[models]]\nname = \"a\"\nmodel = \"openai:x\"\n[[models]]\nname = \"a\"\nmodel = \"openai:y\"\n"
    ));
    fails(
        &mut run_suite(&s),
        &["suite.toml", "two models are named \"a\""],
    );

    write("name = \"t\"\n[data]\ntest = \"missing.csv\"\n[[models]]\nname = \"a\"\nmodel = \"openai:x\"\n");
    fails(
        &mut run_suite(&s),
        &["suite.toml", "missing.csv", "no such file"],
    );

    write(&format!(
        "{base}[cost_matrix]\ndefault = 1.0\npairs = [{{ gold = \"fire\", predicted = \"flood\", usd = 5.0 }}]\n[[models]]\nname = \"a\"\nmodel = \"openai:x\"\n"
    ));
    fails(
        &mut run_suite(&s),
        &["suite.toml", "[cost_matrix]", "flood"],
    );

    write(&format!(
        "{base}[[models]]\nname = \"a\"\nmodle = \"openai:x\"\n"
    ));
    fails(
        &mut run_suite(&s),
        &["suite.toml:6", "unknown field `modle`"],
    );
}

#[test]
fn a_run_folder_of_another_schema_version_is_refused() {
    let s = Scratch::new();
    let dir = s.path("old-run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("run.json"),
        r#"{"schema_version": 0, "kind": "suite-run"}"#,
    )
    .unwrap();
    fails(
        taskbench().arg("report").arg(&dir),
        &["run.json", "schema version 0", "reads version 1", "--rerun"],
    );
    fails(
        taskbench().arg("report").arg(s.path("nothing-here")),
        &["run.json", "taskbench run"],
    );
}
