//! The response cache: one SQLite file, one row per exact request, so a rerun of the same
//! benchmark costs nothing and sends nothing. The key is sha256 over provider, base URL,
//! model and the exact body bytes; the API key is in neither the hash nor any column, so a
//! cache file can be shared without leaking it.
//!
//! The `logprobs` column holds JSON: every generated token with its alternatives
//! (`[{"token","logprob","top_logprobs":[{"token","logprob"}]}]`). Rows written before
//! taskbench kept every token hold the first token's alternatives alone
//! (`[{"token","logprob"}]`); they are still read, see [`StoredLogprobs`], so an old cache
//! needs no migration and nothing in it is asked again. One connection behind a mutex: every
//! statement is a single-row lookup or upsert in WAL mode, microseconds, so async tasks may
//! call it directly without a writer thread.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::models::remote::request::{Answer, GeneratedToken, Timing, TokenLogprob, Usage};
use crate::models::remote::spec::Provider;

#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot open the response cache {path} (delete it or pass --no-cache)")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("response cache query failed")]
    Query(#[source] rusqlite::Error),
    #[error("response cache row {key} has a bad {field} column")]
    Corrupt {
        key: String,
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    key           TEXT PRIMARY KEY,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    text          TEXT NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    logprobs      TEXT,
    finish_reason TEXT,
    latency_ns    INTEGER NOT NULL,
    ttft_ns       INTEGER,
    itl_ns        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
)";

#[derive(Debug)]
pub struct Cache {
    conn: Mutex<Connection>,
}

impl Cache {
    pub fn open(path: &Path) -> Result<Cache, CacheError> {
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            // WAL + NORMAL: a crash may lose the last answers, never corrupt the file; and
            // writes don't fsync per row, which would cap a fast run at disk latency.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        let conn = open(path).map_err(|source| CacheError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Cache {
            conn: Mutex::new(conn),
        })
    }

    pub fn in_memory() -> Result<Cache, CacheError> {
        let conn = Connection::open_in_memory().map_err(CacheError::Query)?;
        conn.execute_batch(SCHEMA).map_err(CacheError::Query)?;
        Ok(Cache {
            conn: Mutex::new(conn),
        })
    }

    /// sha256 over everything that decides the answer, and nothing secret.
    pub fn key(provider: Provider, base_url: &str, model: &str, body: &[u8]) -> String {
        let mut h = Sha256::new();
        for part in [
            provider.as_str().as_bytes(),
            base_url.as_bytes(),
            model.as_bytes(),
        ] {
            h.update(part);
            h.update([0u8]); // separator: ("ab","c") and ("a","bc") must differ
        }
        h.update(body);
        hex::encode(h.finalize())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Result<Option<Answer>, CacheError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT text, input_tokens, output_tokens, logprobs, finish_reason,
                        latency_ns, ttft_ns, itl_ns FROM responses WHERE key = ?1",
            )
            .map_err(CacheError::Query)?;
        let row = stmt
            .query_row([key], |r| {
                Ok(Row {
                    text: r.get(0)?,
                    input_tokens: r.get(1)?,
                    output_tokens: r.get(2)?,
                    logprobs: r.get(3)?,
                    finish_reason: r.get(4)?,
                    latency_ns: r.get(5)?,
                    ttft_ns: r.get(6)?,
                    itl_ns: r.get(7)?,
                })
            })
            .optional()
            .map_err(CacheError::Query)?;
        row.map(|row| row.into_answer(key)).transpose()
    }

    /// Stores (or, on refresh, replaces) the answer for `key`.
    pub fn put(
        &self,
        key: &str,
        provider: Provider,
        model: &str,
        answer: &Answer,
    ) -> Result<(), CacheError> {
        let logprobs = answer
            .logprobs
            .as_ref()
            .map(|lp| serde_json::to_string(lp).expect("strings and floats serialize"));
        let itl: Vec<u64> = answer.timing.itl.iter().map(|d| nanos(*d)).collect();
        let itl = serde_json::to_string(&itl).expect("integers serialize");
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO responses VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
            )
            .map_err(CacheError::Query)?;
        stmt.execute(params![
            key,
            provider.as_str(),
            model,
            answer.text,
            answer.usage.map(|u| u.input_tokens as i64),
            answer.usage.map(|u| u.output_tokens as i64),
            logprobs,
            answer.finish_reason,
            nanos(answer.timing.latency) as i64,
            answer.timing.ttft.map(|d| nanos(d) as i64),
            itl,
            created,
        ])
        .map_err(CacheError::Query)?;
        Ok(())
    }

    pub fn len(&self) -> Result<usize, CacheError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM responses", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(CacheError::Query)
    }

    pub fn is_empty(&self) -> Result<bool, CacheError> {
        Ok(self.len()? == 0)
    }
}

/// Nanoseconds, so a cached answer's timings compare equal to the fresh ones.
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(i64::MAX as u128) as u64
}

struct Row {
    text: String,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    logprobs: Option<String>,
    finish_reason: Option<String>,
    latency_ns: i64,
    ttft_ns: Option<i64>,
    itl_ns: String,
}

