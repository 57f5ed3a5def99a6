//! What the CLI tests share: running the binary (with arguments, or chatting over stdin), a
//! fresh directory, the fixture model, a server on a free loopback port, and small HTTP helpers.
#![allow(dead_code)] // each test file uses its own part of this module

pub mod fake_hub;
pub mod tmpfs;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// `minillm ARGS` run in `dir`, offline (a model name that is not a path must not reach for
/// the network).
pub fn minillm(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

/// `minillm ARGS` in `dir` with `input` typed on its stdin (a chat session).
pub fn minillm_with_input(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(args)
        .current_dir(dir)
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The standard output of a run that must succeed (its stderr shown when it did not).
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The standard error of a run that must fail.
pub fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh, empty directory for one test under target/tmp: the next run reuses it and
/// `cargo clean` removes it (nothing piles up in /tmp).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../minillm/tests/fixtures/gpt2_tiny")
}

/// A running server, stopped when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// The server's process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `minillm serve` on the fixture model (named "tiny" unless `extra` names it) on a free port.
pub fn serve(extra: &[&str]) -> Server {
    let model = fixture();
    let mut args: Vec<String> =
        ["serve", "--model", &model.to_string_lossy(), "--port", "0"].map(String::from).to_vec();
    if !extra.contains(&"--model-name") {
        args.extend(["--model-name".into(), "tiny".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    start(&args)
}

/// Starts `minillm ARGS` (a server given `--port 0`) and reads the address it prints.
pub fn start(args: &[String]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_minillm"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the server prints its address")
        .trim_end_matches('/')
        .to_string();
    Server { child, url }
}

/// Runs `minillm ARGS`, which must succeed, and parses what it printed as JSON.
pub fn cli(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_minillm")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// POSTs `body` (raw text); returns the status and the body text.
pub fn post(url: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().post(&format!("{url}{path}")).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap();
    let status = resp.status().as_u16();
    let mut text = String::new();
    resp.body_mut().as_reader().read_to_string(&mut text).unwrap();
    (status, text)
}

pub fn post_json(url: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = post(url, path, &body.to_string(), &[]);
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

/// The `data:` payloads of a server-sent event stream, with their `event:` names.
pub fn events(text: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((name.take(), d.to_string()));
        }
    }
    out
}

/// A random-weight model with the fixture's tokenizer and a context of `context` tokens (the
/// fixture's 64 leave no room for tool descriptions or a deadline to cut).
pub fn random_model(name: &str, context: usize) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let config = minillm::model::ModelConfig {
        n_layer: 1,
        n_head: 2,
        n_embd: 32,
        block_size: context,
        vocab_size: 512,
        dropout: 0.0,
        bias: true,
        arch: Default::default(),
    };
    minillm::io::save_model(&dir, &minillm::model::Gpt::new(config, 4).unwrap(), None).unwrap();
    std::fs::copy(fixture().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    dir
}
