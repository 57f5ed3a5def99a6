//! Runs every command shown in docs/guide/*.md and checks its output, so the guide cannot drift
//! from the tool.
//!
//! In a chapter, a ```console block holds `$ minillm ...` lines, each followed by the output it
//! must print (stdout, then stderr); `NAME=value` words before `minillm` set its environment.
//! In expected output, a line `...` stands for any number of
//! lines and `[..]` for any text within a line. Output that starts with `error:` means the
//! command must fail; otherwise it must succeed. All chapters run in order in one fresh
//! temporary directory, as a reader working through the guide would, so later commands (and
//! chapters) can use files earlier ones wrote. `mpirun ... minillm ...` lines (data-parallel
//! training) run when minillm is built with the `mpi` feature and are skipped, saying so,
//! otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn parse_chapter(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    for (i, line) in text.lines().enumerate() {
        if !in_console {
            in_console = line.trim() == "```console";
            continue;
        }
        if line.trim() == "```" {
            in_console = false;
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push(Step { line: i + 1, command: cmd.to_string(), expected: Vec::new() });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        } else {
            panic!("line {}: output before any command in a console block", i + 1);
        }
    }
    steps
}

/// Splits a command line like a shell would for the simple quoting the guide uses.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' => words.extend(word.take()),
            '"' | '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => w.extend(chars.next()),
                        Some(other) => w.push(other),
                        None => panic!("unclosed quote in {line}"),
                    }
                }
            }
            _ => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

fn line_matches(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => {
            !actual.is_empty() && line_matches(first, actual[0]) && lines_match(rest, &actual[1..])
        }
    }
}

fn trimmed(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().map(|l| l.trim_end().to_string()).collect();
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

fn run_chapter(path: &Path, dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let steps = parse_chapter(&text);
    assert!(!steps.is_empty(), "{} shows no commands", path.display());
    let mut failures = Vec::new();
    for step in steps {
        let words = split_words(&step.command);
        // Leading NAME=value words set the command's environment, as in a shell.
        let n_env = words.iter().take_while(|w| w.contains('=') && !w.starts_with('-')).count();
        let bin = env!("CARGO_BIN_EXE_minillm");
        let mut command = match words[n_env].as_str() {
            "minillm" => Command::new(bin),
            "mpirun" if !cfg!(feature = "mpi") => {
                eprintln!("{}:{}: skipped (needs a build with --features mpi)", path.display(), step.line);
                continue;
            }
            "mpirun" => {
                let mut c = Command::new("mpirun");
                // As root in CI, and 2 ranks on 2 cores.
                c.args(["--allow-run-as-root", "--oversubscribe"])
                    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
                c
            }
            other => panic!("{}:{}: only minillm commands run, not {other}", path.display(), step.line),
        };
        for assignment in &words[..n_env] {
            let (name, value) = assignment.split_once('=').unwrap();
            command.env(name, value);
        }
        let args = words[n_env + 1..].iter().map(|w| if w == "minillm" { bin } else { w.as_str() });
        let out = command.args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap();
        let actual_text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let actual = trimmed(&actual_text.lines().map(str::to_string).collect::<Vec<_>>());
        let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
        let expected = trimmed(&step.expected);
        let should_fail = expected.first().is_some_and(|l| l.starts_with("error:"));
        if !lines_match(&expected, &actual) || out.status.success() == should_fail {
            failures.push(format!(
                "{}:{}: $ {}\n--- expected (exit {}):\n{}\n--- actual (exit {}):\n{}\n",
                path.display(),
                step.line,
                step.command,
                if should_fail { "non-zero" } else { "0" },
                expected.join("\n"),
                out.status,
                actual.join("\n")
            ));
        }
    }
    failures
}

#[test]
fn every_guide_command_prints_what_the_guide_shows() {
    let guide = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide");
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(&guide)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    assert!(!chapters.is_empty(), "no chapters in {}", guide.display());
    let dir = common::temp_dir("guide");
    let failures: Vec<String> = chapters.iter().flat_map(|c| run_chapter(c, &dir)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} guide commands differ:\n\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_matcher_itself_accepts_and_rejects() {
    let exp = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(lines_match(&exp(&["a", "...", "d"]), &["a", "b", "c", "d"]));
    assert!(lines_match(&exp(&["a", "...", "b"]), &["a", "b"]));
    assert!(!lines_match(&exp(&["a", "d"]), &["a", "b", "d"]));
    assert!(line_matches("done in [..]s", "done in 0.31s"));
    assert!(line_matches("[..]x[..]", "axb"));
    assert!(!line_matches("done in [..]s", "done in 0.31ms!"));
    assert!(!line_matches("abc", "abcd"));
    assert_eq!(split_words(r#"minillm a "b c" 'd "e"' "f\"g""#), ["minillm", "a", "b c", "d \"e\"", "f\"g"]);
}
