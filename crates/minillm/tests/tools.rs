//! Tool calls: conversations with tools rendered for templates without tool support, replies
//! read back into calls (and never a call the reply did not make), and a grammar that makes any
//! model write well-formed calls with arguments valid under each tool's schema.

use minillm::Tokenizer;
use minillm::chat::tools::{Tool, ToolCall, as_plain_turns, call_grammar, parse_calls};
use minillm::chat::{Dialogue, Message, Role};
use minillm::constrain::Grammars;
use minillm::rng::Rng;
use minillm::sample::{SamplerConfig, sample};
use serde_json::json;

fn tools() -> Vec<Tool> {
    let weather = json!({"type": "object", "properties": {"city": {"enum": ["Lima", "Rome"]}}, "required": ["city"], "additionalProperties": false});
    let add = json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}, "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"], "additionalProperties": false});
    vec![
        Tool::new("get_weather", Some("The weather in a city.".into()), Some(weather)).unwrap(),
        Tool::new("add", None, Some(add)).unwrap(),
    ]
}

#[test]
fn a_conversation_with_tools_becomes_plain_turns() {
    let mut call = Message::new(Role::Assistant, "");
    call.tool_calls = vec![ToolCall::new("call_1".into(), "get_weather".into(), json!({"city": "Lima"}))];
    let mut result = Message::new(Role::Tool, "{\"sky\": \"clear\"}");
    result.tool_call_id = Some("call_1".into());
    let messages =
        vec![Message::new(Role::System, "Be brief."), Message::new(Role::User, "Weather?"), call, result];
    let turns = as_plain_turns(&messages, &tools());
    let roles: Vec<Role> = turns.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User]);
    assert!(turns[0].content.starts_with("Be brief.\n\nYou may call one or more functions"));
    assert!(turns[0].content.contains(
        r#"{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.""#
    ));
    assert_eq!(
        turns[2].content,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>"
    );
    assert_eq!(turns[3].content, "<tool_response>\n{\"sky\": \"clear\"}\n</tool_response>");
    // Plain dialogue (a model without a template) reads the same turns.
    let text = Dialogue::Plain.render_text(Tokenizer::gpt2(), &turns).unwrap();
    assert!(text.contains("User: <tool_response>") && text.ends_with("Assistant:"), "{text}");
}

#[test]
fn replies_are_read_back_into_calls_only_when_well_formed() {
    let tools = tools();
    let reply = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
    let (text, calls) = parse_calls(reply, &tools);
    assert_eq!(text, "Let me check.");
    assert_eq!(
        calls,
        [("get_weather".into(), json!({"city": "Lima"})), ("add".into(), json!({"a": 1, "b": 2}))]
    );
    for not_a_call in [
        "No tools needed.",
        "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>", // not offered
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1\n</tool_call>", // broken JSON
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {}}",                 // never closed
        "<tool_call>\n{\"name\": \"add\", \"arguments\": [1]}\n</tool_call>",  // not an object
        "<tool_call>\n{\"name\": \"add\", \"arguments\": {}}\n</tool_call> and then prose",
    ] {
        assert_eq!(parse_calls(not_a_call, &tools), (not_a_call.to_string(), vec![]), "{not_a_call}");
    }
    assert!(Tool::new("no spaces", None, None).is_err() && Tool::new("f", None, Some(json!([]))).is_err());
}

