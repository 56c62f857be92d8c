#!/usr/bin/env python3
"""Writes tests/fixtures/chat/<name>.json: a chat template, conversations, and
what transformers renders for each (tests/test_chat_template.c checks sprig's
renderer byte for byte against them).

Rendering goes through transformers' own render_jinja_template (the function
apply_chat_template(tokenize=False) calls: its sandboxed Jinja environment with
trim_blocks, lstrip_blocks, raise_exception, tojson, strftime_now, tools=None,
documents=None), so no model weights or tokenizer files are needed. The
special tokens are passed as apply_chat_template passes the tokenizer's.

The template texts are the published ones (Hugging Face tokenizer_config.json
of each model, as mirrored in public test suites); "mistral-v0.3" is
Mistral-7B-Instruct-v0.3's, tools branches included.

    pip install transformers jinja2
    python3 tools/make_chat_fixtures.py [out_dir]
"""
import json

import jinja2
import os
import sys

from transformers.utils.chat_template_utils import render_jinja_template

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

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

LLAMA31 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

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

MISTRAL01 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

MISTRAL03 = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS][" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST]" + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST]" + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}
        {{- "[TOOL_CALLS][" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- message["content"] + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS]{"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

# name: (template, bos_token, eos_token, takes a system message)
TEMPLATES = {
    "llama2-chat": (LLAMA2, "<s>", "</s>", True),
    "llama3-instruct": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>", True),
    "llama3.1-instruct": (LLAMA31, "<|begin_of_text|>", "<|eot_id|>", True),
    "chatml": (CHATML, "<s>", "<|im_end|>", True),
    "smollm2-instruct": (SMOLLM2, "<|im_start|>", "<|im_end|>", True),
    "qwen2.5-instruct": (QWEN25, None, "<|im_end|>", True),
    "mistral-v0.1": (MISTRAL01, "<s>", "</s>", False),
    "mistral-v0.3": (MISTRAL03, "<s>", "</s>", True),
}


def m(role, content):
    return {"role": role, "content": content}


def conversations(system_ok):
    sys_ = [m("system", "You are a terse assistant.")] if system_ok else []
    convs = [
        ("one-user", [m("user", "Hello!")], True),
        ("one-user-no-gen", [m("user", "Hello!")], False),
        ("multi-turn", [m("user", "Hi"), m("assistant", "Hello, how can I help?"), m("user", "Tell me a joke.")], True),
        ("multi-turn-ends-assistant", [m("user", "Hi"), m("assistant", "Hello!"), m("user", "Bye"), m("assistant", "Goodbye.")], False),
        ("whitespace", [m("user", "  padded question \n"), m("assistant", "\n  padded answer  "), m("user", "\tagain\t")], True),
        ("empty-content", [m("user", "")], True),
        ("unicode", [m("user", "Grüße, 世界! 🙂 — «ok»"), m("assistant", "Ça va ✓"), m("user", "日本語で")], True),
        ("template-like-text", [m("user", "{{ not a tag }} {% if %} <|im_end|> [INST]")], True),
        ("newlines", [m("user", "line one\nline two\n\nline four")], True),
    ]
    if system_ok:
        convs += [
            ("system-user", sys_ + [m("user", "What is 2+2?")], True),
            ("system-multi-turn", sys_ + [m("user", "Hi"), m("assistant", "Hello."), m("user", "Name a color.")], True),
            ("system-empty", [m("system", "")] + [m("user", "Hi")], True),
        ]
    # Alternation violations: the LLaMA-2 and Mistral templates raise; the others render.
    convs += [
        ("two-users", [m("user", "one"), m("user", "two")], True),
        ("assistant-first", [m("assistant", "I start."), m("user", "ok")], True),
    ]
    if not system_ok:
        convs.append(("system-refused", [m("system", "sys"), m("user", "Hi")], True))
    return convs


def render(template, msgs, gen, bos, eos):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    out = render_jinja_template([msgs], chat_template=template, add_generation_prompt=gen, **kwargs)
    return out[0][0] if isinstance(out, tuple) else out[0]


# Small templates, one case each, for the parts of Jinja the model templates
# lean on: whitespace control, scoping, operators, filters, tests, errors.
FEATURES = [
    ("lstrip-trim", "a\n  {% if true %}\n  b\n  {% endif %}\nc"),
    ("lstrip-plus", "  {%+ if true %}x{% endif %}"),
    ("comment-strip", "x  {#- c #}  y\n{# z #}\nw"),
    ("dash-both", "a \n {{- 'b' -}} \n c"),
    ("trim-plus", "{% if true +%}\nkept{% endif %}"),
    ("expr-no-trim", "{{ 'a' }}\nb"),
    ("trailing-newline", "x\n"),
    ("crlf", "{% if true %}\r\nx{% endif %}"),
    ("loop-scope", "{% for x in [1,2] %}{% if x == 1 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}"),
    ("loop-scope-outer", "{% set y = 1 %}{% for x in [1,2] %}[{{ y }}]{% set y = 7 %}{% endfor %}{{ y }}"),
    ("namespace", "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}"),
    ("loop-vars", "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.revindex }};{% endfor %}"),
    ("loop-filter", "{% for m in messages if m.role == 'user' %}{{ m.content }}{{ ',' if not loop.last }}{% endfor %}"),
    ("loop-else", "{% for m in [] %}x{% else %}empty{% endfor %}"),
    ("loop-break", "{% for x in [1,2,3,4] %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
    ("unpack", "{% for k, v in {'a': 1, 'b': [2, 'x']}.items() %}{{ k }}={{ v }};{% endfor %}"),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'ab' * 3 }} {{ 0.1 + 0.2 }}"),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ undefined_thing }}|{{ [1] + [2] }}"),
    ("compare", "{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'x' in 'xyz' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ none == none }}"),
    ("logic", "{{ 0 or 'b' }} {{ 1 and 'c' }} {{ not 0 }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}] {{ [] or 'empty' }}"),
    ("tests", "{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 1 is number }} {{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ 1 is not none }} {{ 'a' is equalto 'a' }}"),
    ("filters", "{{ '  hi \t\n' | trim }}|{{ 'Hi' | upper }}|{{ 'Hi' | lower }}|{{ [1,2,3] | length }}|{{ 'héllo' | length }}|{{ [1,2] | join('-') }}|{{ [3,4] | first }}{{ [3,4] | last }}|{{ x | default('d') }}|{{ 'a b' | replace(' ', '_') }}|{{ 'ab' | list }}|{{ 'role' | capitalize }}"),
    ("tojson", "{{ {'a': 'x\"y', 'b': [1, 2.5, true, none], 'c': 'é\n'} | tojson }}|{{ {'a': [1, {'b': 2}], 'e': {}} | tojson(indent=2) }}"),
    ("selectattr", "{{ messages | selectattr('role', 'equalto', 'user') | map_free_count }}"),
    ("selectattr-list", "{% for m in messages | selectattr('role', 'equalto', 'user') | list %}{{ m.content }};{% endfor %}{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}"),
    ("methods", "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x'.lstrip() }}|{{ 'x  '.rstrip() }}|{{ 'a,b'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}|{{ {'k': 1}.get('k') }}{{ {'k': 1}.get('z', 'dflt') }}|{{ 'Hi'.upper() }}"),
    ("indexing", "{{ messages[-1].content }}|{{ messages[0]['role'] }}|{{ 'héllo'[1] }}|{{ 'héllo'[1:3] }}|{{ 'abc'[:-1] }}|{{ [1,2,3][1:] }}|{{ messages[99] is defined }}|{{ messages[0].missing is defined }}"),
    ("literals", "{{ \"d'q\" }}|{{ 'a\\tb' }}|{{ 'x' 'y' }}|{{ [1, 'two', none, true] }}|{{ {'k': 'v'} }}|{{ (1, 2) | length }}|{{ 1_000 }}"),
    ("strings-with-braces", "{{- \"}}\" }}{{ '%}' }}{{ '{{' }}"),
    ("none-output", "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e3 }}|{{ 1e16 }}|{{ 0.00001 }}|{{ 1.5e-7 }}|{{ -2.5 }}|{{ 123.456 }}"),
    ("generation-block", "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"),
    ("messages-set", "{% set messages = messages[1:] %}{{ messages | length }}{% for m in messages %}{{ m.role }}{% endfor %}"),
    ("vars", "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools }}|{{ documents is none }}"),
    ("raise", "{% if messages | length > 1 %}{{ raise_exception('too many: ' ~ messages | length) }}{% endif %}ok"),
    ("type-error", "{{ 'a' + 1 }}"),
    ("undefined-attr-error", "{{ nothing.attr }}"),
]

