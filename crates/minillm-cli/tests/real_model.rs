//! minillm on a real model as people download it: SmolLM2-135M-Instruct, the Q4_1 GGUF file that
//! llama.cpp's converter and quantizer made (`bash scripts/models/fetch_real.sh` puts it in
//! $MINILLM_REAL_MODELS or ~/.cache/minillm/real-models, SHA-256 checked), against the tool that
//! made it: llama.cpp's own programs from ../shared/tools/llama.cpp (or $MINILLM_LLAMA_CPP), and
//! transformers where Python is given ($MINILLM_PYTHON).
//!
//! Without the file, or without llama.cpp's tools, a test says so loudly and passes; with
//! MINILLM_REQUIRE_REAL_MODELS=1 (set by .ci/run) a missing file fails it, and with
//! MINILLM_REQUIRE_LLAMA_CPP=1 (set by .ci/run where ../shared has the tools) missing tools do.
//!
//! llama.cpp runs with `-fa off`: its CPU flash attention rounds queries to f16, which moves this
//! model's next-token probabilities by up to 10% (" play" 0.147 / " paint" 0.146 with it, 0.129 /
//! 0.165 without; the file's dequantized weights in f32 give 0.137 / 0.169), enough to part greedy
//! paths where minillm and the exact model agree.
mod common;
#[path = "../../minillm/tests/common/tricky.rs"]
#[allow(dead_code)]
mod tricky;

use common::{minillm, minillm_with_input, ok, post_json, temp_dir};
use minillm::chat::{Message, Role};
use minillm::model::kv_cache::KvCache;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn required() -> bool {
    std::env::var("MINILLM_REQUIRE_REAL_MODELS").is_ok_and(|v| v == "1")
}

/// Says why a test does not run, or fails it when the real-model tests are required.
fn skip(why: &str) {
    assert!(!required(), "MINILLM_REQUIRE_REAL_MODELS=1 but {why}");
    eprintln!("\n!!! SKIPPED a real-model test: {why}\n");
}

/// The real model file, fetched by scripts/models/fetch_real.sh.
fn smollm2() -> Option<PathBuf> {
    let dir = std::env::var_os("MINILLM_REAL_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/minillm/real-models")))?;
    let path = dir.join(SMOLLM2);
    if path.is_file() {
        return Some(path);
    }
    skip(&format!("{} is absent: run `bash scripts/models/fetch_real.sh`", path.display()));
    None
}

/// A folder of llama.cpp's tools that run here: $MINILLM_LLAMA_CPP, or ../shared's, whose
/// library symlinks arrive flattened into text files naming their targets (linked again here).
fn llama_cpp() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MINILLM_LLAMA_CPP") {
            return Some(PathBuf::from(dir));
        }
        let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/llama.cpp/bin");
        let tools = tools.canonicalize().ok()?;
        let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama-cpp-bin");
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::create_dir_all(&bin).unwrap();
        for entry in std::fs::read_dir(&tools).unwrap().flatten() {
            let (path, name) = (entry.path(), entry.file_name());
            let flattened =
                name.to_string_lossy().starts_with("lib") && entry.metadata().unwrap().len() < 256;
            let target =
                if flattened { tools.join(std::fs::read_to_string(&path).unwrap().trim()) } else { path };
            std::os::unix::fs::symlink(target, bin.join(name)).unwrap();
        }
        Some(bin)
    });
    if bin.is_none() {
        let why = "llama.cpp's tools are absent (../shared/tools/llama.cpp/bin, or set MINILLM_LLAMA_CPP)";
        let required = std::env::var("MINILLM_REQUIRE_LLAMA_CPP").is_ok_and(|v| v == "1");
        assert!(!required, "MINILLM_REQUIRE_LLAMA_CPP=1 but {why}");
        eprintln!("\n!!! SKIPPED a real-model comparison with llama.cpp: {why}\n");
    }
    bin.clone()
}

/// `llama.cpp TOOL ARGS`, which must succeed.
fn llama(bin: &Path, tool: &str, args: &[&str]) -> Output {
    let out = Command::new(bin.join(tool)).args(args).env("LD_LIBRARY_PATH", bin).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// $MINILLM_PYTHON, if set (it has transformers, torch, gguf and openai under .ci/run).
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("MINILLM_PYTHON").map(PathBuf::from);
    if python.is_none() {
        skip("MINILLM_PYTHON is not set (a Python with transformers, torch, gguf and openai)");
    }
    python
}

