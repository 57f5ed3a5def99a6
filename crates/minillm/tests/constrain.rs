//! Constrained decoding: whatever the logits say, what comes out matches the schema or grammar,
//! and the end token is allowed exactly when the output is complete. Checked with random logits
//! over GPT-2's 50,257 tokens (many multi-byte, many holding quotes, braces and digits, so every
//! token boundary case comes up) and through a model's batched generation.

use minillm::Tokenizer;
use minillm::constrain::{Grammars, Spec};
use minillm::model::{Gpt, ModelConfig};
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, generate_batch, sample};
use serde_json::{Value, json};

fn person() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
            "tall": {"type": "boolean"}
        },
        "required": ["name", "age", "pets", "tall"],
        "additionalProperties": false
    })
}

/// The output drawn from random logits (a fresh draw each step) until the end token; with
/// `end_logit`, the end's logit is set to it before the constraint masks the step.
fn draw(
    grammars: &Grammars,
    spec: &Spec,
    tok: &Tokenizer,
    (end, end_logit): (u32, Option<f32>),
    seed: u64,
) -> String {
    let mut constraint = grammars.constraint(spec).unwrap();
    let mut rng = Rng::new(seed);
    let sampler = SamplerConfig { temperature: 1.0, ..Default::default() };
    let mut ids = Vec::new();
    for _ in 0..400 {
        let mut logits: Vec<f32> = (0..tok.vocab_size()).map(|_| 4.0 * rng.normal() as f32).collect();
        if let Some(x) = end_logit {
            logits[end as usize] = x;
        }
        constraint.restrict(&mut logits).unwrap();
        let id = sample(&logits, &ids, &sampler, &mut rng);
        if id == end {
            assert!(constraint.finished() || !ids.is_empty(), "ended before anything was written");
            return tok.decode(&ids).unwrap();
        }
        constraint.accept(id).unwrap();
        ids.push(id);
    }
    panic!("no end after 400 tokens: {}", tok.decode(&ids).unwrap());
}

#[test]
fn random_logits_still_give_valid_json_for_the_schema() {
    let tok = Tokenizer::gpt2();
    let end = tok.end_of_text().unwrap();
    let grammars = Grammars::new(tok, &[end]).unwrap();
    let spec = Spec::JsonSchema(person());
    for seed in 0..12 {
        let text = draw(&grammars, &spec, tok, (end, None), seed);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 4, "{text}");
        assert!(o["name"].as_str().unwrap().chars().count() <= 10, "{text}");
        assert!((0..=120).contains(&o["age"].as_i64().unwrap()), "{text}");
        let pets = o["pets"].as_array().unwrap();
        assert!(pets.len() <= 3 && pets.iter().all(|p| p == "cat" || p == "dog"), "{text}");
        assert!(o["tall"].is_boolean(), "{text}");
        // Written as Python's json.dumps writes it.
        assert!(text.starts_with("{\"name\": \""), "{text}");
    }
}