/// Random logits over GPT-2's vocabulary, constrained: every reply is calls that parse back,
/// to the named tool when one is named, one call when calls may not run in parallel.
#[test]
fn the_call_grammar_makes_any_model_call_well() {
    let tok = Tokenizer::gpt2();
    let end = tok.end_of_text().unwrap();
    let grammars = Grammars::new(tok, &[end]).unwrap();
    let tools = tools();
    let sampler = SamplerConfig { temperature: 1.0, ..Default::default() };
    for (only, parallel) in [(None, false), (Some("add"), false), (None, true)] {
        let spec = call_grammar(&tools, only, parallel).unwrap();
        for seed in 0..6 {
            let mut c = grammars.constraint(&spec).unwrap();
            let mut rng = Rng::new(seed);
            let mut ids = Vec::new();
            loop {
                let mut logits: Vec<f32> = (0..tok.vocab_size()).map(|_| 3.0 * rng.normal() as f32).collect();
                c.restrict(&mut logits).unwrap();
                let id = sample(&logits, &ids, &sampler, &mut rng);
                if id == end {
                    break;
                }
                c.accept(id).unwrap();
                ids.push(id);
                assert!(ids.len() < 300, "no end: {}", tok.decode(&ids).unwrap());
            }
            let reply = tok.decode(&ids).unwrap();
            let (text, calls) = parse_calls(&reply, &tools);
            assert!(text.is_empty() && !calls.is_empty(), "{reply}");
            assert!(parallel || calls.len() == 1, "{reply}");
            for (name, args) in &calls {
                assert!(only.is_none_or(|o| o == name), "{reply}");
                let valid = match name.as_str() {
                    "add" => {
                        ["a", "b"].iter().all(|k| args[k].as_i64().is_some_and(|v| (0..=99).contains(&v)))
                    }
                    _ => args["city"] == "Lima" || args["city"] == "Rome",
                };
                assert!(valid && args.as_object().unwrap().len() <= 2, "{reply}");
            }
        }
    }
    let e = call_grammar(&tools, Some("nope"), false).unwrap_err().to_string();
    assert!(e.contains("no tool is named 'nope'"), "{e}");
}

/// A template that renders tools in another format than `<tool_call>` is refused, not misread;
/// one without tools gets the plain-turn rewrite.
#[test]
fn templates_with_another_call_format_are_refused() {
    use minillm::chat::jinja::JinjaTemplate;
    let tok = Tokenizer::gpt2();
    let llama_like =
        "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
    let t = JinjaTemplate::new(llama_like, None, None, vec![]).unwrap();
    let ask = [Message::new(Role::User, "Weather?")];
    let e = Dialogue::Jinja(t).render_with_tools(tok, &ask, &tools()).unwrap_err().to_string();
    assert!(e.contains("format minillm does not read yet"), "{e}");
    let plain =
        JinjaTemplate::new("{% for m in messages %}{{ m.content }}{% endfor %}", None, None, vec![]).unwrap();
    let ids = Dialogue::Jinja(plain).render_with_tools(tok, &ask, &tools()).unwrap();
    assert!(tok.decode(&ids).unwrap().contains("<tools>"), "the plain-turn rewrite lists the tools");
}

/// Streamed, a reply's text passes at once, a call is held whole; split at every byte, the text
/// let through is what the whole reply parses to.
#[test]
fn a_streamed_reply_passes_text_and_holds_calls() {
    use minillm::chat::tools::CallSieve;
    let tools = tools();
    let call = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>";
    for reply in [
        "Plain text, no calls <tool_ at the end".to_string(),
        format!("Let me add.\n{call}"),
        call.to_string(),
        format!("{call} then prose"),
        "a < b and <tool_call> broken".to_string(),
    ] {
        let (text, calls) = parse_calls(&reply, &tools);
        for step in [1, 3, 7, 1000] {
            let mut sieve = CallSieve::default();
            let mut shown = String::new();
            let mut cut = 0;
            while cut < reply.len() {
                let mut next = (cut + step).min(reply.len());
                while !reply.is_char_boundary(next) {
                    next += 1;
                }
                shown.push_str(&sieve.push(&reply[cut..next]));
                if calls.is_empty() || !reply[..next].contains("<tool_call>") {
                    assert!(reply.starts_with(&shown), "{reply:?}: {shown:?}");
                }
                cut = next;
            }
            let (rest, got) = sieve.finish(&tools);
            shown.push_str(&rest);
            assert_eq!((shown.as_str(), &got), (text.as_str(), &calls), "{reply:?} in pieces of {step}");
        }
    }
}
