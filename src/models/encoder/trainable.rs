//! An encoder classifier whose every weight is a trainable variable: the model that full
//! fine-tuning updates. Built from a base checkpoint (backbone weights as loaded, a new head
//! initialised from a seeded normal as HF does), run with the candle ops that record
//! gradients, and exported in the same layouts as `train --head-only`.
//!
//! Heads, as HF's `...ForSequenceClassification` computes them in training:
//! BERT: pooler -> dropout -> `classifier`; DistilBERT: [CLS] -> `pre_classifier` -> ReLU ->
//! dropout -> `classifier`; RoBERTa: dropout -> `dense` -> tanh -> dropout -> `out_proj`.
//! Mean pooling (the sentence-transformers recipe) puts one linear layer on the mean of the
//! real tokens' states, with no normalisation, as `../shared/anchors/finetune.py` does.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::{EncoderConfig, Family};
use super::head::Pooling;
use super::ops::Dropout;
use super::save::{Backbone, Layout};
use super::transformer::{mean_pool, Linear, PackedBatch, Transformer};
use super::{Encoder, EncoderError};
use crate::models::TokenizedText;

/// The head on top of the pooled features.
enum TrainHead {
    Bert {
        pooler: Linear,
        classifier: Linear,
    },
    DistilBert {
        pre_classifier: Linear,
        classifier: Linear,
    },
    Roberta {
        dense: Linear,
        out_proj: Linear,
    },
    Mean {
        linear: Linear,
    },
}

pub struct Trainable {
    config: EncoderConfig,
    varmap: VarMap,
    prefix: &'static str,
    transformer: Transformer,
    head: TrainHead,
    pooling: Pooling,
    dropout: Dropout,
    device: Device,
}

