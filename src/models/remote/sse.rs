//! An incremental server-sent-events decoder: bytes arrive in arbitrary chunks (a TCP read
//! may end mid-line or mid-UTF-8 character), events come out whole. Only what both APIs use:
//! `event:` and `data:` fields, `:` comments, blank-line dispatch; lines end in `\n` or
//! `\r\n` (a lone `\r` terminator, legal but unused by any chat API, is not supported).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `None` means the default `message` type (OpenAI sends none).
    pub event: Option<String>,
    /// `data:` lines joined by `\n`.
    pub data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // Lossy: a stray invalid byte should garble one token, not fail the answer.
            let line = String::from_utf8_lossy(line).into_owned();
            if let Some(ev) = self.line(&line) {
                events.push(ev);
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        events
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            return data.map(|data| SseEvent { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {} // `id:`, `retry:` and unknown fields mean nothing to a one-shot request.
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_chunking() {
        let stream =
            "event: a\r\ndata: {\"x\":1}\r\n\r\n: ping\n\ndata: l1\ndata: l2\n\ndata: [DONE]\n\n";
        let want = vec![
            SseEvent {
                event: Some("a".into()),
                data: "{\"x\":1}".into(),
            },
            SseEvent {
                event: None,
                data: "l1\nl2".into(),
            },
            SseEvent {
                event: None,
                data: "[DONE]".into(),
            },
        ];
        for size in 1..stream.len() {
            let mut d = SseDecoder::default();
            let got: Vec<_> = stream
                .as_bytes()
                .chunks(size)
                .flat_map(|c| d.push(c))
                .collect();
            assert_eq!(got, want, "chunk size {size}");
        }
    }

    #[test]
    fn split_utf8_is_not_garbled() {
        let s = "data: héllo\n\n".as_bytes();
        let mut d = SseDecoder::default();
        let mut got = d.push(&s[..8]); // cuts 'é' in half
        got.extend(d.push(&s[8..]));
        assert_eq!(got[0].data, "héllo");
    }
}
