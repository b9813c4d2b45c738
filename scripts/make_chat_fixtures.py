"""Writes the prompt list for the llama.cpp reference and the expected chat-template renderings
into tests/fixtures/smollm2/ (or --out DIR). Part of scripts/make_llamacpp_reference.sh.

smollm2-prompts.txt: one prompt per line (a literal \\n stands for a newline, as gguf.py expects);
    the last lines are conversations rendered with SmolLM2's chat template.
hf-chat-templates.json: templates, inputs and what transformers' apply_chat_template machinery
    (render_jinja_template: trim_blocks, lstrip_blocks, loopcontrols, its tojson and globals) renders.
Run with the anchors venv's python (it has transformers), from anywhere:

    ~/.cache/taskbench-anchors/bin/python scripts/make_chat_fixtures.py [--out DIR]
"""
import argparse, json, os
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_args = argparse.ArgumentParser()
_args.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "smollm2"))
HERE = _args.parse_args().out
os.makedirs(HERE, exist_ok=True)

# tokenizer.chat_template of SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

# Exercises trim_blocks/lstrip_blocks, pycompat string methods, loop controls, namespace,
# tojson (Python json.dumps spacing), printing of Python values, bos/eos tokens.
WHITESPACE = """{% for message in messages %}
    {% if message.role == 'user' %}
User: {{ message.content | trim }}
    {% else %}
{{ message.role | capitalize }}: {{ message.content }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
Assistant:
{% endif %}
"""
PYCOMPAT = """{{- bos_token -}}
{%- set ns = namespace(n=0) -%}
{%- for m in messages -%}
    {%- if m.role == 'system' %}{% continue %}{% endif -%}
    {%- set ns.n = ns.n + 1 %}
[{{ ns.n }}] {{ m.role.upper() }} {{ m.content.strip().replace('  ', ' ').split(' ') | length }} {{ m.content.startswith('Hi') }} {{ m.content.lstrip('Hi! ').title() }}
{{ m | tojson }} {{ m.content.split(' ')[:2] }} {{ none }} {{ {'k': [1, 2.5, true]} }}
    {%- if ns.n >= 2 %}{% break %}{% endif -%}
{%- endfor %}
{{ messages | map(attribute='role') | join(',') }}{{ eos_token }}
{%- if add_generation_prompt %}<gen>{% endif -%}
"""
QWEN_LIKE = """{%- if tools %}
{{- '<|im_start|>system\\n' }}tools
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
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

chats = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Classify the sentiment of the following text as positive, negative or neutral. Reply with one word.\nText: I can't believe how good this phone is!"}],
    [{"role": "system", "content": "You are a strict classifier. Answer only with the label."},
     {"role": "user", "content": "Is this email spam or ham? \"WIN a FREE iPhone now!!! Click http://bit.ly/xyz\""}],
    [{"role": "user", "content": "Hi! My name is Zoë."},
     {"role": "assistant", "content": "Hello Zoë! How can I help you today?"},
     {"role": "user", "content": "Translate 'good morning' into French and count to 5."}],
    [{"role": "user", "content": "Topic of: \"Stocks fell 3.5% after the Fed raised rates by 0.25 points.\" Options: sports, politics, science, business. Answer with one word."}],
]

def render(template, messages, gen, bos="<|im_start|>", eos="<|im_end|>"):
    out, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                   add_generation_prompt=gen, bos_token=bos, eos_token=eos)
    return out[0]

plain = [
    "The capital of France is",
    "Hello, world! How are you today?",
    "I'll be there at 10:30, won't I? They're sure we've done it.",
    "The number 1234567 is larger than 3.14159 and 2.71828.",
    "On 2024-03-15 the invoice #00042 totalled $1,299.99 (incl. 20% VAT).",
    "Call me at +1 (555) 123-4567 or 555.987.6543 before 9pm on 03/15/2024.",
    "A café in Zürich serves crème brûlée to naïve tourists; señor Müller says “déjà vu”.",
    "Emoji time: 🎉🚀 I love it 😂👍🏽 ❤️ 👨‍👩‍👧",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "Привет мир! Γειά σου κόσμε. مرحبا بالعالم",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "for (int i = 0; i < n; ++i) { sum += arr[i]; }  // C loop",
    "Multiple     spaces\tand\ttabs  here   ",
    " leading space and two trailing  ",
    "   three leading spaces",
    "\tTabbed start and a\n newline followed by space\n\n\nthree newlines",
    "Math: ∑ i² = n(n+1)/2 and √2 ≈ 1.41421, ½ + ¼ = ¾, 10⁻³",
    "Fullwidth Ｔｅｓｔ １２３ and circled ①②③ and Arabic-Indic ٣٤٥",
    "{\"name\": \"Alice\", \"age\": 30, \"tags\": [\"a\", \"b\"], \"ok\": true}",
    "ALL CAPS SHOUTING and MiXeD CaSe, don'T, DON'T, I'M, it's, we'LL",
    "Visit https://example.com/path?q=1&lang=en or mail john.doe@example.org!!! ... --- *** ### ok…",
    "Special tokens inline: <|endoftext|> ends a document and <|im_end|> ends a turn.",
    "## Heading\n- item 1\n- item 2\n\n```python\nx = [i**2 for i in range(10)]\n```",
    "Classify the sentiment of this review as positive or negative.\nReview: The movie was absolutely wonderful, I loved every minute.\nAnswer:",
    "Classify the sentiment of this review as positive or negative.\nReview: Terrible service, the food was cold and the waiter was rude.\nAnswer:",
    "Question: Which category fits the headline 'NASA launches new Mars rover'? Options: sports, politics, science, business.\nAnswer:",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
lines = plain + [render(SMOLLM2, m, True) for m in chats]
with open(os.path.join(HERE, "smollm2-prompts.txt"), "w", encoding="utf-8") as f:
    for line in lines:
        assert "\\n" not in line, line
        f.write(line.replace("\n", "\\n") + "\n")

cases = []
for name, template in [("smollm2", SMOLLM2), ("whitespace", WHITESPACE), ("pycompat", PYCOMPAT), ("qwen-like", QWEN_LIKE)]:
    for i, messages in enumerate(chats):
        for gen in (True, False):
            cases.append({"name": f"{name}/{i}/{'gen' if gen else 'nogen'}", "template": template,
                          "messages": messages, "add_generation_prompt": gen,
                          "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                          "rendered": render(template, messages, gen)})
with open(os.path.join(HERE, "hf-chat-templates.json"), "w", encoding="utf-8") as f:
    json.dump(cases, f, ensure_ascii=False, indent=1)
print(f"{len(lines)} prompts, {len(cases)} template cases")
