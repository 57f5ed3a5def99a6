"""The seed's client calls, unchanged but for base_url, against `minillm serve` (tests/serve.rs runs it).

    python clients.py http://127.0.0.1:PORT
"""
import sys

import anthropic
import openai
from openai import OpenAI

base = sys.argv[1]
MODEL = "tiny"

client = OpenAI(base_url=f"{base}/v1", api_key="not-needed")
r = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello!"}],
    max_tokens=8, temperature=0, seed=1,
)
assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason in ("stop", "length")
assert r.usage.completion_tokens == 8 or r.choices[0].finish_reason == "stop", r
print("openai chat ok:", repr(r.choices[0].message.content))

pieces = []
for chunk in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello!"}],
                                            max_tokens=8, temperature=0, seed=1, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        assert chunk.usage.completion_tokens > 0
streamed = "".join(pieces)
plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello!"}],
                                       max_tokens=8, temperature=0, seed=1).choices[0].message.content
assert streamed == plain, (streamed, plain)
print("openai stream ok:", repr(streamed))

c = client.completions.create(model=MODEL, prompt="It was the", max_tokens=5, temperature=0)
assert c.choices[0].text and c.usage.prompt_tokens > 0
print("openai completions ok:", repr(c.choices[0].text))

# lm-evaluation-harness's loglikelihood request: prompts as a list (strings and token ids),
# echoed with every prompt token's log-probability, nothing generated.
scored = client.completions.create(model=MODEL, prompt=["It was the best", "Once upon a time"], max_tokens=0,
                                   echo=True, logprobs=1, temperature=0)
assert [ch.index for ch in scored.choices] == [0, 1] and scored.choices[0].text == "It was the best"
lp = scored.choices[0].logprobs
assert lp.token_logprobs[0] is None and all(x < 0 for x in lp.token_logprobs[1:]), lp
assert len(lp.tokens) == len(lp.top_logprobs) and lp.top_logprobs[0] is None
# Greedy where the token is the top alternative, as lm-eval's is_greedy checks.
assert all(max(top.values()) >= x - 1e-6 for x, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]))
print("openai echo logprobs ok:", sum(lp.token_logprobs[1:]))

# No seed: fresh randomness, with the seed used in a header that reproduces the reply.
raw = [client.completions.with_raw_response.create(model=MODEL, prompt="It was", max_tokens=16, temperature=1.5)
       for _ in range(2)]
texts = [r.parse().choices[0].text for r in raw]
seeds = [int(r.headers["x-minillm-seed"]) for r in raw]
assert texts[0] != texts[1], texts
again = client.completions.create(model=MODEL, prompt="It was", max_tokens=16, temperature=1.5, seed=seeds[0])
assert again.choices[0].text == texts[0], (again.choices[0].text, texts[0])
print("openai seeds ok")

try:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                   functions=[{"name": "f", "parameters": {}}])
    raise SystemExit("functions were accepted and ignored")
except openai.BadRequestError as e:
    assert "functions" in str(e), e

a = anthropic.Anthropic(base_url=base, api_key="not-needed")
m = a.messages.create(model=MODEL, max_tokens=8, system="Be brief.",
                      messages=[{"role": "user", "content": "Hello, Claude"}])
assert m.role == "assistant" and m.content[0].type == "text" and m.stop_reason in ("end_turn", "max_tokens")
assert m.usage.output_tokens > 0
print("anthropic ok:", repr(m.content[0].text))

# Prefill: the reply continues the last assistant message and holds only what follows it.
pre = a.messages.create(model=MODEL, max_tokens=6, extra_body={"temperature": 0},
                        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "It was the"}])
cont = client.completions.create(model=MODEL, prompt="User: Hi\nAssistant: It was the", max_tokens=6, temperature=0)
assert pre.content[0].text == cont.choices[0].text, (pre.content[0].text, cont.choices[0].text)
print("anthropic prefill ok:", repr(pre.content[0].text))

with a.messages.stream(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Hello, Claude"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
print("anthropic stream ok:", repr(text))

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError:
    pass
try:
    a.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    raise SystemExit("an unknown model was accepted")
except anthropic.NotFoundError:
    pass
print("errors ok")
