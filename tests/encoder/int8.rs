//! `Precision::Int8` against the f32 path of the same model: probabilities within a stated
//! tolerance and the same label on (nearly) every text; switching back to f32 is exact.
//! The bounds were set from measured differences with a margin of about 2x (see each
//! constant), so a real loss of accuracy in the int8 path fails here.

use candle_core::Device;
use taskbench::models::encoder::head::Pooling;
use taskbench::models::encoder::{Encoder, Precision};
use taskbench::models::{Classifier, TokenizedText};

use std::path::Path;

use super::{backbone_into, config_with_labels, fixtures, max_abs_diff, minilm_dir};

/// Largest int8-vs-f32 probability difference allowed on the MiniLM classifier with the
/// fixture's random head (measured: 0.019 on the claims test texts).
const MINILM_PROB_TOLERANCE: f32 = 0.04;
/// Mean over texts of the largest difference (measured: 0.007).
const MINILM_MEAN_TOLERANCE: f32 = 0.015;
/// The tiny fixtures are random 32-wide models, noisier under 8 bits than a trained one
/// (measured: 0.043 tiny-bert, 0.025 tiny-distilbert, 0.022 tiny-roberta).
const TINY_PROB_TOLERANCE: f32 = 0.08;

fn classify_all(model: &Encoder, texts: &[&str]) -> Vec<Vec<f32>> {
    let tokenized = model.tokenize(texts).unwrap();
    let refs: Vec<&TokenizedText> = tokenized.iter().collect();
    refs.chunks(32)
        .flat_map(|batch| model.classify(batch).unwrap())
        .collect()
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// Texts and labels of a claims split (in the repository: 880 train, 280 test texts).
fn claims(split: &str) -> (Vec<String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("datasets/claims/{split}.csv"));
    taskbench::data::load(&path, &Default::default())
        .unwrap()
        .examples
        .into_iter()
        .map(|e| (e.text, e.label.unwrap()))
        .unzip()
}

fn claims_texts() -> Vec<String> {
    claims("test").0
}