#[test]
fn a_lark_grammar() {
    let tok = Tokenizer::gpt2();
    let end = tok.end_of_text().unwrap();
    let grammars = Grammars::new(tok, &[end]).unwrap();
    for seed in 0..5 {
        let answer = draw(
            &grammars,
            &Spec::Lark(r#"start: ("yes" | "no") " " /[0-9]{1,3}/"#.into()),
            tok,
            (end, None),
            seed,
        );
        let (word, number) = answer.split_once(' ').unwrap();
        assert!(["yes", "no"].contains(&word) && number.parse::<u32>().is_ok(), "{answer}");
    }
}

#[test]
fn schemas_that_cannot_be_used_are_refused_with_the_reason() {
    let tok = Tokenizer::gpt2();
    let grammars = Grammars::new(tok, &[tok.end_of_text().unwrap()]).unwrap();
    let bad = Spec::JsonSchema(json!({"type": "object", "properties": {"a": {"$ref": "#/missing"}}}));
    let e = grammars.constraint(&bad).err().unwrap().to_string();
    assert!(e.contains("cannot be used") && e.contains("missing"), "{e}");
    let e = grammars.constraint(&Spec::Lark("start: nothing_defined".into())).err().unwrap().to_string();
    assert!(e.contains("nothing_defined"), "{e}");
    assert!(Grammars::new(tok, &[]).err().unwrap().to_string().contains("end token"));
}

/// Through a model: each continuation of a batch follows its own constraint, and every one that
/// ended by itself is complete JSON.
#[test]
fn batched_generation_follows_each_constraint() {
    let tok = Tokenizer::gpt2();
    let end = tok.end_of_text().unwrap();
    let config = ModelConfig {
        n_layer: 1,
        n_head: 2,
        n_embd: 16,
        block_size: 128,
        vocab_size: tok.vocab_size(),
        dropout: 0.0,
        bias: true,
        arch: Default::default(),
    };
    let model = Gpt::new(config, 5).unwrap();
    let grammars = Grammars::new(tok, &[end]).unwrap();
    let small = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"], "additionalProperties": false});
    let specs =
        [Spec::JsonSchema(small), Spec::Lark(r#"start: "a" | "b""#.into()), Spec::JsonSchema(person())];
    let mut constraints: Vec<_> = specs.iter().map(|s| grammars.constraint(s).unwrap()).collect();
    let prompts = vec![tok.encode_prompt("Hello").unwrap(); 3];
    let mut rngs: Vec<Rng> = (0..3).map(Rng::new).collect();
    let sampler = SamplerConfig { temperature: 1.0, ..Default::default() };
    let out =
        generate_batch(&model, &prompts, 100, &sampler, &mut rngs, &[end], &mut constraints, |_, _, _| true)
            .unwrap();
    let text = |i: usize| tok.decode(&out[i][prompts[i].len()..]).unwrap();
    let n: Value = serde_json::from_str(&text(0)).unwrap();
    assert!((0..=9).contains(&n["n"].as_i64().unwrap()), "{}", text(0));
    assert!(["a", "b"].contains(&text(1).as_str()), "{}", text(1));
    let p = text(2);
    assert!(p.starts_with("{\"name\": \""), "{p}");
}

/// Numbers past 2^53 are refused with a sentence: llguidance 1.9 recursed without end (and the
/// process aborted) on an integer such as -9223372036854775807 in an `enum`, `const` or bound,
/// found by fuzzing the server's tool schemas.
#[test]
fn numbers_past_two_to_the_53_are_refused_not_a_crash() {
    let tok = Tokenizer::gpt2();
    let grammars = Grammars::new(tok, &[tok.end_of_text().unwrap()]).unwrap();
    for n in [
        "-9223372036854775807",
        "-9223372036854775808",
        "9223372036854775807",
        "18446744073709551615",
        "1e300",
    ] {
        for schema in [
            format!(r#"{{"enum": ["a", {n}]}}"#),
            format!(r#"{{"const": {n}}}"#),
            format!(r#"{{"type": "integer", "minimum": {n}}}"#),
        ] {
            let schema: Value = serde_json::from_str(&schema).unwrap();
            let err = grammars
                .constraint(&Spec::JsonSchema(schema.clone()))
                .err()
                .unwrap_or_else(|| panic!("{schema}"));
            assert!(err.to_string().contains("past ±2^53"), "{schema}: {err}");
        }
    }
    for n in ["-9007199254740992", "9007199254740992", "-1234567890", "0.5"] {
        let schema: Value = serde_json::from_str(&format!(r#"{{"enum": ["a", {n}]}}"#)).unwrap();
        assert!(grammars.constraint(&Spec::JsonSchema(schema.clone())).is_ok(), "{schema}");
    }
}

/// A model may name an ordinary token its end (`eos_token_id` in its generation config): the
/// grammar must not allow that token as text, or a reply would end mid-string whenever it is
/// drawn. With the end's logit far above the rest it is drawn the moment it is allowed.
#[test]
fn an_end_token_that_is_ordinary_text_ends_only_a_complete_output() {
    let tok = Tokenizer::gpt2();
    let end = tok.encode_ordinary("a")[0];
    let grammars = Grammars::new(tok, &[end]).unwrap();
    for seed in 0..4 {
        let text = draw(&grammars, &Spec::JsonSchema(person()), tok, (end, Some(50.0)), seed);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v.as_object().unwrap().len(), 4, "{text}");
    }
}
