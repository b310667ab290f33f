//! Reading `text/event-stream`: a small parser (fed bytes as they come)
//! and a reader over a response body with an idle limit.

use std::time::Duration;

use futures::StreamExt;

/// The server sends a keep-alive comment every 15 s; this much silence
/// means the connection died without closing, so reconnect.
const IDLE_LIMIT: Duration = Duration::from_secs(45);

/// One dispatched event: what matters to us of the SSE fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// The SSE line protocol: fields until a blank line dispatches the event;
/// `:` lines are comments (keep-alives).
#[derive(Default)]
pub struct Parser {
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl Parser {
    /// Takes more bytes; answers the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        // Lines end at \n (a \r before it is dropped); a lone \r line end is
        // legal SSE but no server we talk to sends it.
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(event) = self.line(&line) {
                out.push(event);
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                self.id = None;
                return None;
            }
            return Some(SseEvent {
                id: self.id.take(),
                event: self.event.take(),
                data: std::mem::take(&mut self.data).join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// Events from a response body, one at a time.
pub struct Reader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    parser: Parser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl Reader {
    pub fn new(response: reqwest::Response) -> Reader {
        Reader {
            // Owned chunks, so this module needs no `bytes` dependency of its own.
            body: response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec()))
                .boxed(),
            parser: Parser::default(),
            ready: std::collections::VecDeque::new(),
        }
    }

    /// The next event; `Err` says why the stream is over (closed, broken or
    /// silent), after which the caller reconnects.
    pub async fn next(&mut self) -> Result<SseEvent, String> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            match tokio::time::timeout(IDLE_LIMIT, self.body.next()).await {
                Err(_) => return Err(format!("no data for {IDLE_LIMIT:?}")),
                Ok(None) => return Err("the server closed the stream".to_owned()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(chunk))) => self.ready.extend(self.parser.feed(&chunk)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole_and_comments_are_skipped() {
        let mut parser = Parser::default();
        assert!(
            parser
                .feed(b": keep-alive\n\nid: 7\nevent: paus")
                .is_empty()
        );
        let events = parser.feed(b"ed\ndata: {\"a\":1}\r\n\r\nid:8\ndata:x\ndata:y\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    id: Some("7".to_owned()),
                    event: Some("paused".to_owned()),
                    data: "{\"a\":1}".to_owned(),
                },
                SseEvent {
                    id: Some("8".to_owned()),
                    event: None,
                    data: "x\ny".to_owned(),
                },
            ]
        );
    }
}