/// `llama-server` on the model, stopped when dropped: one process answers every tokenization,
/// continuation and probability query (a tool launch per string would load the model 400 times).
struct LlamaServer {
    child: Child,
    url: String,
}

impl LlamaServer {
    fn start(bin: &Path, model: &Path) -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let port_text = port.to_string();
        let args =
            ["-m", model.to_str().unwrap(), "--port", &port_text, "-t", "2", "-c", "4096", "-fa", "off"];
        let child = Command::new(bin.join("llama-server"))
            .args(args)
            .env("LD_LIBRARY_PATH", bin)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = LlamaServer { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..600 {
            let health = common::agent().get(&format!("{}/health", server.url)).call();
            if health.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("llama-server did not become ready in 60 s");
    }

    fn tokenize(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let body = json!({"content": text, "add_special": false, "parse_special": parse_special});
        let (status, v) = post_json(&self.url, "/tokenize", body);
        assert_eq!(status, 200, "{v}");
        ids(&v["tokens"])
    }

    /// Greedy continuation of `prompt` (ids): each new token with llama.cpp's top probabilities.
    fn greedy(&self, prompt: &[u32], n: usize) -> Vec<(u32, Vec<(u32, f64)>)> {
        let body = json!({"prompt": prompt, "n_predict": n, "temperature": 0, "n_probs": 5,
                          "cache_prompt": false});
        let (status, v) = post_json(&self.url, "/completion", body);
        assert_eq!(status, 200, "{v}");
        let steps = v["completion_probabilities"].as_array().unwrap();
        steps
            .iter()
            .map(|s| {
                let top = s["top_logprobs"].as_array().unwrap();
                let top =
                    top.iter().map(|t| (t["id"].as_u64().unwrap() as u32, t["logprob"].as_f64().unwrap()));
                (s["id"].as_u64().unwrap() as u32, top.collect())
            })
            .collect()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token ids `minillm generate --json` wrote (it must have succeeded).
fn generated_ids(out: &Output) -> Vec<u32> {
    let doc: Value = serde_json::from_str(&ok(out)).unwrap();
    doc["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap() as u32).collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// A page of tinyshakespeare when ../shared has it, else the built-in corpus (the same kind of
/// text: prose with punctuation, newlines and names).
fn page(chars: usize) -> String {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tinyshakespeare.txt");
    let text = std::fs::read_to_string(shared).unwrap_or_else(|_| minillm::corpus::builtin().to_string());
    text.chars().take(chars).collect()
}

#[test]
fn token_ids_equal_llama_cpps() {
    let (Some(model), Some(bin)) = (smollm2(), llama_cpp()) else { return };
    let tok = minillm::io::load_tokenizer(&model).unwrap();
    let server = LlamaServer::start(&bin, &model);
    let mut texts = tricky::tricky_strings(38, 400);
    texts.push(page(6000));
    let mut differ = Vec::new();
    for text in &texts {
        let (ours, theirs) = (tok.encode_ordinary(text), server.tokenize(text, false));
        if ours != theirs {
            differ.push(format!("{text:?}: minillm {ours:?}, llama.cpp {theirs:?}"));
        }
    }
    // Special tokens in the text, parsed as llama.cpp parses a prompt.
    for text in ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "a<|endoftext|>b<|im_end|>"]
    {
        let ours = tok.encode(text, minillm::tokenizer::SpecialTokens::Allow).unwrap();
        let theirs = server.tokenize(text, true);
        if ours != theirs {
            differ.push(format!("{text:?} with specials: minillm {ours:?}, llama.cpp {theirs:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} texts tokenize differently:\n{}",
        differ.len(),
        texts.len() + 2,
        differ.join("\n")
    );
    // The missing bytes themselves: dropped as llama.cpp drops them, and the CLI reads the file.
    let out = ok(&minillm(
        &temp_dir("real-tokenize"),
        &["tokenizer", "encode", "--tokenizer", model.to_str().unwrap(), "!\u{4}!"],
    ));
    assert!(out.starts_with("17 17\n"), "{out}");
}

/// Prompts of 32+ tokens whose greedy continuations are compared.
const PROMPTS: [&str; 8] = [
    "The capital of France is Paris, the capital of Germany is Berlin, the capital of Italy is Rome, the capital of Portugal is Lisbon, and the capital of Spain is",
    "Photosynthesis is the process by which green plants, algae and some bacteria use energy from sunlight, water and carbon dioxide to make their own food. The main product of photosynthesis is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number, counting from zero.\"\"\"\n    if n < 2:\n        return n\n    return",
    "The water cycle describes how water moves around the Earth and its atmosphere. First, the sun heats the water in oceans, rivers and lakes, and it evaporates into",
    "Once upon a time, in a small village at the edge of a great, dark forest full of tall trees, there lived a young girl named Lily who loved to",
    "To make a cup of tea, first boil some water in a kettle. Then put a tea bag into a cup and pour the hot water over it. After that,",
    "In our physics class we learned that the three primary colors of light are red, green and blue. When all three are mixed together in equal amounts, they make",
    "Question: What is the largest planet in our solar system, and how many known moons does it have?\nAnswer: The largest planet in our solar system is",
];

/// How far llama.cpp's greedy token may sit below minillm's top token, in minillm's
/// log-probabilities at the same step, for a step to count as a near-tie. Both tools round the
/// activations to 8 bits and this model's residual stream carries values near 24,000, so the
/// same file's probabilities differ by a few percent between them (llama-perplexity
/// --kl-divergence against the dequantized weights in f32: mean KL 0.0027 for llama.cpp and for
/// minillm alike); where the two leading tokens are that close, greedy paths part.
const NEAR_TIE: f64 = 0.5;

/// minillm's log-probabilities after `prompt` and after each token of `path` but the last, on
/// its decoding path (prefill, then one token at a time, as `generate` runs).
fn minillm_logprobs(loaded: &minillm::io::Loaded, prompt: &[u32], path: &[u32]) -> Vec<Vec<f64>> {
    let log_softmax = |logits: &[f32]| -> Vec<f64> {
        let max = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        logits.iter().map(|&l| l as f64 - max - sum.ln()).collect()
    };
    let mut cache = KvCache::new(&loaded.model, 1);
    let mut out = vec![log_softmax(&loaded.model.prefill(&mut cache, 0, prompt).unwrap())];
    for &t in &path[..path.len().saturating_sub(1)] {
        out.push(log_softmax(loaded.model.decode(&mut cache, &[0], &[t]).unwrap()));
    }
    out
}

/// What one greedy comparison found.
#[derive(Default)]
struct Agreement {
    steps: usize,
    /// Steps where llama.cpp's token is minillm's most likely one too.
    same_top: usize,
    /// The largest gap (nats) between minillm's top token and llama.cpp's.
    worst: f64,
    /// Whether `minillm generate` wrote llama.cpp's tokens, and where it parted if not.
    parted_at: Option<usize>,
}

/// llama.cpp's greedy continuation of `prompt`, followed by minillm step by step (the same
/// prefix at every step): llama.cpp's token must be minillm's top token, or within [`NEAR_TIE`]
/// of it. `ours` is what `minillm generate` wrote on its own.
fn follow_llama_cpp(
    loaded: &minillm::io::Loaded,
    server: &LlamaServer,
    prompt: &[u32],
    ours: &[u32],
    what: &str,
    failures: &mut Vec<String>,
) -> Agreement {
    let path: Vec<u32> = server.greedy(prompt, ours.len().max(1)).iter().map(|s| s.0).collect();
    let lps = minillm_logprobs(loaded, prompt, &path);
    let mut found = Agreement { steps: path.len(), ..Agreement::default() };
    for (k, (lp, &theirs)) in lps.iter().zip(&path).enumerate() {
        let top = (0..lp.len()).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap();
        let gap = lp[top] - lp[theirs as usize];
        found.same_top += usize::from(top == theirs as usize);
        found.worst = found.worst.max(gap);
        if gap >= NEAR_TIE {
            let tok = &loaded.tok;
            failures.push(format!(
                "{what}: at step {k} llama.cpp chose {:?} (minillm's p {:.4}), minillm {:?} (p {:.4}): {gap:.3} nats apart",
                tok.token_text(theirs),
                lp[theirs as usize].exp(),
                tok.token_text(top as u32),
                lp[top].exp()
            ));
        }
    }
    found.parted_at = (0..ours.len().min(path.len())).find(|&i| ours[i] != path[i]);
    found
}

#[test]
fn greedy_text_and_chat_replies_equal_llama_cpps() {
    let (Some(model), Some(bin)) = (smollm2(), llama_cpp()) else { return };
    let loaded = minillm::io::load(&model).unwrap();
    let server = LlamaServer::start(&bin, &model);
    let dir = temp_dir("real-greedy");
    let path = model.to_str().unwrap();
    let (mut failures, mut found) = (Vec::new(), Vec::new());
    for prompt in PROMPTS {
        let ids = loaded.tok.encode_prompt(prompt).unwrap();
        assert!(ids.len() >= 32, "{prompt:?} is only {} tokens", ids.len());
        let args =
            ["generate", "--model", path, "--temperature", "0", "--max-new-tokens", "32", "--json", prompt];
        let ours = generated_ids(&minillm(&dir, &args));
        found.push(follow_llama_cpp(&loaded, &server, &ids, &ours, &format!("{prompt:?}"), &mut failures));
    }
    // Chat: the GGUF's template rendered by minillm, the reply to each question greedily.
    let questions = ["What is the capital of France?", "Name three fruits.", "What is 2 + 2?"];
    for q in questions {
        let ids = loaded.dialogue().render(&loaded.tok, &[Message::new(Role::User, q)]).unwrap();
        let args = [
            "generate",
            "--chat",
            "--model",
            path,
            "--temperature",
            "0",
            "--max-new-tokens",
            "48",
            "--json",
            q,
        ];
        let mut ours = generated_ids(&minillm(&dir, &args));
        if ours.len() < 48 {
            ours.push(2); // the <|im_end|> that ended the reply, which llama.cpp reports too
        }
        found.push(follow_llama_cpp(&loaded, &server, &ids, &ours, &format!("chat {q:?}"), &mut failures));
    }
    let steps: usize = found.iter().map(|f| f.steps).sum();
    let same: usize = found.iter().map(|f| f.same_top).sum();
    let worst = found.iter().map(|f| f.worst).fold(0.0, f64::max);
    let equal = found.iter().filter(|f| f.parted_at.is_none()).count();
    let parted: Vec<String> = found.iter().filter_map(|f| f.parted_at).map(|k| k.to_string()).collect();
    eprintln!(
        "greedy, SmolLM2 Q4_1: llama.cpp's token is minillm's top token at {same} of {steps} steps (elsewhere within {worst:.3} nats); \
         `minillm generate` wrote llama.cpp's text for {equal} of {} prompts (the others parted at steps {})",
        found.len(),
        parted.join(", ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The interactive chat answers the question as llama.cpp does, run as people run it
    // (llama-completion with its defaults), given the same rendered prompt.
    let ids = loaded.dialogue().render(&loaded.tok, &[Message::new(Role::User, questions[0])]).unwrap();
    std::fs::write(dir.join("prompt.txt"), loaded.tok.decode(&ids).unwrap()).unwrap();
    let prompt_file = dir.join("prompt.txt");
    let args = [
        "-m",
        path,
        "-no-cnv",
        "--temp",
        "0",
        "-n",
        "40",
        "-t",
        "2",
        "--no-display-prompt",
        "-f",
        prompt_file.to_str().unwrap(),
    ];
    let theirs = String::from_utf8(llama(&bin, "llama-completion", &args).stdout).unwrap();
    let input = format!("{}\n", questions[0]);
    let ours = ok(&minillm_with_input(
        &dir,
        &["chat", "--model", path, "--temperature", "0", "--max-new-tokens", "40"],
        &input,
    ));
    // llama-completion's output can be cut short at exit: what it printed must begin the reply.
    assert!(
        theirs.trim().len() > 40 && ours.contains(theirs.trim()),
        "chat said {ours:?}; llama.cpp {theirs:?}"
    );
}

#[test]
fn perplexity_within_half_a_percent_of_llama_perplexity() {
    let (Some(model), Some(bin)) = (smollm2(), llama_cpp()) else { return };
    let dir = temp_dir("real-perplexity");
    // No newline at the end: llama.cpp drops a file's last newline before tokenizing.
    let text = page(9000);
    std::fs::write(dir.join("text.txt"), text.trim_end()).unwrap();
    let path = model.to_str().unwrap();
    let args = ["eval", "--model", path, "--data", "text.txt", "--chunk", "512", "--json"];
    let ours =
        serde_json::from_str::<Value>(&ok(&minillm(&dir, &args))).unwrap()["perplexity"].as_f64().unwrap();
    let text_path = dir.join("text.txt");
    let args = ["-m", path, "-f", text_path.to_str().unwrap(), "-c", "512", "-t", "2", "-fa", "off"];
    // llama.cpp's logger runs on its own thread and sometimes loses its last lines at exit.
    let theirs = (0..5)
        .find_map(|_| {
            let err = String::from_utf8_lossy(&llama(&bin, "llama-perplexity", &args).stderr).into_owned();
            let at = err.find("Final estimate: PPL = ")? + "Final estimate: PPL = ".len();
            err[at..].split_whitespace().next()?.parse::<f64>().ok()
        })
        .expect("llama-perplexity printed no estimate in 5 runs");
    eprintln!("perplexity, chunks of 512: minillm {ours:.4}, llama-perplexity {theirs:.4}");
    assert!((ours / theirs - 1.0).abs() < 0.005, "minillm {ours} vs llama-perplexity {theirs}");
}

/// The tensors of two GGUF files: (name, type, bytes) in name order.
fn tensors(path: &Path) -> Vec<(String, String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let file = minillm::io::gguf::Gguf::parse(&bytes, path).unwrap();
    let mut out: Vec<_> = file
        .tensors
        .iter()
        .map(|t| (t.name.clone(), format!("{:?}", t.ty), bytes[t.range()].to_vec()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn requantized_files_equal_llama_quantizes() {
    let (Some(model), Some(bin)) = (smollm2(), llama_cpp()) else { return };
    let dir = temp_dir("real-quantize");
    let path = model.to_str().unwrap();
    for (ours, theirs) in [("q8_0", "Q8_0"), ("q4_K_M", "Q4_K_M")] {
        let (a, b) = (dir.join(format!("minillm-{ours}.gguf")), dir.join(format!("llama-{ours}.gguf")));
        ok(&minillm(&dir, &["quantize", "--model", path, "--type", ours, "--out", a.to_str().unwrap()]));
        llama(&bin, "llama-quantize", &["--allow-requantize", path, b.to_str().unwrap(), theirs, "2"]);
        let (ta, tb) = (tensors(&a), tensors(&b));
        assert_eq!(ta.len(), tb.len(), "{ours}: tensor counts");
        for (x, y) in ta.iter().zip(&tb) {
            assert_eq!((&x.0, &x.1), (&y.0, &y.1), "{ours}: names and types");
            assert!(x.2 == y.2, "{ours}: tensor {} differs from llama-quantize's", x.0);
        }
        // The requantized file runs, and says what it holds.
        let out = ok(&minillm(
            &dir,
            &["inspect", "--model", a.to_str().unwrap(), "--top-k", "1", "The capital of France is"],
        ));
        assert!(out.contains("\" Paris\""), "{ours}: {out}");
    }
}

#[test]
fn every_entry_point_runs_the_real_file() {
    let Some(model) = smollm2() else { return };
    let dir = temp_dir("real-entry-points");
    let path = model.to_str().unwrap();

    let out = ok(&minillm(&dir, &["model", "info", "--model", path]));
    assert!(out.contains("30 layers, 9 heads of 64 sharing 3 KV heads, width 576"), "{out}");
    assert!(out.contains("q4_1 (LM head q8_0)"), "{out}");

    let args = ["inspect", "--model", path, "--json", "--top-k", "3", "The capital of France is"];
    let doc: Value = serde_json::from_str(&ok(&minillm(&dir, &args))).unwrap();
    assert_eq!(doc["next"][0]["text"], " Paris", "{doc}");
    assert!(doc["next"][0]["prob"].as_f64().unwrap() > 0.5, "{doc}");

    let schema = r#"{"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}}, "required": ["city", "population"], "additionalProperties": false}"#;
    let args = [
        "generate",
        "--chat",
        "--model",
        path,
        "--json-schema",
        schema,
        "--temperature",
        "0",
        "--max-new-tokens",
        "60",
        "Give the largest city of France and its population as JSON.",
    ];
    let out = ok(&minillm(&dir, &args));
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["city"].is_string() && v["population"].is_i64() && v.as_object().unwrap().len() == 2, "{v}");

    let ids = ok(&minillm(&dir, &["tokenizer", "encode", "--tokenizer", path, "Hello world!"]));
    assert!(ids.starts_with("19556 905 17\n"), "{ids}");
    let text = ok(&minillm(&dir, &["tokenizer", "decode", "--tokenizer", path, "19556", "905", "17"]));
    assert_eq!(text.trim_end(), "Hello world!");

    // A few steps of SFT on the real model (widened to f32), through its own chat template.
    let data = (0..12)
        .map(|i| {
            json!({"messages": [{"role": "user", "content": format!("What is {i} + 1?")},
                                      {"role": "assistant", "content": format!("{i} + 1 is {}.", i + 1)}]})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("sft.jsonl"), data).unwrap();
    let args = [
        "sft",
        "--model",
        path,
        "--data",
        "sft.jsonl",
        "--out",
        "sft-run",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--context",
        "64",
        "--lr",
        "5e-5",
        "--min-lr",
        "0",
    ];
    let out = ok(&minillm(&dir, &args));
    let metrics = std::fs::read_to_string(dir.join("sft-run/metrics.jsonl")).unwrap();
    let losses: Vec<f64> =
        metrics.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()?["loss"].as_f64()).collect();
    assert!(losses.len() >= 3 && losses.iter().all(|l| l.is_finite() && *l < 10.0), "{out}\n{metrics}");
    let out = ok(&minillm(
        &dir,
        &[
            "generate",
            "--chat",
            "--model",
            "sft-run",
            "--temperature",
            "0",
            "--max-new-tokens",
            "8",
            "What is 3 + 1?",
        ],
    ));
    assert!(!out.trim().is_empty());
}

/// `PYTHON tests/real_model_checks.py ARGS`, which must succeed; its lines are shown.
fn python_checks(python: &Path, args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/real_model_checks.py");
    let out = Command::new(python).arg(script).args(args).output().unwrap();
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "real_model_checks.py {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn chat_template_renders_as_transformers_renders_it() {
    let (Some(model), Some(python)) = (smollm2(), python()) else { return };
    let loaded = minillm::io::load(&model).unwrap();
    let conversations = [
        vec![Message::new(Role::User, "What is the capital of France?")],
        vec![Message::new(Role::System, "Answer in French."), Message::new(Role::User, "Hi!")],
        vec![
            Message::new(Role::User, "Name three fruits."),
            Message::new(Role::Assistant, "Apple, banana, cherry."),
            Message::new(Role::User, "And three vegetables?"),
        ],
    ];
    let cases: Vec<Value> = conversations
        .iter()
        .map(|messages| {
            let ids = loaded.dialogue().render(&loaded.tok, messages).unwrap();
            json!({"messages": messages, "minillm": loaded.tok.decode(&ids).unwrap()})
        })
        .collect();
    let dir = temp_dir("real-template");
    std::fs::write(dir.join("cases.json"), Value::Array(cases).to_string()).unwrap();
    python_checks(&python, &["template", model.to_str().unwrap(), dir.join("cases.json").to_str().unwrap()]);
}

#[test]
fn hf_export_gives_transformers_the_same_next_token_probabilities() {
    let (Some(model), Some(python)) = (smollm2(), python()) else { return };
    let dir = temp_dir("real-export");
    // f32: the dequantized weights, what transformers then runs.
    ok(&minillm(&dir, &["export", "--model", model.to_str().unwrap(), "--format", "hf", "--out", "hf"]));
    let exported = minillm::io::load(&dir.join("hf")).unwrap();
    let cases: Vec<Value> = PROMPTS[..3]
        .iter()
        .map(|prompt| {
            let ids = exported.tok.encode_prompt(prompt).unwrap();
            let probs: Vec<f64> =
                minillm_logprobs(&exported, &ids, &[])[0].iter().map(|lp| lp.exp()).collect();
            json!({"ids": ids, "probs": probs})
        })
        .collect();
    std::fs::write(dir.join("cases.json"), Value::Array(cases).to_string()).unwrap();
    python_checks(
        &python,
        &["export", dir.join("hf").to_str().unwrap(), dir.join("cases.json").to_str().unwrap()],
    );
}

#[test]
fn serve_answers_the_openai_client_and_the_lab_shows_the_model() {
    let (Some(model), Some(python)) = (smollm2(), python()) else { return };
    let args: Vec<String> =
        ["serve", "--model", model.to_str().unwrap(), "--model-name", "smollm2", "--port", "0"]
            .map(String::from)
            .to_vec();
    let server = common::start(&args);
    python_checks(&python, &["serve", &server.url]);
}
