//! `taskbench bench`: a model under a load scenario as MLPerf LoadGen defines them
//! (single-stream, offline, server with Poisson arrivals, the highest rate that meets an SLO),
//! for a local encoder or an OpenAI-compatible / Anthropic endpoint, so a served local model
//! and an API are measured under the same load. Encoders also report achieved GFLOP/s against
//! the machine's peak, measured at start-up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::eval::EvalOptions;
use crate::data;
use crate::models::encoder::Encoder;
use crate::models::remote::{ApiClient, ChatRequest, ClientOptions, Endpoint, ModelSpec};
use crate::models::Classifier;
use crate::report::bench::{BenchResults, ComputeReport, BENCH_SCHEMA_VERSION};
use crate::report::environment::Environment;
use crate::runtime::load::{
    self, find_max_qps, offline, server, single_stream, MaxQpsResult, OfflineSettings, RealClock,
    Scenario, ScenarioResult, SearchSettings, ServerSettings, SingleStreamSettings, Sut,
};
use crate::runtime::peak::{self, flops_per_token_encoder, Peak};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioChoice {
    /// One query at a time; p90 latency.
    SingleStream,
    /// Every query at once, batched; throughput.
    Offline,
    /// Poisson arrivals at --qps; latency percentiles against --slo-ms.
    Server,
}

impl From<ScenarioChoice> for Scenario {
    fn from(choice: ScenarioChoice) -> Scenario {
        match choice {
            ScenarioChoice::SingleStream => Scenario::SingleStream,
            ScenarioChoice::Offline => Scenario::Offline,
            ScenarioChoice::Server => Scenario::Server,
        }
    }
}

pub struct BenchOptions {
    /// Model, data, sampling, threads, device, prompts (for APIs).
    pub eval: EvalOptions,
    pub scenario: ScenarioChoice,
    pub qps: Option<f64>,
    pub slo_ms: Option<f64>,
    /// The latency percentile judged, in (0, 1) [default: 0.90 single-stream, 0.99 server].
    pub percentile: Option<f64>,
    pub find_max_qps: bool,
    pub min_queries: Option<usize>,
    pub min_duration: Duration,
    pub warmup: usize,
    /// Queries in flight at once (server) [default: 1 local, 8 HTTP].
    pub workers: Option<usize>,
    /// Server: the dispatch lag (p99, ms) past which a run is invalid.
    pub max_lag_ms: f64,
    /// Largest batch a local model is given.
    pub max_batch: usize,
    /// Allow load on a provider's paid endpoint.
    pub allow_paid: bool,
}

pub fn bench(opts: &BenchOptions) -> anyhow::Result<BenchResults> {
    let model = &opts.eval.model;
    if crate::models::causal::is_causal_lm(model) {
        bail!(
            "bench measures classifiers and HTTP endpoints; serve a generative model first (`taskbench serve --model {model} --name NAME`) and bench `--model openai:NAME --base-url http://127.0.0.1:8080/v1`"
        );
    }
    let peak = (!crate::models::remote::is_remote_spec(model))
        .then(|| peak::measure(opts.eval.threads, peak::DEFAULT_BUDGET));
    let target = if crate::models::remote::is_remote_spec(model) {
        Target::Api(ApiSut::open(opts)?)
    } else {
        Target::Encoder(Box::new(EncoderSut::open(opts)?))
    };
    let sut = target.sut();
    let queries = target.len();
    if queries == 0 {
        bail!("{}: no rows to send", opts.eval.data.display());
    }
    let (result, search) = run_scenario(opts, sut, queries)?;
    let compute = match (&target, &peak, &result) {
        (Target::Encoder(e), Some(peak), Some(r)) => Some(e.compute(r, peak)),
        _ => None,
    };
    Ok(BenchResults {
        schema_version: BENCH_SCHEMA_VERSION,
        kind: "bench".into(),
        created_at: crate::report::results::created_at_now(),
        model: model.clone(),
        data: opts.eval.data.display().to_string(),
        data_sha256: super::sha256_file(&opts.eval.data)?,
        queries,
        scenario: opts.scenario.into(),
        result,
        search,
        compute,
        environment: Environment::detect(),
    })
}

