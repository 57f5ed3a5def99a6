//! lm-evaluation-harness, the standard way to score a model behind an OpenAI-style server, run
//! for real against `minillm serve` (`--model local-completions`) on a small task this test
//! writes: a multiple-choice task (log-likelihood of each choice after a context) and a
//! rolling log-likelihood task (perplexity of whole texts). Every per-sample number lm-eval
//! logs must equal the same texts scored here through the training forward, a path apart from
//! the inference one the server answers with; the task's accuracy and bits per byte follow.
//!
//! Both of lm-eval's tokenizer choices are run: `remote` (the server's /tokenize and
//! /tokenizer_info, for models trained here) and `huggingface` (the model directory's
//! tokenizer.json read by transformers).
//!
//! Needs a Python with `lm_eval[api]` ($MINILLM_PYTHON; .ci/run installs it). Without one the
//! test says so loudly and passes, unless MINILLM_REQUIRE_LM_EVAL=1 (set by .ci/run).

mod common;

use common::{fixture, serve, temp_dir};
use minillm::model::{IGNORE, Trainable};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHOICES: &[(&str, &[&str], usize)] = &[
    ("The cat sat on the", &["mat", "moon", "idea"], 0),
    ("Two plus two is", &["four", "green"], 0),
    ("It was the best of times, it was the", &["worst of times", "best", "dog"], 0),
    ("Water is", &["wet", "dry", "a number"], 0),
];
const TEXTS: &[&str] =
    &["It was the best of times, it was the worst of times.", "A small model can still be scored."];

#[test]
fn lm_eval_scores_match_minillms_own() {
    let Some(python) = lm_eval_python() else { return };
    let dir = temp_dir("lm-eval");
    write_tasks(&dir);
    let server = serve(&[]);
    let loaded = minillm::io::load(&fixture()).unwrap();
    let context = loaded.model.config.block_size;
    let (mut model, _) = Trainable::new(loaded.model, 0);
    model.training = false;
    let tok = loaded.tok;
    let eot = tok.end_of_text().expect("the fixture's tokenizer has <|endoftext|>");
    let encode = |text: &str| tok.encode(text, minillm::tokenizer::SpecialTokens::Allow).unwrap();
    // log P(tokens[from..] | tokens[..from]) through the training forward.
    let mut score = |tokens: &[u32], from: usize| -> f64 {
        let n = tokens.len() - 1;
        let targets: Vec<u32> = (0..n).map(|i| if i + 1 >= from { tokens[i + 1] } else { IGNORE }).collect();
        let loss = model.forward(&tokens[..n], Some(&targets), (1, n)).unwrap().unwrap();
        -(loss as f64) * (tokens.len() - from) as f64
    };
    // As lm-eval encodes a pair: the whole text, split where the context's own tokens end.
    let mut choice_ll = Vec::new();
    for (ctx, choices, _) in CHOICES {
        let context_ids = encode(ctx);
        choice_ll.push(
            choices
                .iter()
                .map(|c| score(&encode(&format!("{ctx} {c}")), context_ids.len()))
                .collect::<Vec<f64>>(),
        );
    }
    let text_ll: Vec<f64> = TEXTS.iter().map(|t| score(&[vec![eot], encode(t)].concat(), 1)).collect();
    let accuracy = CHOICES.iter().zip(&choice_ll).filter(|((_, _, gold), ll)| argmax(ll) == *gold).count()
        as f64
        / CHOICES.len() as f64;
    let bytes: usize = TEXTS.iter().map(|t| t.len()).sum();
    let bits_per_byte = -text_ll.iter().sum::<f64>() / bytes as f64 / std::f64::consts::LN_2;

    let fixture_dir = fixture().to_string_lossy().into_owned();
    for backend in
        ["tokenizer_backend=remote", &format!("tokenizer_backend=huggingface,tokenizer={fixture_dir}")]
    {
        let out = dir.join(backend.split(',').next().unwrap().replace('=', "-"));
        let model_args = format!(
            "model=tiny,base_url={}/v1/completions,{backend},tokenized_requests=True,max_length={},max_retries=1",
            server.url,
            context - 1
        );
        let run = Command::new(&python)
            .args(["-m", "lm_eval", "run", "--model", "local-completions", "--model_args", &model_args])
            .args(["--tasks", "minillm_choice,minillm_rolling", "--include_path"])
            .arg(&dir)
            .arg("--output_path")
            .arg(&out)
            .arg("--log_samples")
            .env("HF_DATASETS_OFFLINE", "1")
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_DATASETS_CACHE", dir.join("datasets-cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "lm_eval with {backend} failed:\n{stderr}");

        let samples = read_samples(&out, "minillm_choice");
        assert_eq!(samples.len(), CHOICES.len());
        for s in &samples {
            let doc = s["doc_id"].as_u64().unwrap() as usize;
            let theirs: Vec<f64> =
                s["filtered_resps"].as_array().unwrap().iter().map(|r| number(&r[0])).collect();
            close(&theirs, &choice_ll[doc], &format!("{backend}, choices of doc {doc}"));
        }
        let samples = read_samples(&out, "minillm_rolling");
        for s in &samples {
            let doc = s["doc_id"].as_u64().unwrap() as usize;
            close(&[number(&s["filtered_resps"][0])], &[text_ll[doc]], &format!("{backend}, text {doc}"));
        }
        let results = read_results(&out);
        let acc = results["results"]["minillm_choice"]["acc,none"].as_f64().unwrap();
        assert!((acc - accuracy).abs() < 1e-9, "{backend}: accuracy {acc}, minillm's {accuracy}");
        let bpb = results["results"]["minillm_rolling"]["bits_per_byte,none"].as_f64().unwrap();
        close(&[bpb], &[bits_per_byte], &format!("{backend}: bits per byte"));
    }
}

