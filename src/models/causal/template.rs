//! Chat templates rendered the way Hugging Face transformers' `apply_chat_template` renders them.
//!
//! transformers compiles the Jinja source with `trim_blocks=True`, `lstrip_blocks=True` and the
//! `loopcontrols` extension, and renders it with `messages`, `add_generation_prompt` and the
//! tokenizer's special tokens (`bos_token`, `eos_token`, ...), plus the globals
//! `raise_exception(msg)` and `strftime_now(fmt)` and its own `tojson` filter (Python's
//! `json.dumps`, no HTML escaping, `ensure_ascii=False`). This module does the same with
//! minijinja; Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, ...) come
//! from `minijinja_contrib::pycompat`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::quantized::gguf_file;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};

const TEMPLATE_NAME: &str = "chat_template";

pub use crate::models::Message;

/// Why a chat template could not be loaded or rendered. The `origin` names where the template
/// came from (a file, `tokenizer.chat_template` in a GGUF, a tokenizer_config.json); `line` is
/// the 1-based line of the template and `line_text` that line's source.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read chat template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {detail}")]
    Config { origin: String, detail: String },
    #[error("chat template ({origin}) has a syntax error{}: {detail}", location(*.line, .line_text))]
    Syntax {
        origin: String,
        line: Option<usize>,
        line_text: Option<String>,
        detail: String,
    },
    #[error("chat template ({origin}) raised an exception{}: {message}", location(*.line, .line_text))]
    Raised {
        origin: String,
        line: Option<usize>,
        line_text: Option<String>,
        message: String,
    },
    #[error("chat template ({origin}) failed to render{}: {detail}", location(*.line, .line_text))]
    Render {
        origin: String,
        line: Option<usize>,
        line_text: Option<String>,
        detail: String,
    },
}

impl TemplateError {
    /// The 1-based template line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. } | Self::Raised { line, .. } | Self::Render { line, .. } => {
                *line
            }
            _ => None,
        }
    }
}

fn location(line: Option<usize>, line_text: &Option<String>) -> String {
    match (line, line_text) {
        (Some(line), Some(text)) => format!(" at line {line} (`{text}`)"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// Marks an error raised by the template's own `raise_exception(...)` call.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compile a Jinja chat template. Syntax errors are reported here, with their line.
    pub fn new(source: impl Into<String>) -> Result<Self, TemplateError> {
        Self::with_origin(source, "inline template")
    }

    /// As [`ChatTemplate::new`]; `origin` (a path, "GGUF tokenizer.chat_template", ...) is
    /// named in error messages.
    pub fn with_origin(
        source: impl Into<String>,
        origin: impl Into<String>,
    ) -> Result<Self, TemplateError> {
        let source = source.into();
        let origin = origin.into();
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Config {
                origin: origin.clone(),
                detail: e.to_string(),
            })?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(python_methods);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, neutralize_generation_tags(&source))
            .map_err(|e| convert_error(&e, &origin, &source))?;
        Ok(Self {
            env,
            source,
            origin,
            bos_token: None,
            eos_token: None,
        })
    }

    /// Read a Jinja template file (e.g. from `--chat-template`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TemplateError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::with_origin(source, path.display().to_string())
    }

    /// The template in a GGUF's `tokenizer.chat_template`, with the GGUF's BOS/EOS token texts;
    /// `Ok(None)` when the file has no template.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Option<Self>, TemplateError> {
        let origin = "GGUF tokenizer.chat_template";
        let md = &content.metadata;
        let Some(value) = md.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let source = value.to_string().map_err(|_| TemplateError::Config {
            origin: origin.into(),
            detail: "tokenizer.chat_template is not a string".into(),
        })?;
        let token_text = |key: &str| -> Option<String> {
            let id = md.get(key)?.to_u32().ok()? as usize;
            let tokens = md.get("tokenizer.ggml.tokens")?.to_vec().ok()?;
            tokens.get(id)?.to_string().ok().cloned()
        };
        Ok(Some(
            Self::with_origin(source.clone(), origin)?.with_special_tokens(
                token_text("tokenizer.ggml.bos_token_id"),
                token_text("tokenizer.ggml.eos_token_id"),
            ),
        ))
    }

    /// The template of a Hugging Face `tokenizer_config.json` (its `chat_template`: a string, or
    /// a list of `{name, template}` of which `default` is taken), with its `bos_token` and
    /// `eos_token`.
    pub fn from_tokenizer_config(json: &str) -> Result<Self, TemplateError> {
        Self::from_tokenizer_config_with_origin(json, None, "tokenizer_config.json")
    }

    /// A Hugging Face model folder: `chat_template.jinja`, else `chat_template.json`, else the
    /// `chat_template` of `tokenizer_config.json`; special tokens from `tokenizer_config.json`.
    pub fn from_hf_dir(dir: impl AsRef<Path>) -> Result<Self, TemplateError> {
        let dir = dir.as_ref();
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| TemplateError::Read { path, source })
        };
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.exists() {
            read(config_path.clone())?
        } else {
            "{}".to_string()
        };
        let jinja_path = dir.join("chat_template.jinja");
        let json_path = dir.join("chat_template.json");
        let (source, origin) = if jinja_path.exists() {
            (Some(read(jinja_path.clone())?), jinja_path)
        } else if json_path.exists() {
            let parsed: serde_json::Value = serde_json::from_str(&read(json_path.clone())?)
                .map_err(|e| TemplateError::Config {
                    origin: json_path.display().to_string(),
                    detail: e.to_string(),
                })?;
            let source = parsed
                .get("chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            (source, json_path)
        } else {
            (None, config_path)
        };
        Self::from_tokenizer_config_with_origin(&config, source, &origin.display().to_string())
    }

    fn from_tokenizer_config_with_origin(
        json: &str,
        source: Option<String>,
        origin: &str,
    ) -> Result<Self, TemplateError> {
        let config_error = |detail: String| TemplateError::Config {
            origin: origin.to_string(),
            detail,
        };
        let config: serde_json::Value =
            serde_json::from_str(json).map_err(|e| config_error(e.to_string()))?;
        let source = match source {
            Some(source) => source,
            None => match config.get("chat_template") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(named)) => named
                    .iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                    .and_then(|t| t.get("template")?.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        config_error("chat_template lists no template named `default`".into())
                    })?,
                Some(_) => return Err(config_error("chat_template is not a string".into())),
                None => return Err(config_error("no chat_template found".into())),
            },
        };
        let special = |key: &str| -> Option<String> {
            match config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        Ok(Self::with_origin(source, origin)?
            .with_special_tokens(special("bos_token"), special("eos_token")))
    }

    /// Set the `bos_token` / `eos_token` strings the template sees (undefined when `None`).
    pub fn with_special_tokens(mut self, bos: Option<String>, eos: Option<String>) -> Self {
        self.bos_token = bos;
        self.eos_token = eos;
        self
    }

    /// The Jinja source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render the conversation, as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| convert_error(&e, &self.origin, &self.source))?;
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => special_token(&self.bos_token),
            eos_token => special_token(&self.eos_token),
        };
        template
            .render(ctx)
            .map_err(|e| convert_error(&e, &self.origin, &self.source))
    }
}