type Outcome = (Option<ScenarioResult>, Option<MaxQpsResult>);

fn run_scenario(opts: &BenchOptions, sut: &dyn Sut, queries: usize) -> anyhow::Result<Outcome> {
    let clock = RealClock::new();
    let min_queries = |p: f64| {
        opts.min_queries
            .unwrap_or_else(|| load::min_queries_for_percentile(p).max(queries))
    };
    match opts.scenario {
        ScenarioChoice::SingleStream => {
            let mut s = SingleStreamSettings::new(queries);
            s.percentile = opts.percentile.unwrap_or(0.90);
            s.min_queries = min_queries(s.percentile);
            s.min_duration = opts.min_duration;
            s.warmup = opts.warmup;
            Ok((Some(single_stream(sut, &s, &clock)?), None))
        }
        ScenarioChoice::Offline => {
            let mut s = OfflineSettings::new(queries);
            s.queries = opts.min_queries.unwrap_or(queries).max(queries);
            s.warmup = opts.warmup;
            s.max_batch = opts.max_batch;
            Ok((Some(offline(sut, &s, &clock)?), None))
        }
        ScenarioChoice::Server => {
            let Some(slo_ms) = opts.slo_ms else {
                bail!("--scenario server needs --slo-ms, the latency objective it is judged by");
            };
            let mut s = ServerSettings::new(queries, opts.qps.unwrap_or(1.0), slo_ms);
            s.percentile = opts.percentile.unwrap_or(0.99);
            s.min_queries = min_queries(s.percentile);
            s.min_duration = opts.min_duration;
            s.warmup = opts.warmup;
            s.seed = opts.eval.seed;
            s.lag_tolerance_ms = opts.max_lag_ms;
            s.max_batch = opts.max_batch;
            s.workers = opts
                .workers
                .unwrap_or(if sut.max_batch() > 1 { 1 } else { 8 });
            if opts.find_max_qps {
                let start = opts.qps.unwrap_or(10.0);
                let search = find_max_qps(sut, &s, &SearchSettings::new(start), &clock)?;
                return Ok((search.best.clone(), Some(search)));
            }
            if opts.qps.is_none() {
                bail!("--scenario server needs --qps (or --find-max-qps to search for the highest rate that meets --slo-ms)");
            }
            Ok((Some(server(sut, &s, &clock)?), None))
        }
    }
}

enum Target {
    Encoder(Box<EncoderSut>),
    Api(ApiSut),
}

impl Target {
    fn sut(&self) -> &dyn Sut {
        match self {
            Target::Encoder(e) => e.as_ref(),
            Target::Api(a) => a,
        }
    }

    fn len(&self) -> usize {
        match self {
            Target::Encoder(e) => e.texts.len(),
            Target::Api(a) => a.requests.len(),
        }
    }
}

/// A local encoder classifier: each query is tokenization + forward + softmax, as in `eval`.
struct EncoderSut {
    encoder: Encoder,
    texts: Vec<String>,
    tokens: Vec<usize>,
    max_batch: usize,
}

impl EncoderSut {
    fn open(opts: &BenchOptions) -> anyhow::Result<EncoderSut> {
        let loaded = super::load_encoder(&opts.eval.model, &opts.eval.device, opts.eval.precision)?;
        loaded.encoder.require_head()?;
        let texts = query_texts(&opts.eval)?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let tokens: Vec<usize> = loaded
            .encoder
            .tokenize(&refs)?
            .iter()
            .map(|t| t.ids.len())
            .collect();
        // Sorted by length, so the offline scenario's consecutive batches hold similar
        // lengths (as `eval` batches); the other scenarios draw queries in any order anyway.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[i]);
        let texts = order.iter().map(|&i| texts[i].clone()).collect();
        let tokens = order.iter().map(|&i| tokens[i]).collect();
        Ok(EncoderSut {
            encoder: loaded.encoder,
            texts,
            tokens,
            max_batch: opts.max_batch.max(1),
        })
    }

