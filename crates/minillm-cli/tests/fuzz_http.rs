//! Every endpoint that reads a request body, fuzzed over HTTP: valid requests mutated byte by
//! byte (broken JSON, cut bodies) and node by node (fields replaced by values of every wrong type
//! and at every limit: huge numbers, long strings, 5,000-element lists, 200-deep nesting, unknown
//! fields). The property: every request is answered, 200 with a whole answer or 4xx in the API's
//! error shape (never a 5xx, a dropped connection or a hang), and the server is alive at the end.
//!
//! Seeded (the same requests on every run); `MINILLM_FUZZ_CASES` sets the requests per endpoint
//! (default 200) for a longer run.

mod common;
#[path = "../../minillm/tests/common/mutate.rs"]
mod mutate;

use common::{Server, random_model, start};
use mutate::{apply, apply_json, edit, json_edit};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;

/// A valid request for each endpoint that takes a body, as rich as the endpoint allows.
fn valid_requests() -> Vec<(&'static str, Value)> {
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "The weather.",
        "parameters": {"type": "object", "properties": {"city": {"enum": ["Lima", "Rome"]}}, "required": ["city"]}}}]);
    let schema = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema":
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"]}}});
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "fuzz", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_tokens": 6, "temperature": 0.8, "top_p": 0.9, "n": 2, "seed": 3, "stop": ["\n", "."],
                "logit_bias": {"10": -5, "11": 2}, "logprobs": true, "top_logprobs": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fuzz", "messages": [{"role": "user", "content": "Weather?"}], "tools": tools, "tool_choice": "required", "max_tokens": 40}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "fuzz", "messages": [{"role": "user", "content": "n?"}], "response_format": schema, "max_tokens": 20, "stream": true}),
        ),
        (
            "/v1/completions",
            json!({"model": "fuzz", "prompt": "Once upon", "max_tokens": 6, "echo": true, "logprobs": 2, "stop": "x", "n": 1, "stream": false}),
        ),
        (
            "/v1/messages",
            json!({"model": "fuzz", "max_tokens": 6, "system": "Be brief.", "stop_sequences": ["\n"], "temperature": 0.5,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "stream": true}),
        ),
        (
            "/v1/messages/count_tokens",
            json!({"model": "fuzz", "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        ("/tokenize", json!({"content": "Hello world", "add_special": true})),
        ("/detokenize", json!({"tokens": [72, 101, 108]})),
        ("/lab/api/tokens", json!({"text": "Hello world"})),
        (
            "/lab/api/inspect",
            json!({"text": "Hello world", "top": 5, "layer": 0, "head": 1, "temperature": 0.7, "top_k": 3}),
        ),
    ]
}

/// Checks one answer: a whole 200 answer, or a 4xx in the API's error shape.
fn check(status: u16, text: &str) -> Result<(), String> {
    match status {
        200 if text.starts_with("data:") || text.starts_with("event:") => {
            let ended =
                ["data: [DONE]", "event: message_stop", "event: error"].iter().any(|e| text.contains(e));
            if ended { Ok(()) } else { Err(format!("a stream that did not end: {text}")) }
        }
        200 => serde_json::from_str::<Value>(text).map(drop).map_err(|e| format!("{e}: {text}")),
        400..=499 => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("HTTP {status}, {e}: {text}"))?;
            let message = v["error"]["message"]
                .as_str()
                .ok_or(format!("HTTP {status}, not the error shape: {text}"))?;
            if message.is_empty() || message.contains("{ kind:") {
                return Err(format!("HTTP {status}, not a sentence: {text}"));
            }
            Ok(())
        }
        _ => Err(format!("HTTP {status}: {text}")),
    }
}

fn send(agent: &ureq::Agent, server: &Server, path: &str, body: &[u8]) -> Result<u16, String> {
    let mut resp = agent
        .post(&format!("{}{path}", server.url))
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| format!("no answer: {e}"))?;
    let mut text = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut text)
        .map_err(|e| format!("the answer broke off: {e}"))?;
    let status = resp.status().as_u16();
    check(status, &text).map(|()| status)
}

#[test]
fn every_endpoint_answers_every_mutated_request() {
    let model = random_model("fuzz-http-model", 512);
    let server = start(
        &["serve", "--model", &model.to_string_lossy(), "--port", "0", "--model-name", "fuzz"]
            .map(String::from),
    );
    // A generous bound per request: what takes longer is a hang.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let cases = std::env::var("MINILLM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    for (path, valid) in valid_requests() {
        send(&agent, &server, path, valid.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{path}: the valid request fails: {e}"));
        let config =
            Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(11), ..Default::default() };
        let strategy = prop_oneof![
            proptest::collection::vec(json_edit(), 1..4).prop_map(|e| (e, vec![])),
            proptest::collection::vec(edit(), 1..4).prop_map(|e| (vec![], e)),
        ];
        let answers = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
        let killer = std::cell::RefCell::new(None);
        let result = TestRunner::new(config).run(&strategy, |(json_edits, byte_edits)| {
            let body = apply(apply_json(valid.clone(), &json_edits).to_string().into_bytes(), &byte_edits);
            let sent = String::from_utf8_lossy(&body).chars().take(300).collect::<String>();
            let status = send(&agent, &server, path, &body).map_err(|e| {
                // A dead server fails every later case: keep the request that killed it
                // (shrinking would only find requests to a dead server).
                if agent.get(&format!("{}/health", server.url)).call().is_err() {
                    killer.borrow_mut().get_or_insert_with(|| String::from_utf8_lossy(&body).into_owned());
                }
                TestCaseError::fail(format!("{e}\nrequest: {sent}"))
            })?;
            *answers.borrow_mut().entry(status).or_insert(0) += 1;
            Ok(())
        });
        println!("{path}: {cases} mutated requests, answers by status {:?}", answers.take());
        if let Some(body) = killer.take() {
            panic!("{path}: the server died on this request:\n{body}");
        }
        if let Err(e) = result {
            panic!("{path}: {e}");
        }
    }
    let health = agent.get(&format!("{}/health", server.url)).call().expect("the server is alive");
    assert_eq!(health.status().as_u16(), 200);
}
