//! A linear softmax classifier fitted on fixed feature vectors: what `train --head-only`
//! puts on a frozen encoder.
//!
//! Full-batch Adam on the mean cross-entropy plus `weight_decay / 2 * ||W||^2` (the bias is
//! not decayed), on standardised features. Standardising makes one learning rate fit any
//! backbone's feature scale; the scaling is folded back into the weights at the end, so the
//! saved head applies to raw features. Zero initialisation and full batches make the fit
//! deterministic: the same features give the same head bit for bit.

use serde::Serialize;

/// Settings of the fit.
#[derive(Debug, Clone, Serialize)]
pub struct FitOptions {
    pub weight_decay: f32,
    pub learning_rate: f32,
    pub max_steps: usize,
    /// Stop when the gradient's largest component falls below this.
    pub tolerance: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            weight_decay: 1e-3,
            learning_rate: 0.05,
            max_steps: 2000,
            tolerance: 1e-5,
        }
    }
}

/// A fitted head: `logits = weight · x + bias`, `weight` row-major `[classes][dim]`.
#[derive(Debug, Clone)]
pub struct LinearHead {
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// How the fit ended.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub steps: usize,
    pub final_loss: f32,
    pub train_accuracy: f32,
    pub converged: bool,
}

impl LinearHead {
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| dot(w, x) + b)
            .collect()
    }

    pub fn predict(&self, x: &[f32]) -> usize {
        argmax(&self.logits(x))
    }
}

/// Fits a head on `features` (one row per example, equal lengths) with class `targets` in
/// `0..classes`. Needs at least one example and two classes.
pub fn fit(
    features: &[Vec<f32>],
    targets: &[usize],
    classes: usize,
    opts: &FitOptions,
) -> (LinearHead, FitReport) {
    assert!(
        !features.is_empty() && features.len() == targets.len() && classes >= 2,
        "fit: checked by the caller"
    );
    let dim = features[0].len();
    let (mean, std) = column_stats(features);
    let xs: Vec<Vec<f32>> = features
        .iter()
        .map(|row| standardise(row, &mean, &std))
        .collect();
    let mut params = Params::zeros(classes, dim);
    let mut adam = Adam::new(classes * (dim + 1), opts.learning_rate);
    let mut report = FitReport {
        steps: 0,
        final_loss: f32::NAN,
        train_accuracy: 0.0,
        converged: false,
    };
    for step in 1..=opts.max_steps {
        let (loss, grad) = loss_and_gradient(&params, &xs, targets, opts.weight_decay);
        report.steps = step;
        report.final_loss = loss;
        if grad.iter().all(|g| g.abs() < opts.tolerance) {
            report.converged = true;
            break;
        }
        adam.step(&mut params.flat, &grad);
    }
    let standardised_head = params.to_head();
    let correct = xs
        .iter()
        .zip(targets)
        .filter(|(x, &t)| standardised_head.predict(x) == t)
        .count();
    report.train_accuracy = correct as f32 / xs.len() as f32;
    (
        fold_standardisation(&standardised_head, &mean, &std),
        report,
    )
}

/// Weights and biases in one vector: `classes * dim` weights, then `classes` biases.
struct Params {
    flat: Vec<f32>,
    classes: usize,
    dim: usize,
}

impl Params {
    fn zeros(classes: usize, dim: usize) -> Self {
        Self {
            flat: vec![0.0; classes * (dim + 1)],
            classes,
            dim,
        }
    }

    fn weight(&self, class: usize) -> &[f32] {
        &self.flat[class * self.dim..(class + 1) * self.dim]
    }

    fn bias(&self, class: usize) -> f32 {
        self.flat[self.classes * self.dim + class]
    }

    fn to_head(&self) -> LinearHead {
        LinearHead {
            weight: (0..self.classes).map(|c| self.weight(c).to_vec()).collect(),
            bias: (0..self.classes).map(|c| self.bias(c)).collect(),
        }
    }
}

fn loss_and_gradient(
    params: &Params,
    xs: &[Vec<f32>],
    targets: &[usize],
    weight_decay: f32,
) -> (f32, Vec<f32>) {
    let (classes, dim) = (params.classes, params.dim);
    let n = xs.len() as f32;
    let mut grad = vec![0.0f32; params.flat.len()];
    let mut loss = 0.0f64;
    for (x, &target) in xs.iter().zip(targets) {
        let logits: Vec<f32> = (0..classes)
            .map(|c| dot(params.weight(c), x) + params.bias(c))
            .collect();
        let probs = softmax(&logits);
        loss -= (probs[target].max(1e-30) as f64).ln();
        for c in 0..classes {
            let err = (probs[c] - if c == target { 1.0 } else { 0.0 }) / n;
            let row = &mut grad[c * dim..(c + 1) * dim];
            for (g, xi) in row.iter_mut().zip(x) {
                *g += err * xi;
            }
            grad[classes * dim + c] += err;
        }
    }
    let mut decay = 0.0f64;
    for (g, w) in grad[..classes * dim]
        .iter_mut()
        .zip(&params.flat[..classes * dim])
    {
        *g += weight_decay * w;
        decay += (w * w) as f64;
    }
    (
        (loss / n as f64 + 0.5 * weight_decay as f64 * decay) as f32,
        grad,
    )
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    lr: f32,
}