FEATURE_MESSAGES = [m("system", "S"), m("user", "U1"), m("assistant", "A1"), m("user", "U2")]


def features(out_dir):
    cases = []
    for name, template in FEATURES:
        case = {"name": name, "template": template, "messages": FEATURE_MESSAGES, "add_generation_prompt": True}
        try:
            case["expected"] = render(template, FEATURE_MESSAGES, True, "<s>", "</s>")
        except Exception as e:
            case["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            # raise_exception's message must come through; other errors are worded as sprig words them
            case["raised"] = type(e) is jinja2.exceptions.TemplateError
        cases.append(case)
    doc = {"name": "jinja-features", "bos_token": "<s>", "eos_token": "</s>", "template": "", "cases": cases}
    with open(os.path.join(out_dir, "jinja-features.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"jinja-features: {len(cases)} cases ({sum('error' in c for c in cases)} errors)")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "chat")
    os.makedirs(out_dir, exist_ok=True)
    for name, (template, bos, eos, system_ok) in TEMPLATES.items():
        cases = []
        for cname, msgs, gen in conversations(system_ok):
            case = {"name": cname, "messages": msgs, "add_generation_prompt": gen}
            try:
                case["expected"] = render(template, msgs, gen, bos, eos)
            except Exception as e:  # raise_exception(...) in the template
                case["error"] = str(e)
                case["raised"] = type(e) is jinja2.exceptions.TemplateError
            cases.append(case)
        doc = {"name": name, "bos_token": bos, "eos_token": eos, "template": template, "cases": cases}
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        if name == "llama3-instruct":  # tests/cli_chat.sh gives it to the tiny LLaMA-3 model
            with open(os.path.join(out_dir, name + ".jinja"), "w", encoding="utf-8") as f:
                f.write(template)
        n_err = sum("error" in c for c in cases)
        print(f"{name}: {len(cases)} cases ({n_err} errors)")
    features(out_dir)


if __name__ == "__main__":
    main()