/// A missing special token is undefined (prints as nothing), as in transformers.
fn special_token(token: &Option<String>) -> Value {
    token.as_deref().map_or(Value::UNDEFINED, Value::from)
}

fn convert_error(err: &minijinja::Error, origin: &str, source: &str) -> TemplateError {
    let line = err.line();
    let line_text = line
        .and_then(|n| source.lines().nth(n.checked_sub(1)?))
        .map(|text| {
            let text = text.trim();
            match text.char_indices().nth(120) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text.to_string(),
            }
        });
    let origin = origin.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return TemplateError::Raised {
                origin,
                line,
                line_text,
                message: raised.0.clone(),
            };
        }
        cause = e.source();
    }
    if err.kind() == ErrorKind::SyntaxError {
        TemplateError::Syntax {
            origin,
            line,
            line_text,
            detail: err.detail().unwrap_or("invalid syntax").to_string(),
        }
    } else {
        let detail = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        TemplateError::Render {
            origin,
            line,
            line_text,
            detail,
        }
    }
}

/// transformers' `{% generation %}...{% endgeneration %}` only marks assistant text for masks;
/// it renders its body unchanged. Rewrite it to `{% if true %}...{% endif %}`, keeping the
/// whitespace-control markers and the line numbers.
fn neutralize_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            rest = tag;
            break;
        };
        let inner = &tag[2..end];
        let (open_ctl, body) = split_control(inner, true);
        let (close_ctl, keyword) = split_control(body, false);
        let replacement = match keyword.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(replacement) => {
                let _ = write!(out, "{{%{open_ctl} {replacement} {close_ctl}%}}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Split a leading (or trailing) `-`/`+` whitespace-control marker off a tag's inside.
fn split_control(inner: &str, leading: bool) -> (&str, &str) {
    if leading {
        match inner.chars().next() {
            Some('-' | '+') => (&inner[..1], &inner[1..]),
            _ => ("", inner),
        }
    } else {
        match inner.chars().last() {
            Some('-' | '+') => (&inner[inner.len() - 1..], &inner[..inner.len() - 1]),
            _ => ("", inner),
        }
    }
}

/// Python methods on values: `minijinja_contrib::pycompat`, except `str.title()`, which
/// pycompat capitalises only after whitespace while Python capitalises after any uncased
/// character (`"can't".title() == "Can'T"`).
fn python_methods(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    if method == "title" && args.is_empty() {
        if let Some(s) = value.as_str() {
            let mut out = String::with_capacity(s.len());
            let mut previous_cased = false;
            for c in s.chars() {
                if previous_cased {
                    out.extend(c.to_lowercase());
                } else {
                    out.extend(c.to_uppercase());
                }
                previous_cased = c.is_lowercase() || c.is_uppercase();
            }
            return Ok(Value::from(out));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(
        minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedException(message)),
    )
}

/// `strftime_now(format)`: the current time (UTC) formatted with Python `strftime` codes.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn strftime(format: &str, unix_secs: i64) -> Result<String, minijinja::Error> {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (hour, minute, second) = (
        secs_of_day / 3600,
        (secs_of_day / 60) % 60,
        secs_of_day % 60,
    );
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = chars.next();
        let unpadded = spec == Some('-');
        if unpadded {
            spec = chars.next();
        }
        let num = |out: &mut String, v: i64, width: usize| {
            if unpadded {
                let _ = write!(out, "{v}");
            } else {
                let _ = write!(out, "{v:0width$}");
            }
        };
        match spec {
            Some('Y') => num(&mut out, year, 4),
            Some('y') => num(&mut out, year.rem_euclid(100), 2),
            Some('m') => num(&mut out, month, 2),
            Some('d') => num(&mut out, day, 2),
            Some('e') => {
                let _ = write!(out, "{day:>2}");
            }
            Some('H') => num(&mut out, hour, 2),
            Some('I') => num(&mut out, hour12, 2),
            Some('M') => num(&mut out, minute, 2),
            Some('S') => num(&mut out, second, 2),
            Some('j') => num(&mut out, day_of_year, 3),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('b' | 'h') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('F') => {
                let _ = write!(out, "{year:04}-{month:02}-{day:02}");
            }
            Some('T') => {
                let _ = write!(out, "{hour:02}:{minute:02}:{second:02}");
            }
            Some('%') => out.push('%'),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported format code %{}",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Print values as Jinja2 on Python does: `True`/`False`/`None`, and lists and dicts in
/// Python's `repr` form (`['a', 1]`, `{'k': 2.5}`). Strings and undefined print as usual.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            let mut text = String::new();
            python_repr(&mut text, value);
            out.write_str(&text).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

fn python_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&python_float(f)),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        },
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        let _ = write!(out, "\\x{:02x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        }
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &item);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(out, &key);
                out.push_str(": ");
                python_repr(out, &value.get_item(&key).unwrap_or_default());
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form outside [1e-4, 1e16).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        format!("{f:?}")
    }
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`; without `indent` Python separates items with ", " and keys with ": ".
fn tojson(
    value: Value,
    ensure_ascii: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, minijinja::Error> {
    let ensure_ascii = match ensure_ascii {
        Some(v) => v,
        None => kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => Some(" ".repeat(usize::try_from(v)?)),
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut writer = PyJson {
        out: String::new(),
        indent,
        item_sep,
        key_sep,
        sort_keys,
        ensure_ascii,
    };
    writer.value(&value, 0)?;
    Ok(Value::from_safe_string(writer.out))
}

struct PyJson {
    out: String,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn newline(&mut self, depth: usize) {
        if let Some(indent) = &self.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(indent);
            }
        }
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    let _ = write!(self.out, "{value}");
                } else {
                    let f = f64::try_from(value.clone())?;
                    if f.is_nan() {
                        self.out.push_str("NaN");
                    } else if f.is_infinite() {
                        self.out
                            .push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                    } else {
                        self.out.push_str(&python_float(f));
                    }
                }
            }
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    self.out.push_str("[]");
                    return Ok(());
                }
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        let sep = self.item_sep.clone();
                        self.out.push_str(&sep);
                    }
                    self.newline(depth + 1);
                    self.value(item, depth + 1)?;
                }
                self.newline(depth);
                self.out.push(']');
            }
            ValueKind::Map => {
                let mut entries: Vec<(String, Value)> = value
                    .try_iter()?
                    .map(|key| {
                        let item = value.get_item(&key).unwrap_or_default();
                        let key = match key.kind() {
                            ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                            ValueKind::None | ValueKind::Undefined => "null".to_string(),
                            ValueKind::Bool if key.is_true() => "true".to_string(),
                            ValueKind::Bool => "false".to_string(),
                            _ => key.to_string(),
                        };
                        (key, item)
                    })
                    .collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if entries.is_empty() {
                    self.out.push_str("{}");
                    return Ok(());
                }
                self.out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        let sep = self.item_sep.clone();
                        self.out.push_str(&sep);
                    }
                    self.newline(depth + 1);
                    self.string(key);
                    let sep = self.key_sep.clone();
                    self.out.push_str(&sep);
                    self.value(item, depth + 1)?;
                }
                self.newline(depth);
                self.out.push('}');
            }
            _ => self.string(&value.to_string()),
        }
        Ok(())
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(self.out, "\\u{unit:04x}");
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_instant() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(
            strftime("%Y-%m-%d %H:%M:%S %a %A %b %B %j %I%p %-d %y", t).unwrap(),
            "2024-02-29 13:05:09 Thu Thursday Feb February 060 01PM 29 24"
        );
        assert_eq!(strftime("%d %b %Y", 0).unwrap(), "01 Jan 1970");
    }

    #[test]
    fn generation_tags_become_plain_blocks() {
        assert_eq!(
            neutralize_generation_tags("a{%- generation %}b{% endgeneration -%}c{% if x %}"),
            "a{%- if true %}b{% endif -%}c{% if x %}"
        );
    }
}