impl Adam {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPS: f32 = 1e-8;

    fn new(len: usize, lr: f32) -> Self {
        Self {
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
            lr,
        }
    }

    fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        self.t += 1;
        let c1 = 1.0 - Self::BETA1.powi(self.t);
        let c2 = 1.0 - Self::BETA2.powi(self.t);
        for i in 0..params.len() {
            self.m[i] = Self::BETA1 * self.m[i] + (1.0 - Self::BETA1) * grad[i];
            self.v[i] = Self::BETA2 * self.v[i] + (1.0 - Self::BETA2) * grad[i] * grad[i];
            params[i] -= self.lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + Self::EPS);
        }
    }
}

/// Per-dimension mean and standard deviation (a constant dimension gets std 1).
fn column_stats(rows: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let dim = rows[0].len();
    let n = rows.len() as f64;
    let mut mean = vec![0.0f64; dim];
    for row in rows {
        for (m, x) in mean.iter_mut().zip(row) {
            *m += *x as f64 / n;
        }
    }
    let mut var = vec![0.0f64; dim];
    for row in rows {
        for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
            *v += (*x as f64 - m).powi(2) / n;
        }
    }
    let std = var
        .iter()
        .map(|v| if *v > 1e-12 { v.sqrt() as f32 } else { 1.0 })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

fn standardise(row: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    row.iter()
        .zip(mean)
        .zip(std)
        .map(|((x, m), s)| (x - m) / s)
        .collect()
}

/// `W((x - mean) / std) + b` rewritten as `W' x + b'` so the head takes raw features.
fn fold_standardisation(head: &LinearHead, mean: &[f32], std: &[f32]) -> LinearHead {
    let weight: Vec<Vec<f32>> = head
        .weight
        .iter()
        .map(|w| w.iter().zip(std).map(|(wi, s)| wi / s).collect())
        .collect();
    let bias = head
        .bias
        .iter()
        .zip(&weight)
        .map(|(b, w)| b - dot(w, mean))
        .collect();
    LinearHead { weight, bias }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated clusters with a large offset and scale: the fit must separate
    /// them, which it can only do reliably because of standardisation.
    fn clusters() -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..60 {
            let class = i % 3;
            let jitter = ((i * 37 % 11) as f32 - 5.0) * 0.01;
            let mut x = vec![100.0 + jitter, 0.001 * jitter, 5.0];
            x[class % 2] +=
                if class == 2 { -0.5 } else { 0.5 } * if class % 2 == 0 { 1.0 } else { 0.001 };
            xs.push(x);
            ys.push(class);
        }
        (xs, ys)
    }

    #[test]
    fn separates_separable_clusters_and_folds_scaling_back() {
        let (xs, ys) = clusters();
        let (head, report) = fit(&xs, &ys, 3, &FitOptions::default());
        assert_eq!(report.train_accuracy, 1.0, "{report:?}");
        let raw_correct = xs
            .iter()
            .zip(&ys)
            .filter(|(x, &y)| head.predict(x) == y)
            .count();
        assert_eq!(
            raw_correct,
            xs.len(),
            "the folded head must classify raw features the same way"
        );
    }

    #[test]
    fn is_deterministic() {
        let (xs, ys) = clusters();
        let (a, _) = fit(&xs, &ys, 3, &FitOptions::default());
        let (b, _) = fit(&xs, &ys, 3, &FitOptions::default());
        assert_eq!(a.weight, b.weight);
        assert_eq!(a.bias, b.bias);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let xs = vec![vec![0.3, -1.2], vec![1.5, 0.2], vec![-0.7, 0.9]];
        let ys = vec![0, 1, 2];
        let mut params = Params::zeros(3, 2);
        for (i, p) in params.flat.iter_mut().enumerate() {
            *p = ((i * 7 % 5) as f32 - 2.0) * 0.3;
        }
        let (_, grad) = loss_and_gradient(&params, &xs, &ys, 0.1);
        let h = 1e-2f32;
        for (i, analytic) in grad.iter().enumerate() {
            let orig = params.flat[i];
            params.flat[i] = orig + h;
            let (up, _) = loss_and_gradient(&params, &xs, &ys, 0.1);
            params.flat[i] = orig - h;
            let (down, _) = loss_and_gradient(&params, &xs, &ys, 0.1);
            params.flat[i] = orig;
            let numeric = (up - down) / (2.0 * h);
            assert!(
                (numeric - analytic).abs() < 1e-3,
                "param {i}: numeric {numeric} vs analytic {analytic}"
            );
        }
    }

    #[test]
    fn weight_decay_shrinks_weights() {
        let (xs, ys) = clusters();
        let norm = |h: &LinearHead| h.weight.iter().flatten().map(|w| w * w).sum::<f32>();
        let (loose, _) = fit(
            &xs,
            &ys,
            3,
            &FitOptions {
                weight_decay: 1e-4,
                ..Default::default()
            },
        );
        let (tight, _) = fit(
            &xs,
            &ys,
            3,
            &FitOptions {
                weight_decay: 1.0,
                ..Default::default()
            },
        );
        assert!(norm(&tight) < norm(&loose));
    }
}