fn argmax(values: &[f64]) -> usize {
    (0..values.len()).fold(0, |best, i| if values[i] > values[best] { i } else { best })
}

/// lm-eval logs numbers as strings.
fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap(),
    }
}

fn close(theirs: &[f64], ours: &[f64], what: &str) {
    assert_eq!(theirs.len(), ours.len(), "{what}");
    for (a, b) in theirs.iter().zip(ours) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{what}: lm-eval {theirs:?}, minillm {ours:?}");
    }
}

fn write_tasks(dir: &Path) {
    let lines = |rows: Vec<Value>| rows.iter().map(|r| format!("{r}\n")).collect::<String>();
    let choices = CHOICES
        .iter()
        .map(|(c, ch, a)| serde_json::json!({"context": c, "choices": ch, "answer": a}))
        .collect();
    std::fs::write(dir.join("choice.jsonl"), lines(choices)).unwrap();
    std::fs::write(
        dir.join("text.jsonl"),
        lines(TEXTS.iter().map(|t| serde_json::json!({"text": t})).collect()),
    )
    .unwrap();
    let task = |name: &str, data: &str, rest: &str| {
        let path = dir.join(data);
        format!(
            "task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\ntest_split: test\n{rest}",
            path.display()
        )
    };
    let choice = "output_type: multiple_choice\ndoc_to_text: \"{{context}}\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\nmetric_list:\n  - metric: acc\n";
    let rolling = "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\nmetric_list:\n  - metric: bits_per_byte\n";
    std::fs::write(dir.join("minillm_choice.yaml"), task("minillm_choice", "choice.jsonl", choice)).unwrap();
    std::fs::write(dir.join("minillm_rolling.yaml"), task("minillm_rolling", "text.jsonl", rolling)).unwrap();
}

/// lm-eval writes under OUT/<model>/ files named with the time.
fn output_files(out: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walk(out) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            found.push(entry);
        }
    }
    assert_eq!(found.len(), 1, "one {prefix}* under {}: {found:?}", out.display());
    found
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

fn read_samples(out: &Path, task: &str) -> Vec<Value> {
    let path = &output_files(out, &format!("samples_{task}_"))[0];
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn read_results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&output_files(out, "results_")[0]).unwrap()).unwrap()
}

/// $MINILLM_PYTHON when it has lm_eval; `None` (after saying why) when it does not and the test
/// is not required.
fn lm_eval_python() -> Option<PathBuf> {
    let required = std::env::var("MINILLM_REQUIRE_LM_EVAL").is_ok_and(|v| v == "1");
    let python = std::env::var_os("MINILLM_PYTHON").map(PathBuf::from);
    let has = |p: &Path| {
        Command::new(p).args(["-c", "import lm_eval, tenacity"]).output().is_ok_and(|o| o.status.success())
    };
    match python {
        Some(p) if has(&p) => Some(p),
        _ => {
            assert!(
                !required,
                "\n\n!!! The lm-eval test is required (MINILLM_REQUIRE_LM_EVAL=1) but $MINILLM_PYTHON has no `lm_eval[api]`.\n"
            );
            eprintln!(
                "\n!!! SKIPPED the lm-evaluation-harness test: set MINILLM_PYTHON to a Python with `lm_eval[api]` installed (bash .ci/run does).\n"
            );
            None
        }
    }
}