    /// Achieved GFLOP/s over the run: the average query's FLOPs times the queries answered,
    /// over the run's duration.
    fn compute(&self, r: &ScenarioResult, peak: &Peak) -> ComputeReport {
        let c = &self.encoder.config;
        let flops: f64 = self
            .tokens
            .iter()
            .map(|&t| {
                t as f64
                    * flops_per_token_encoder(c.hidden_size, c.intermediate_size, c.num_layers, t)
            })
            .sum();
        let per_query = flops / self.tokens.len().max(1) as f64;
        let achieved = per_query * r.completed as f64 / r.duration_s.max(1e-9) / 1e9;
        let int8 = self.encoder.precision() == crate::models::encoder::Precision::Int8;
        let (roof, percent) = match peak.int8_percent(achieved).filter(|_| int8) {
            Some(p) => ("int8 VNNI", p),
            None => ("f32 FMA", peak.f32_percent(achieved)),
        };
        ComputeReport {
            flops_per_query: per_query,
            achieved_gflops: achieved,
            roof: roof.into(),
            percent_of_peak: percent,
            peak: peak.clone(),
        }
    }
}

impl Sut for EncoderSut {
    fn run_batch(&self, items: &[usize]) -> Result<(), String> {
        let texts: Vec<&str> = items.iter().map(|&i| self.texts[i].as_str()).collect();
        let tokenized = self
            .encoder
            .tokenize(&texts)
            .map_err(|e| format!("{e:#}"))?;
        let batch: Vec<_> = tokenized.iter().collect();
        self.encoder
            .classify(&batch)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// The rows' texts, a seeded stratified sample of `--limit` of them when asked.
fn query_texts(opts: &EvalOptions) -> anyhow::Result<Vec<String>> {
    let load = data::LoadOptions {
        allow_unlabelled: true,
        ..opts.load.clone()
    };
    let dataset = data::load(&opts.data, &load)?;
    let rows = match opts.limit {
        Some(n) => data::stratified_sample(&dataset.examples, n, opts.seed),
        None => dataset.examples,
    };
    Ok(rows.into_iter().map(|e| e.text).collect())
}

/// An OpenAI-compatible or Anthropic endpoint, one request per query with the prompt `eval`
/// would send; no response cache (a cached answer measures nothing).
struct ApiSut {
    client: Arc<ApiClient>,
    requests: Vec<ChatRequest>,
    runtime: tokio::runtime::Runtime,
}

impl ApiSut {
    fn open(opts: &BenchOptions) -> anyhow::Result<ApiSut> {
        let remote = &opts.eval.remote;
        let spec = ModelSpec::parse(&opts.eval.model)?;
        let endpoint = Endpoint::resolve(
            spec.clone(),
            remote.base_url.as_deref(),
            remote.api_key_file.as_deref(),
        )?;
        if endpoint.base_url == spec.provider.default_base_url() && !opts.allow_paid {
            bail!(
                "{} is the provider's paid API and a load test sends hundreds of requests; pass --allow-paid to do it anyway, or --base-url for your own server",
                endpoint.base_url
            );
        }
        let client = ApiClient::new(
            endpoint,
            ClientOptions {
                stream: !remote.no_stream,
                timeout: remote.timeout,
                ..ClientOptions::default()
            },
        )?;
        let requests = super::remote::requests(&opts.eval, &opts.eval.generative)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        Ok(ApiSut {
            client: Arc::new(client),
            requests,
            runtime,
        })
    }
}

impl Sut for ApiSut {
    fn run_batch(&self, items: &[usize]) -> Result<(), String> {
        for &i in items {
            let request = &self.requests[i];
            self.runtime
                .block_on(self.client.send(request))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        1
    }
}
