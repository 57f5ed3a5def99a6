//! A reply as it arrives from the engine: its text (whole characters, stop strings cut), its
//! tokens' log-probabilities, and how it ended.

use super::Shared;
use super::engine::{Event, Finish};
use crate::cli::http::{Api, ApiError};
use axum::http::StatusCode;
use minillm::Tokenizer;
use minillm::sample::TextStream;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// One token's log-probability, with alternatives, as the reply was made.
pub struct TokenLogprob {
    pub text: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// Turns the engine's tokens into text: whole UTF-8 only, stop strings held back and cut.
pub struct Reply {
    tok: Arc<Tokenizer>,
    /// Tokens received (only counted: the stream holds what text needs).
    tokens: usize,
    stream: TextStream<Arc<Tokenizer>>,
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
    /// The stop string that ended the reply.
    pub stopped_by: Option<String>,
    pub error: Option<String>,
}

impl Reply {
    pub fn new(tok: Arc<Tokenizer>, stop: Vec<String>) -> Reply {
        Reply {
            stream: TextStream::new(tok.clone(), stop),
            tok,
            tokens: 0,
            text: String::new(),
            logprobs: Vec::new(),
            finish: None,
            stopped_by: None,
            error: None,
        }
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn done(&self) -> bool {
        self.finish.is_some() || self.error.is_some()
    }

    /// Takes one event; returns the text it adds to the reply (possibly empty).
    pub fn take(&mut self, event: Event) -> String {
        match event {
            Event::Token { id, logprob, top } => {
                self.tokens += 1;
                self.logprobs.push(TokenLogprob {
                    text: self.tok.token_text(id),
                    logprob,
                    top: top.into_iter().map(|(t, lp)| (self.tok.token_text(t), lp)).collect(),
                });
                let safe = match self.stream.push(id) {
                    Ok(safe) => safe,
                    Err(e) => {
                        self.error = Some(e.to_string());
                        return String::new();
                    }
                };
                self.text.push_str(&safe);
                if let Some(stop) = self.stream.stopped_by() {
                    self.finish = Some(Finish::Stop);
                    self.stopped_by = Some(stop.to_string());
                }
                safe
            }
            Event::Done(finish) => {
                self.finish = Some(finish);
                let tail = self.stream.finish();
                self.text.push_str(&tail);
                tail
            }
            Event::Failed(message) => {
                self.error = Some(message);
                String::new()
            }
        }
    }
}

/// Runs `rx` to the end (or the deadline) for a non-streaming answer.
pub async fn collect(
    shared: &Shared,
    api: Api,
    mut rx: UnboundedReceiver<Event>,
    stop: Vec<String>,
) -> Result<Reply, ApiError> {
    let mut reply = Reply::new(shared.tok.clone(), stop);
    let deadline = tokio::time::Instant::now() + shared.timeout;
    while !reply.done() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => {
                reply.take(event);
            }
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::status(
                    api,
                    StatusCode::GATEWAY_TIMEOUT,
                    "the request took longer than the server's timeout",
                ));
            }
        }
    }
    if let Some(e) = reply.error.take() {
        return Err(ApiError::status(
            api,
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generation failed: {e}"),
        ));
    }
    Ok(reply)
}