impl Trainable {
    /// The base encoder's backbone with a new head for `num_labels` labels.
    pub fn new(
        base: &Encoder,
        num_labels: usize,
        pooling: Pooling,
        seed: u64,
    ) -> Result<Self, EncoderError> {
        let config = base.config.clone();
        let device = base.device().clone();
        let weights = base.dir().join("model.safetensors");
        let weights_err = |e: candle_core::Error| EncoderError::Weights {
            path: weights.clone(),
            message: super::candle_message(&e),
        };
        let prefix = config.family.backbone_prefix(&config.model_type);
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
            for (name, tensor) in
                candle_core::safetensors::load(&weights, &device).map_err(weights_err)?
            {
                if let Some(name) = backbone_name(&name, prefix) {
                    if tensor.dtype().is_float() {
                        data.insert(
                            name,
                            Var::from_tensor(&tensor.to_dtype(DType::F32).map_err(weights_err)?)
                                .map_err(weights_err)?,
                        );
                    }
                }
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for (name, shape) in new_head_shapes(&config, prefix, num_labels, pooling) {
                if let std::collections::hash_map::Entry::Vacant(slot) = data.entry(name) {
                    slot.insert(
                        init_normal(&shape, config.initializer_range, &mut rng, &device)
                            .map_err(weights_err)?,
                    );
                }
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let mut transformer = Transformer::load(&vb.pp(prefix), &config).map_err(weights_err)?;
        transformer.use_candle_ops();
        let head = load_head(&vb, &config, prefix, num_labels, pooling).map_err(weights_err)?;
        let dropout = Dropout::new(
            config.hidden_dropout,
            config.attention_dropout,
            config.classifier_dropout,
            seed ^ 0x5eed,
        );
        Ok(Self {
            config,
            varmap,
            prefix,
            transformer,
            head,
            pooling,
            dropout,
            device,
        })
    }

    /// Every trainable variable with its name, sorted by name (a stable order for the
    /// optimizer and its saved state).
    pub fn variables(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    pub fn dropout(&self) -> &Dropout {
        &self.dropout
    }

    /// Turns dropout off while keeping the gradient-recording forward (`logits(.., true)`):
    /// for gradient checks, where a random mask would make the loss a different function at
    /// every evaluation.
    pub fn disable_dropout(&mut self) {
        self.dropout = Dropout::new(0.0, 0.0, 0.0, 0);
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Logits `(batch, labels)`; `training` turns dropout on and records gradients.
    pub fn logits(&self, batch: &[&TokenizedText], training: bool) -> candle_core::Result<Tensor> {
        let sequences: Vec<(Vec<u32>, Vec<u32>)> = batch
            .iter()
            .map(|t| (t.ids.clone(), t.type_ids.clone()))
            .collect();
        let packed = PackedBatch::new(&sequences, self.transformer.positions(), &self.device)?;
        let dropout = training.then_some(&self.dropout);
        let hidden = match dropout {
            Some(d) => self.transformer.forward_train(&packed, d)?,
            None => self.transformer.forward(&packed)?,
        };
        let drop = |t: Tensor| match dropout {
            Some(d) => d.apply(&t, d.classifier),
            None => Ok(t),
        };
        let first = || -> candle_core::Result<Tensor> {
            let rows = Tensor::new(packed.first_token_rows(), &self.device)?;
            hidden.index_select(&rows, 0)
        };
        match &self.head {
            TrainHead::Bert { pooler, classifier } => {
                classifier.forward(&drop(pooler.forward(&first()?)?.tanh()?)?)
            }
            TrainHead::DistilBert {
                pre_classifier,
                classifier,
            } => classifier.forward(&drop(pre_classifier.forward(&first()?)?.relu()?)?),
            TrainHead::Roberta { dense, out_proj } => {
                out_proj.forward(&drop(dense.forward(&drop(first()?)?)?.tanh()?)?)
            }
            TrainHead::Mean { linear } => linear.forward(&mean_pool(&hidden, &packed.seq_lens)?),
        }
    }

    /// Current weights by name, copied (a checkpoint, or the best epoch kept in memory).
    pub fn snapshot(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        self.variables()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect()
    }

    /// Puts weights from [`Self::snapshot`] or a checkpoint file back; every variable must be
    /// there with its shape.
    pub fn restore(&self, weights: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, var) in self.variables() {
            let value = weights.get(&name).ok_or_else(|| {
                candle_core::Error::Msg(format!("checkpoint has no tensor `{name}`"))
            })?;
            var.set(&value.to_device(&self.device)?.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    pub fn save_weights(&self, path: &Path) -> candle_core::Result<()> {
        self.varmap.save(path)
    }

    pub fn load_weights(&self, path: &Path) -> candle_core::Result<()> {
        let weights = candle_core::safetensors::load(path, &self.device)?;
        self.restore(&weights)
    }

    /// The trained model in the layout its pooling calls for: a HF `...ForSequenceClassification`
    /// folder for CLS pooling, sentence-transformers with a `Dense` head for mean pooling.
    pub fn layout(&self) -> candle_core::Result<Layout> {
        let cpu = |t: &Tensor| t.to_device(&Device::Cpu);
        let tensors: HashMap<String, Tensor> = self
            .variables()
            .into_iter()
            .map(|(n, v)| Ok((n, cpu(v.as_tensor())?)))
            .collect::<candle_core::Result<_>>()?;
        if let TrainHead::Mean { linear } = &self.head {
            let dot = format!("{}.", self.prefix);
            let backbone = tensors
                .into_iter()
                .filter_map(|(n, t)| n.strip_prefix(&dot).map(|s| (s.to_string(), t)))
                .collect();
            return Ok(Layout::SentenceTransformers {
                backbone: Backbone::Tensors(backbone),
                pooling: Pooling::Mean,
                normalize: false,
                head_weight: cpu(linear.weight())?,
                head_bias: cpu(linear.bias())?,
            });
        }
        Ok(Layout::HfClassifier {
            architecture: classifier_architecture(&self.config).into(),
            tensors,
        })
    }
}

/// The name a checkpoint tensor gets in the trainable model: backbone tensors under the
/// family's prefix; an old head (a checkpoint that was already a classifier) is dropped,
/// since the new labels need a new one.
fn backbone_name(name: &str, prefix: &str) -> Option<String> {
    let bare = name
        .strip_prefix(prefix)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(name);
    let backbone = ["embeddings.", "encoder.", "transformer.", "pooler."]
        .iter()
        .any(|p| bare.starts_with(p));
    backbone.then(|| format!("{prefix}.{bare}"))
}

fn classifier_architecture(cfg: &EncoderConfig) -> &'static str {
    match (cfg.family, cfg.model_type.as_str()) {
        (Family::Bert, _) => "BertForSequenceClassification",
        (Family::DistilBert, _) => "DistilBertForSequenceClassification",
        (Family::Roberta, "xlm-roberta") => "XLMRobertaForSequenceClassification",
        (Family::Roberta, _) => "RobertaForSequenceClassification",
    }
}

/// Tensors the head needs, by HF name and shape (only those the checkpoint lacks are created).
fn new_head_shapes(
    cfg: &EncoderConfig,
    prefix: &str,
    labels: usize,
    pooling: Pooling,
) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let linear = |name: &str, out: usize, inp: usize| {
        vec![
            (format!("{name}.weight"), vec![out, inp]),
            (format!("{name}.bias"), vec![out]),
        ]
    };
    match (pooling, cfg.family) {
        (Pooling::Mean, _) => linear("head", labels, h),
        (Pooling::Cls, Family::Bert) => [
            linear(&format!("{prefix}.pooler.dense"), h, h),
            linear("classifier", labels, h),
        ]
        .concat(),
        (Pooling::Cls, Family::DistilBert) => [
            linear("pre_classifier", h, h),
            linear("classifier", labels, h),
        ]
        .concat(),
        (Pooling::Cls, Family::Roberta) => [
            linear("classifier.dense", h, h),
            linear("classifier.out_proj", labels, h),
        ]
        .concat(),
    }
}

fn load_head(
    vb: &VarBuilder,
    cfg: &EncoderConfig,
    prefix: &str,
    labels: usize,
    pooling: Pooling,
) -> candle_core::Result<TrainHead> {
    let h = cfg.hidden_size;
    Ok(match (pooling, cfg.family) {
        (Pooling::Mean, _) => TrainHead::Mean {
            linear: Linear::load(&vb.pp("head"), h, labels)?,
        },
        (Pooling::Cls, Family::Bert) => TrainHead::Bert {
            pooler: Linear::load(&vb.pp(prefix).pp("pooler.dense"), h, h)?,
            classifier: Linear::load(&vb.pp("classifier"), h, labels)?,
        },
        (Pooling::Cls, Family::DistilBert) => TrainHead::DistilBert {
            pre_classifier: Linear::load(&vb.pp("pre_classifier"), h, h)?,
            classifier: Linear::load(&vb.pp("classifier"), h, labels)?,
        },
        (Pooling::Cls, Family::Roberta) => TrainHead::Roberta {
            dense: Linear::load(&vb.pp("classifier.dense"), h, h)?,
            out_proj: Linear::load(&vb.pp("classifier.out_proj"), h, labels)?,
        },
    })
}

/// HF's init for new weights: normal(0, initializer_range) for matrices, zero for biases.
fn init_normal(
    shape: &[usize],
    std: f64,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> candle_core::Result<Var> {
    let count: usize = shape.iter().product();
    let values: Vec<f32> = if shape.len() == 1 {
        vec![0.0; count]
    } else {
        let normal =
            Normal::new(0.0, std as f32).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        (0..count).map(|_| normal.sample(rng)).collect()
    };
    Var::from_tensor(&Tensor::from_vec(values, shape, device)?)
}