/// Mean-pooled, L2-normalized MiniLM features, `(texts, 384)`.
fn features(model: &Encoder, texts: &[String]) -> Vec<Vec<f32>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokenized = model.encode(&refs).unwrap();
    let items: Vec<&TokenizedText> = tokenized.iter().collect();
    items
        .chunks(64)
        .flat_map(|batch| {
            model
                .features_with(batch, Pooling::Mean, true)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Labels on real data mean something only with a head that separates the classes: a
/// nearest-centroid classifier on the claims data (centroids of the f32 features of the
/// train split), applied to f32 and int8 features of the test split. int8 must keep each
/// text's feature vector within cosine 0.99 of f32 (measured: worst 0.998), change at most
/// 2% of labels (measured: 3 of 280, all where f32's two best centroids nearly tie) and lose
/// at most 1 point of accuracy (measured: none).
#[test]
fn minilm_int8_nearest_centroid_labels_agree() {
    let mut model = Encoder::load(&minilm_dir(), "minilm", &Device::Cpu).unwrap();
    let (train, train_labels) = claims("train");
    let (test, test_labels) = claims("test");
    let mut names: Vec<&String> = train_labels.iter().collect();
    names.sort();
    names.dedup();
    let train_features = features(&model, &train);
    let centroids: Vec<Vec<f32>> = names
        .iter()
        .map(|name| {
            let mut c = vec![0.0f32; 384];
            for (f, l) in train_features.iter().zip(&train_labels) {
                if l == *name {
                    c.iter_mut().zip(f).for_each(|(c, f)| *c += f);
                }
            }
            c
        })
        .collect();
    let classify = |f: &[f32]| {
        (0..centroids.len())
            .max_by(|&a, &b| dot(f, &centroids[a]).total_cmp(&dot(f, &centroids[b])))
            .unwrap()
    };
    let fp32 = features(&model, &test);
    model.set_precision(Precision::Int8).unwrap();
    let int8 = features(&model, &test);
    let worst_cos = fp32
        .iter()
        .zip(&int8)
        .map(|(a, b)| dot(a, b))
        .fold(1.0f32, f32::min);
    let (mut flipped, mut right) = (0usize, [0usize; 2]);
    for ((a, b), gold) in fp32.iter().zip(&int8).zip(&test_labels) {
        let (la, lb) = (classify(a), classify(b));
        flipped += usize::from(la != lb);
        right[0] += usize::from(names[la] == gold);
        right[1] += usize::from(names[lb] == gold);
    }
    let n = test.len() as f64;
    let (acc32, acc8) = (right[0] as f64 / n, right[1] as f64 / n);
    eprintln!(
        "nearest centroid on claims test: fp32 {:.2}%, int8 {:.2}%, {flipped} of {n} labels changed, worst cosine {worst_cos:.4}",
        100.0 * acc32,
        100.0 * acc8
    );
    assert!(
        worst_cos >= 0.99,
        "an int8 feature vector is at cosine {worst_cos} from f32"
    );
    assert!(
        flipped as f64 <= 0.02 * n,
        "{flipped} of {n} labels changed"
    );
    assert!(acc8 >= acc32 - 0.01, "int8 accuracy {acc8} vs f32 {acc32}");
}

/// Compares int8 with f32 on `texts`; returns (worst, mean) max-abs differences and the
/// share of texts whose label differs, after checking that f32 comes back exactly.
fn compare(model: &mut Encoder, texts: &[&str]) -> (f32, f32, f64) {
    let fp32 = classify_all(model, texts);
    model.set_precision(Precision::Int8).unwrap();
    assert_eq!(model.precision(), Precision::Int8);
    let int8 = classify_all(model, texts);
    model.set_precision(Precision::Fp32).unwrap();
    assert_eq!(model.precision(), Precision::Fp32);
    let again = classify_all(model, texts);
    assert!(
        fp32.iter()
            .flatten()
            .zip(again.iter().flatten())
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "f32 after int8 is not bit-identical to f32 before"
    );
    let diffs: Vec<f32> = fp32
        .iter()
        .zip(&int8)
        .map(|(a, b)| max_abs_diff(a, b))
        .collect();
    let worst = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let flipped = fp32
        .iter()
        .zip(&int8)
        .filter(|(a, b)| argmax(a) != argmax(b))
        .count();
    (worst, mean, flipped as f64 / texts.len() as f64)
}

/// Writes all-MiniLM-L6-v2 with the random mean-pooled dense head of `minilm-head/` into
/// `dir`, as a sentence-transformers folder (as the f32 test of that head does).
fn mean_dense_model_into(dir: &Path) {
    let labels: Vec<String> = (0..5).map(|i| format!("label {i}")).collect();
    let tensors = backbone_into(dir);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let src = minilm_dir();
    std::fs::copy(
        src.join("sentence_bert_config.json"),
        dir.join("sentence_bert_config.json"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        dir.join("1_Pooling/config.json"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("3_Dense")).unwrap();
    std::fs::copy(
        fixtures().join("minilm-head/mean_dense.safetensors"),
        dir.join("3_Dense/model.safetensors"),
    )
    .unwrap();
    let dense = serde_json::json!({"in_features": 384, "out_features": labels.len(), "bias": true, "activation_function": "torch.nn.modules.linear.Identity"});
    std::fs::write(dir.join("3_Dense/config.json"), dense.to_string()).unwrap();
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    ]);
    std::fs::write(dir.join("modules.json"), modules.to_string()).unwrap();
    let config = config_with_labels("BertModel", &labels);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// all-MiniLM-L6-v2 with the mean-pooled dense head of `tests/fixtures/minilm-head`, on the
/// claims test texts.
#[test]
fn minilm_int8_tracks_fp32() {
    let _ = minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    mean_dense_model_into(tmp.path());
    let mut model = Encoder::load(tmp.path(), "minilm-mean", &Device::Cpu).unwrap();
    let texts = claims_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (worst, mean, flipped) = compare(&mut model, &refs);
    eprintln!(
        "MiniLM int8 vs fp32 on {} texts: worst {worst:.4}, mean {mean:.4}, labels flipped {:.2}%",
        refs.len(),
        100.0 * flipped
    );
    assert!(
        worst <= MINILM_PROB_TOLERANCE,
        "worst max abs diff {worst} > {MINILM_PROB_TOLERANCE}"
    );
    assert!(
        mean <= MINILM_MEAN_TOLERANCE,
        "mean max abs diff {mean} > {MINILM_MEAN_TOLERANCE}"
    );
    // The random head's probabilities are nearly uniform, so its labels say little; see
    // `minilm_int8_nearest_centroid_labels_agree` for labels.
    let _ = flipped;
}

#[test]
fn tiny_fixtures_int8_track_fp32() {
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta"] {
        let dir = fixtures().join(name);
        let reference = super::reference::Reference::load(&dir.join("reference.json"));
        let texts: Vec<&str> = reference.cases.iter().map(|c| c.text.as_str()).collect();
        let mut model = Encoder::load(&dir, name, &Device::Cpu).unwrap();
        let (worst, mean, flipped) = compare(&mut model, &texts);
        eprintln!("{name} int8 vs fp32: worst {worst:.4}, mean {mean:.4}, flipped {flipped:.3}");
        assert!(
            worst <= TINY_PROB_TOLERANCE,
            "{name}: worst max abs diff {worst} > {TINY_PROB_TOLERANCE}"
        );
    }
}

/// Per-token quantization keeps items independent: a batch gives what each item gives alone.
#[test]
fn int8_batched_matches_single() {
    let dir = fixtures().join("tiny-bert");
    let reference = super::reference::Reference::load(&dir.join("reference.json"));
    let mut model = Encoder::load(&dir, "tiny-bert", &Device::Cpu).unwrap();
    model.set_precision(Precision::Int8).unwrap();
    let texts: Vec<&str> = reference.cases.iter().map(|c| c.text.as_str()).collect();
    let tokenized = model.tokenize(&texts).unwrap();
    let refs: Vec<&TokenizedText> = tokenized.iter().collect();
    let batched = model.classify(&refs).unwrap();
    for (t, b) in tokenized.iter().zip(&batched) {
        let single = model.classify(&[t]).unwrap().remove(0);
        assert!(max_abs_diff(&single, b) <= super::BATCH_TOLERANCE);
    }
}

#[test]
fn int8_is_named_as_the_command_line_spells_it() {
    assert_eq!(Precision::default(), Precision::Fp32);
    assert_eq!(Precision::Int8.to_string(), "int8");
    assert_eq!(
        <Precision as clap::ValueEnum>::from_str("int8", false).unwrap(),
        Precision::Int8
    );
}