impl Row {
    fn into_answer(self, key: &str) -> Result<Answer, CacheError> {
        let corrupt = |field, source| CacheError::Corrupt {
            key: key.to_string(),
            field,
            source,
        };
        let logprobs = self
            .logprobs
            .map(|s| serde_json::from_str::<StoredLogprobs>(&s))
            .transpose()
            .map_err(|e| corrupt("logprobs", e))?
            .and_then(|stored| stored.into_tokens(&self.text));
        let itl: Vec<u64> = serde_json::from_str(&self.itl_ns).map_err(|e| corrupt("itl_ns", e))?;
        let ns = |v: i64| Duration::from_nanos(v.max(0) as u64);
        let usage = match (self.input_tokens, self.output_tokens) {
            (Some(i), Some(o)) => Some(Usage {
                input_tokens: i.max(0) as u64,
                output_tokens: o.max(0) as u64,
            }),
            _ => None,
        };
        Ok(Answer {
            text: self.text,
            usage,
            logprobs,
            finish_reason: self.finish_reason,
            timing: Timing {
                ttft: self.ttft_ns.map(ns),
                itl: itl.into_iter().map(Duration::from_nanos).collect(),
                latency: ns(self.latency_ns),
            },
            from_cache: true,
        })
    }
}

/// The two layouts of the `logprobs` column, told apart by whether entries carry
/// `top_logprobs`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredLogprobs {
    Tokens(Vec<GeneratedToken>),
    /// The layout before every token was kept: the first token's alternatives.
    FirstTokenAlternatives(Vec<TokenLogprob>),
}

impl StoredLogprobs {
    /// An old row describes the whole generation only when the answer is one token, the
    /// alternative whose text is the answer; a longer answer's later tokens were never
    /// stored, so it reads as an answer without log-probabilities.
    fn into_tokens(self, text: &str) -> Option<Vec<GeneratedToken>> {
        match self {
            StoredLogprobs::Tokens(tokens) => Some(tokens),
            StoredLogprobs::FirstTokenAlternatives(alternatives) => {
                let chosen = alternatives.iter().find(|a| a.token == text)?.clone();
                Some(vec![GeneratedToken {
                    token: chosen.token,
                    logprob: chosen.logprob,
                    top_logprobs: alternatives,
                }])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_answer() {
        let c = Cache::in_memory().unwrap();
        let a = Answer {
            text: "pos".into(),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 1,
            }),
            logprobs: Some(vec![GeneratedToken {
                token: "pos".into(),
                logprob: -0.25,
                top_logprobs: vec![
                    TokenLogprob {
                        token: "pos".into(),
                        logprob: -0.25,
                    },
                    TokenLogprob {
                        token: "neg".into(),
                        logprob: -1.5,
                    },
                ],
            }]),
            finish_reason: Some("stop".into()),
            timing: Timing {
                ttft: Some(Duration::from_nanos(1500)),
                itl: vec![Duration::from_nanos(10), Duration::from_nanos(20)],
                latency: Duration::from_nanos(3000),
            },
            from_cache: false,
        };
        let k = Cache::key(Provider::OpenAi, "http://x/v1", "m", b"{}");
        assert_eq!(c.get(&k).unwrap(), None);
        c.put(&k, Provider::OpenAi, "m", &a).unwrap();
        let got = c.get(&k).unwrap().unwrap();
        assert_eq!(
            got,
            Answer {
                from_cache: true,
                ..a
            }
        );
        assert_ne!(
            k,
            Cache::key(Provider::Anthropic, "http://x/v1", "m", b"{}")
        );
        assert_ne!(k, Cache::key(Provider::OpenAi, "http://x/v", "1m", b"{}"));
    }

    /// A row as the previous layout wrote it: the first token's alternatives only.
    fn put_legacy_row(c: &Cache, key: &str, text: &str, logprobs: &str) {
        c.conn()
            .execute(
                "INSERT INTO responses VALUES (?1,'openai','m',?2,1,1,?3,'stop',10,NULL,'[]',0)",
                params![key, text, logprobs],
            )
            .unwrap();
    }

    #[test]
    fn reads_rows_of_the_first_token_layout() {
        let c = Cache::in_memory().unwrap();
        let legacy = r#"[{"token":"pos","logprob":-0.25},{"token":"neg","logprob":-1.5}]"#;
        put_legacy_row(&c, "one-token", "pos", legacy);
        let got = c.get("one-token").unwrap().unwrap().logprobs.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].token.as_str(), got[0].logprob), ("pos", -0.25));
        assert_eq!(got[0].top_logprobs.len(), 2);
        // "positive" took more tokens than the one whose alternatives were kept.
        put_legacy_row(&c, "longer", "positive", legacy);
        assert_eq!(c.get("longer").unwrap().unwrap().logprobs, None);
        put_legacy_row(&c, "broken", "pos", "{not json");
        assert!(matches!(
            c.get("broken"),
            Err(CacheError::Corrupt {
                field: "logprobs",
                ..
            })
        ));
    }
}
