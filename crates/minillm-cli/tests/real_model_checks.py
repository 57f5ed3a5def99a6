"""The real model against the Python ecosystem (tests/real_model.rs runs it).

    python real_model_checks.py template MODEL.gguf CASES.json   # chat template as transformers renders it
    python real_model_checks.py export HF_DIR CASES.json         # transformers' next-token probabilities
    python real_model_checks.py serve URL                         # the openai client against `minillm serve`

Each check prints one line per comparison and exits non-zero on the first mismatch.
"""
import json
import sys


def template(gguf_path: str, cases_path: str) -> None:
    import gguf
    from transformers.utils.chat_template_utils import render_jinja_template

    reader = gguf.GGUFReader(gguf_path)
    source = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    for case in json.load(open(cases_path)):
        rendered, _ = render_jinja_template(conversations=[case["messages"]], chat_template=source,
                                            add_generation_prompt=True, bos_token=bos, eos_token=eos)
        assert rendered[0] == case["minillm"], (case["messages"], rendered[0], case["minillm"])
        print("template ok:", repr(rendered[0][-60:]))


def export(hf_dir: str, cases_path: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    for case in json.load(open(cases_path)):
        with torch.no_grad():
            logits = model(torch.tensor([case["ids"]])).logits[0, -1]
        probs = torch.softmax(logits.double(), -1)
        ours = torch.tensor(case["probs"], dtype=torch.float64)
        worst = (probs - ours).abs().max().item()
        assert worst < 1e-4, (case["ids"][:8], worst)
        print(f"export ok: next-token probabilities within {worst:.2e} of transformers'")


def serve(base: str) -> None:
    import urllib.request

    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="not-needed")
    ask = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model="smollm2", messages=ask, max_tokens=24, temperature=0)
    reply = r.choices[0].message.content
    assert reply and r.choices[0].finish_reason in ("stop", "length"), r
    print("openai chat ok:", repr(reply))

    pieces = []
    for chunk in client.chat.completions.create(model="smollm2", messages=ask, max_tokens=24, temperature=0,
                                                stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == reply, ("".join(pieces), reply)
    print("openai stream ok: the same reply in", len(pieces), "pieces")

    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather], tool_choice={"type": "function", "function": {"name": "get_weather"}},
        # One call: with parallel calls allowed, this model calls get_weather again and again.
        parallel_tool_calls=False, max_tokens=48, temperature=0)
    calls = r.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather", r
    args = json.loads(calls[0].function.arguments)
    assert isinstance(args.get("city"), str), args
    print("openai tool call ok:", calls[0].function.name, args)

    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Name a city and its country as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        max_tokens=48, temperature=0)
    import jsonschema
    doc = json.loads(r.choices[0].message.content)
    jsonschema.validate(doc, schema)
    print("openai json_schema ok:", doc)

    card = json.load(urllib.request.urlopen(f"{base}/lab/api/model"))
    text = json.dumps(card)
    assert "576" in text and "49152" in text.replace(",", ""), card
    print("lab model card ok:", {k: card[k] for k in list(card)[:4]})


if __name__ == "__main__":
    {"template": template, "export": export, "serve": serve}[sys.argv[1]](*sys.argv[2:])
