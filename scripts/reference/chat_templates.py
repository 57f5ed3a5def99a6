#!/usr/bin/env python3
"""Chat templates rendered by transformers' apply_chat_template, for minillm's template tests.

    python3 scripts/reference/chat_templates.py crates/minillm/tests/fixtures/chat_templates

The templates are those the model families publish in tokenizer_config.json (transcribed here,
since this machine cannot reach the hub): ChatML with SmolLM2's default system line and
Qwen2.5's (with its tool branches), Llama 3 Instruct's header tokens, Llama 2 chat's and
Mistral Instruct's [INST] forms (which raise on roles that do not alternate), and minillm's own.
Each is rendered, as text and as token ids, for a set of conversations, with and without the
generation prompt, by a PreTrainedTokenizerFast holding a tokenizer with the template's special
tokens (GPT-2 tiny's byte-level BPE for the first ones, the SentencePiece fixture for [INST]).
Writes cases.json and the tokenizers it used.
"""
import json
import sys
from pathlib import Path

from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[2] / "crates/minillm/tests/fixtures"

SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# minillm's own (src/chat/mod.rs JINJA).
MINILLM = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

CHATML = ["<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
MINILLM_SPECIALS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# (name, template, tokenizer file, special tokens to add, bos, eos)
TEMPLATES = [
    ("smollm2", SMOLLM2, "chatml.json", CHATML, None, "<|im_end|>"),
    ("qwen2.5", QWEN25, "chatml.json", CHATML, None, "<|im_end|>"),
    ("llama3", LLAMA3, "llama3.json", LLAMA3_SPECIALS, "<|begin_of_text|>", "<|eot_id|>"),
    ("llama2", LLAMA2, "../sentencepiece/legacy.json", [], "<s>", "</s>"),
    ("mistral", MISTRAL, "../sentencepiece/legacy.json", [], "<s>", "</s>"),
    ("minillm", MINILLM, "minillm.json", MINILLM_SPECIALS, None, "<|end|>"),
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "  Héllo, 日本!  "}, {"role": "assistant", "content": " Fine, thanks.\n"},
     {"role": "user", "content": "Tabs\tand\nnew lines"}, {"role": "assistant", "content": "Noted."}],
    [{"role": "assistant", "content": "I speak first."}],
]

# Tools offered and a conversation that calls one and reads its result, rendered by the templates
# that take `tools` (Qwen2.5's) and, for those that do not, by minillm's rewrite into plain turns.
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}}}},
]
TOOL_CONVERSATIONS = [
    [{"role": "user", "content": "Weather in Lima?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Lima?"},
     {"role": "assistant", "content": "", "tool_calls": [
         {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]},
     {"role": "tool", "content": "{\"sky\": \"clear\"}"}],
]


def tokenizer_file(out: Path, file: str, specials: list[str]) -> Path:
    path = out / file
    if not specials:
        return path
    # GPT-2 tiny's byte-level BPE with the template's special tokens after its ids.
    doc = json.loads((ROOT / "gpt2_tiny/tokenizer.json").read_text())
    n = max(doc["model"]["vocab"].values()) + 1
    n = max([n] + [t["id"] + 1 for t in doc["added_tokens"]])
    for i, s in enumerate(specials):
        doc["added_tokens"].append({"id": n + i, "content": s, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    return path


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, template, file, specials, bos, eos in TEMPLATES:
        path = tokenizer_file(out, file, specials)
        tok = PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token=bos, eos_token=eos)
        tok.chat_template = template
        for messages in CONVERSATIONS:
            for gen in (False, True):
                case = {"template": name, "tokenizer": file, "messages": messages, "add_generation_prompt": gen}
                try:
                    case["text"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                    case["ids"] = tok(case["text"], add_special_tokens=False)["input_ids"]
                except Exception as e:  # the template's own raise_exception
                    case["error"] = str(e)
                cases.append(case)
        if "tools" not in template:
            continue
        for messages in TOOL_CONVERSATIONS:
            case = {"template": name, "tokenizer": file, "messages": messages, "tools": TOOLS,
                    "add_generation_prompt": True}
            case["text"] = tok.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
            case["ids"] = tok(case["text"], add_special_tokens=False)["input_ids"]
            cases.append(case)
    doc = {"templates": {name: {"source": t, "bos_token": bos, "eos_token": eos}
                         for name, t, _, _, bos, eos in TEMPLATES},
           "cases": cases}
    (out / "cases.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} refused by their template")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "chat_templates")
