#!/usr/bin/env python3
"""Build the tokenizer / chat-template parity fixture under
crates/dart-text/tests/fixtures/tokenizer/ (issue 10, point 2):

  tokenizer.json         a byte-level BPE tokenizer in the Qwen2 layout (NFC
                         normalizer, the Qwen2 `Split` regex then ByteLevel
                         without regex, ByteLevel post-processor and decoder),
                         trained here by the Python `tokenizers` library on the
                         mixed text in CORPUS; special tokens <|endoftext|>,
                         <|im_start|>, <|im_end|>; the agent tags (<think>,
                         <search>, <information>, <answer> and their closing
                         forms) as added, non-special tokens, as Qwen-family
                         tokenizers carry <think> and <tool_call>.
  tokenizer_config.json  the Hugging Face layout, with the Qwen2.5-Instruct
                         chat template (QWEN25_CHAT_TEMPLATE, verbatim), so that
                         transformers.AutoTokenizer.from_pretrained(folder) loads it.
  encodings.json         for each string of STRINGS (hand-picked edge cases plus
                         seeded random ones): ids, ids_with_special, tokens,
                         offsets, decoded, decoded_skip, as the `tokenizers`
                         library gives them; plus a `batch` entry (encode_batch).
  chat.json              conversations rendered by transformers'
                         apply_chat_template (text and ids).
  README.md              what each file holds, the versions, how to rerun.

Everything is deterministic: rerunning writes the same bytes (check with a
second run into another folder and `diff -r`). The script checks on the way that
transformers' loaded tokenizer agrees with the `tokenizers` one on every string.

  scripts/.venv-ref/bin/python scripts/make_tokenizer_fixture.py [OUT_DIR]

(venv: scripts/requirements-ref.txt). CI never runs this; the output is committed.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "crates" / "dart-text" / "tests" / "fixtures" / "tokenizer"

VOCAB_SIZE = 800
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<search>", "</search>", "<information>", "</information>", "<answer>", "</answer>"]

# Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2 / Qwen2.5, a `Split`
# with behavior Isolated, then ByteLevel with use_regex=false).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat template of Qwen2.5-Instruct's tokenizer_config.json, verbatim (the
# one with the `tools` branch, <tool_call> and <tool_response>). Source: the
# JSON-escaped copy quoted in the Berkeley function-calling leaderboard's
# bfcl/model_handler/oss_model/qwen_fc.py (gorilla), decoded; an independent
# copy in another repository decodes to the same text. Checked by sha256 below.
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""
QWEN25_CHAT_TEMPLATE_SHA256 = "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f"

# ---------------------------------------------------------------------------
# Training text: a few KB of English prose, code, numbers, German / French
# accents, CJK, emoji and Search-R1-style agent transcripts with the tags.

CORPUS = r"""
The quick brown fox jumps over the lazy dog. The dog was not amused, and the fox ran back into the forest.
A language model reads text as a sequence of tokens; a tokenizer turns the text into those tokens and back.
Reinforcement learning with verifiable rewards trains the model on questions whose answers can be checked.
When the agent does not know an answer, it can search: it writes a query, reads the retrieved passages, and thinks again.
It's a small world, isn't it? We'll see. They've gone. I'm here. You're late. He'd know. She'll come. Don't worry!
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 365 1024 2048 65536 3.14159 2.71828 -17 +8 1e-6 1,000,000 12:30 2025-01-31 v0.23.3
Prices: $19.99, €5,50, £7, ¥1200; 50% off; #1 (first); a@b.c; https://example.org/path?q=1&r=2#frag
def add(a, b):
    return a + b

for i in range(10):
    if i % 2 == 0:
        print(f"{i} is even")

fn main() {
    let v: Vec<u32> = (0..10).map(|x| x * x).collect();
    println!("{:?}", v);
}

{"name": "search", "arguments": {"query": "capital of France", "top_k": 3}}
const xs = [1, 2, 3].map((x) => x * 2); // [2, 4, 6]
SELECT name, count(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;
Die Straße in München ist schön. Größe, Übermut, Ärger, Öl, Fuß, Maß. Grüß Gott!
Le garçon a mangé une crème brûlée au café. Noël, naïve, Ça va? Où est l'hôtel? À bientôt, déjà vu, cœur, façade.
El niño comió piña en España. São Paulo, coração, ação. Århus, Ålesund, smørrebrød. Zürich, Kraków, Łódź, Dvořák.
我们在北京学习中文。今天天气很好，我们去公园散步吧。机器学习和自然语言处理。
東京は日本の首都です。ひらがな、カタカナ、漢字。ありがとうございます。
한국어를 공부합니다. 안녕하세요, 감사합니다.
Ελληνικά: καλημέρα κόσμε. Русский: привет, мир. עברית: שלום. العربية: مرحبا بالعالم. हिन्दी: नमस्ते दुनिया. ไทย: สวัสดี
Emoji: 😀 😂 🤖 🚀 ❤️ 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🇩🇪 🇫🇷 🇯🇵 🏳️‍🌈 ✅ ⭐ 🎉 1️⃣
<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>user
Who wrote the novel "War and Peace"?<|im_end|>
<|im_start|>assistant
<think>I should check who the author is.</think>
<search>author of War and Peace</search><|im_end|>
<|im_start|>user
<information>Doc 1 (Title: "War and Peace") War and Peace is a novel by the Russian author Leo Tolstoy, published in 1869.</information><|im_end|>
<|im_start|>assistant
<think>The passage says Leo Tolstoy.</think>
<answer>Leo Tolstoy</answer><|im_end|>
<|endoftext|>
<think>
The question asks for the year. I do not remember it, so I will search.
</think>
<search> when was the Eiffel Tower completed </search>
<information>Doc 1 (Title: "Eiffel Tower") The tower was completed in 1889 for the World's Fair. Doc 2 (Title: "Paris") Paris is the capital of France.</information>
<think>It was completed in 1889.</think>
<answer> 1889 </answer>
<think>Two hops: first the director, then the birthplace.</think><search>director of the film Inception</search><information>Doc 1 (Title: "Inception") Inception is a 2010 film directed by Christopher Nolan.</information><search>Christopher Nolan birthplace</search><information>Doc 1 (Title: "Christopher Nolan") Nolan was born in London, England.</information><answer>London</answer>
Spaces    and    newlines

are all white space.   Trailing spaces
"""
CORPUS += "Tabs\tand\ttabs.\n\tIndented with a tab.\n\t\tTwice.\nWindows line endings\r\nare CR LF.\r\n\r\n"

# ---------------------------------------------------------------------------
# The strings of encodings.json.

def hand_strings() -> list[str]:
    s: list[str] = []
    # empty and ASCII prose
    s += [
        "",
        "Hello",
        "Hello world",
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "the THE The tHe",
        "A language model reads text as a sequence of tokens.",
        "When the agent does not know an answer, it can search.",
        "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "x",
        " ",
        "Reinforcement learning with verifiable rewards.",
        "It's a small world, isn't it? We'll see. They've gone. I'm here. You're late. He'd know.",
        "IT'S DON'T WE'LL THEY'VE I'M YOU'RE HE'D",
        "'s 't 're 've 'm 'll 'd",
        "rock'n'roll o'clock 'quoted' ''double''",
        "don’t (typographic apostrophe)",
    ]
    # punctuation
    s += [
        ".",
        "...",
        "!?",
        "Hello!!!",
        "(a) [b] {c} <d>",
        "\"double\" 'single' `back`",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        "a.b,c;d:e!f?g",
        "--flag=value -x --",
        "email@example.com https://example.org/path?q=1&r=2#frag",
        "C:\\Users\\name\\file.txt",
        "«guillemets» „Anführung“ “curly” ‘single’ — – … •",
        "a->b => c <= d != e == f",
        "<<>> <> </> <=> <!-- comment -->",
    ]
    # digits and long numbers
    s += [
        "0",
        "42",
        "1234567890",
        "3.14159265358979323846",
        "123456789012345678901234567890",
        "-17 +8 1e-6 6.02e23",
        "1,000,000 1.000.000 1 000 000",
        "12:30 2025-01-31 v0.23.3",
        "$19.99 €5,50 £7 ¥1200 50%",
        "x1 x22 x333 1x 22x 333x",
        "٣ ٤ ٥ (Arabic-Indic) ४२ (Devanagari) ５６ (full width) ² ½ Ⅷ",
        "0x1F 0b1010 0o777",
    ]
    # accents: precomposed, decomposed (combining marks), NFC edge cases
    s += [
        "café",
        "cafe\u0301",
        "café cafe\u0301 CAFÉ CAFE\u0301",
        "naïve nai\u0308ve",
        "Straße Größe Übermut Ärger",
        "Stra\u00dfe Gro\u0308\u00dfe U\u0308bermut A\u0308rger",
        "crème brûlée",
        "cre\u0300me bru\u0302le\u0301e",
        "Noël garçon français",
        "Noe\u0308l garc\u0327on franc\u0327ais",
        "\u212b",
        "\u212bngstr\u00f6m \u00c5ngstr\u00f6m A\u030angstro\u0308m",
        "\u2126 \u03a9",
        "e\u0323\u0302 e\u0302\u0323 \u1ec7",
        "Vi\u1ec7t Nam Vie\u0323\u0302t Nam",
        "\u1100\u1161\u11a8 \uac01",
        "\u0301",
        "\u0301abc",
        "a\u0301\u0301\u0301",
        "\ufb01le \ufb02ow \u2460",
        "Åsa Ålesund Århus smørrebrød",
        "Kraków Łódź Dvořák Zürich",
        "Ελληνικά καλημέρα",
        "Русский привет мир",
        "עברית שלום",
        "العربية مرحبا بالعالم",
        "हिन्दी नमस्ते दुनिया",
        "ไทย สวัสดี",
    ]
    # CJK
    s += [
        "中",
        "我们在北京学习中文。",
        "今天天气很好，我们去公园散步吧。",
        "東京は日本の首都です。",
        "ひらがな、カタカナ、漢字。",
        "한국어를 공부합니다.",
        "안녕하세요",
        "中文English混合mixed文本",
        "全角　スペース",
        "（括号）「引号」【方括号】",
        "𠀀𠀁 𪚥 (supplementary ideographs)",
        "123个苹果",
    ]
    # emoji
    s += [
        "😀",
        "😀😂🤖",
        "Emoji: 😀 😂 🤖 🚀",
        "👍🏽",
        "👩\u200d💻",
        "👨\u200d👩\u200d👧\u200d👦",
        "🏳️\u200d🌈",
        "🇩🇪",
        "🇩🇪🇫🇷🇯🇵",
        "1️⃣ #️⃣",
        "❤️ ❤ \u2764\ufe0f",
        "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
        "rocket🚀launch",
        "✅ done ⭐ star 🎉 party",
    ]
    # white space
    s += [
        "  ",
        "    ",
        "\t",
        "\t\t",
        "\n",
        "\n\n",
        "\n\n\n",
        "\r\n",
        "\r\n\r\n",
        "\r",
        " \n ",
        "a  b",
        "a   b    c",
        "a\tb",
        "a\t\tb",
        "a\nb",
        "a\n\nb",
        "a\n\n\nb",
        "a\r\nb",
        "a\r\n\r\nb",
        "a \n b",
        "a   \n   b",
        "line one\nline two\n",
        "trailing spaces   ",
        "   leading spaces",
        "  both  ",
        "\n\nleading newlines",
        "trailing newlines\n\n",
        "\tindented\n\t\tmore",
        "    four-space indent\n        eight",
        "mixed \t \n \r\n whitespace",
        "nbsp\u00a0here",
        "em\u2003space",
        "line\u2028separator",
        "vt\x0bff\x0cnel\x85",
        "ideographic\u3000space",
        "zero\u200bwidth",
        "bom\ufeffinside",
        "\ufeffbom at start",
    ]
    # control characters and odd code points
    s += [
        "\x00",
        "nul\x00inside",
        "bell\x07",
        "\x1b[31mred\x1b[0m",
        "\ufffd replacement",
        "\U0010ffff",
        "\x7f\x80\x9f",
    ]
    # code
    s += [
        "def add(a, b):\n    return a + b\n",
        "for i in range(10):\n    if i % 2 == 0:\n        print(f\"{i} is even\")",
        "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n}",
        "{\"name\": \"search\", \"arguments\": {\"query\": \"capital of France\"}}",
        "const xs = [1, 2, 3].map((x) => x * 2); // [2, 4, 6]",
        "SELECT name FROM users WHERE age >= 18;",
        "<div class=\"a\"><p>Hello</p></div>",
        "if (a<b && c>d) { return; }",
        "x<search>y",
        "#include <stdio.h>\nint main(void) { return 0; }",
    ]
    # every tag alone
    s += list(TAGS)
    # tags glued to words, with spaces and newlines around
    s += [
        "foo<search>bar</search>baz",
        "foo<think>bar</think>baz",
        "a<information>b</information>c",
        "x<answer>y</answer>z",
        "<think>x</think>",
        "<search>query</search>",
        "<information>doc</information>",
        "<answer>Paris</answer>",
        "word<think>",
        "</think>word",
        "1<answer>2</answer>3",
        "é<search>ü</search>中",
        "😀<think>🤖</think>🚀",
        "<search> capital of France </search>",
        "<answer> 1889 </answer>",
        " <think> ",
        "  <search>  ",
        "\n<think>\n",
        "<think>\nI should search.\n</think>\n",
        "<think>\n\n</think>\n\n",
        "\t<answer>\tx\t</answer>\t",
        "a <search> b </search> c",
        "a\n<search>\nb\n</search>\nc",
        "\r\n<information>\r\ntext\r\n</information>\r\n",
    ]
    # nested and repeated tags
    s += [
        "<think><think></think></think>",
        "<search><search>",
        "</search></search>",
        "<think></think>",
        "<search></search><search></search>",
        "<answer><think>nested</think></answer>",
        "<think>a</think><search>b</search><information>c</information><answer>d</answer>",
        "</answer><answer>",
        "<think><search><information><answer>",
        "<think>" * 5,
    ]
    # partial and malformed tags
    s += [
        "<searc",
        "</search",
        "< search>",
        "<search >",
        "</ search>",
        "<SEARCH>",
        "<Think>",
        "<<search>>",
        "<search>>",
        "<<search>",
        "<thinking>",
        "</think",
        "think>",
        "<think",
        "<answer/>",
        "<information",
        "<informatio>",
        "<search><searc</search>",
        "<</search>",
    ]
    # special tokens alone and inside text
    s += list(SPECIAL)
    s += [
        "<|im_start|>user\nhi<|im_end|>\n",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more",
        "<|endoftext|><|endoftext|>",
        "<|im_end|><|im_start|>",
        " <|im_end|> ",
        "\n<|im_start|>\n",
        "<|im_start",
        "<|im_end|",
        "im_start|>",
        "<|IM_START|>",
        "<| im_start |>",
        "<|endoftext|>x<think>y</think>",
        "<|im_start|>assistant\n<think>\nreasoning\n</think>\n<answer>42</answer><|im_end|>",
    ]
    # whole agent transcripts
    s += [
        "<think>The question asks for the year. I do not remember it, so I will search.</think>\n"
        "<search> when was the Eiffel Tower completed </search>",
        "<information>Doc 1 (Title: \"Eiffel Tower\") The tower was completed in 1889 for the World's Fair.</information>",
        "<think>It was completed in 1889.</think>\n<answer> 1889 </answer>",
        "<think>Two hops: first the director, then the birthplace.</think><search>director of the film Inception</search>"
        "<information>Doc 1 (Title: \"Inception\") Inception is a 2010 film directed by Christopher Nolan.</information>"
        "<search>Christopher Nolan birthplace</search><information>Doc 1 (Title: \"Christopher Nolan\") Nolan was born in London.</information>"
        "<answer>London</answer>",
        "<|im_start|>assistant\n<think>I should check who the author is.</think>\n<search>author of War and Peace</search><|im_end|>\n"
        "<|im_start|>user\n<information>Doc 1 (Title: \"War and Peace\") War and Peace is a novel by Leo Tolstoy.</information><|im_end|>\n"
        "<|im_start|>assistant\n<answer>Leo Tolstoy</answer><|im_end|>",
        "<think>\nDie Frage betrifft München.\n</think>\n<search>Einwohner München 2024</search>",
        "<think>北京是中国的首都。</think><answer>北京</answer>",
        "<answer>Ça va 😀</answer>",
    ]
    return s


# Pieces for the random strings: letters, digits, punctuation, white space,
# accents and combining marks, CJK, emoji (with ZWJ / flags / modifiers), and
# whole or broken tags and special tokens.
PIECES = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + ["the", "search", "answer", "think", "information", "Paris", "1889", "im_start", "endoftext"]
    + list("0123456789")
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + ["'s", "'t", "'re", "'ll", "n't"]
    + [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u3000", "\u200b"]
    + list("éèêëàâäçñöüßÅåøœ") + ["\u0301", "\u0308", "\u0327", "\u0323\u0302", "e\u0301", "A\u030a"]
    + list("中文学习北京東京ひらがなカタ한국어") + ["\U00020000"]
    + ["😀", "🤖", "🚀", "👍🏽", "👩\u200d💻", "🇩🇪", "🇫🇷", "❤️", "1️⃣", "\u200d", "\ufe0f"]
    + TAGS + SPECIAL
    + ["<", ">", "</", "<searc", "</search", "< search>", "<|im_", "|>", "<think", "answer>"]
)


def random_strings(n: int, seed: int = 20250110) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([0, 1, 2, 3, 4, 6, 8, 12, 16, 24])
        out.append("".join(rng.choice(PIECES) for _ in range(k)))
    return out


# ---------------------------------------------------------------------------
# Conversations of chat.json.

SEARCH_SYSTEM = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new "
    "information. If you lack some knowledge, call a search engine by <search> query </search>; it returns the top "
    "results between <information> and </information>. When you have the answer, give it inside <answer> and </answer>."
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search Wikipedia & return the top-k passages (<= 5). It's fast.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "the query, e.g. \"Eiffel Tower\""},
                    "top_k": {"type": "integer", "description": "how many passages", "default": 3},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Das Wetter für eine Stadt (°C) — 天气 🌤",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city"],
            },
        },
    },
]

CONVERSATIONS = [
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "default_system",
        "messages": [{"role": "user", "content": "Hello!"}],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "default_system_no_generation_prompt",
        "messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi! How can I help?"}],
        "tools": None,
        "add_generation_prompt": False,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7"},
            {"role": "user", "content": "Another one, bigger than 100?"},
            {"role": "assistant", "content": "101"},
            {"role": "user", "content": "Thanks.\n\nAnd one more line."},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "search_r1_agent",
        "messages": [
            {"role": "system", "content": SEARCH_SYSTEM},
            {"role": "user", "content": "Question: When was the Eiffel Tower completed?"},
            {
                "role": "assistant",
                "content": "<think>I do not remember the year, so I will search.</think>\n<search> Eiffel Tower completed </search>",
            },
            {
                "role": "user",
                "content": "<information>Doc 1 (Title: \"Eiffel Tower\") The tower was completed in 1889 for the World's Fair.\n"
                "Doc 2 (Title: \"Paris\") Paris is the capital of France.</information>",
            },
            {"role": "assistant", "content": "<think>The passage says 1889.</think>\n<answer> 1889 </answer>"},
        ],
        "tools": None,
        "add_generation_prompt": False,
    },
    {
        "name": "search_r1_agent_open_turn",
        "messages": [
            {"role": "user", "content": SEARCH_SYSTEM + "\nQuestion: Where was the director of Inception born?"},
            {
                "role": "assistant",
                "content": "<think>\nTwo hops: first the director, then the birthplace.\n</think>\n<search>director of Inception</search>",
            },
            {"role": "user", "content": "\n\n<information>Doc 1 (Title: \"Inception\") Inception is a 2010 film directed by Christopher Nolan.</information>\n\n"},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "tools_with_system",
        "messages": [
            {"role": "system", "content": "You are a research agent."},
            {"role": "user", "content": "Search for the Eiffel Tower."},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tools_default_system_tool_calls",
        "messages": [
            {"role": "user", "content": "Weather in München and who built the Eiffel Tower?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "München", "unit": "celsius"}}},
                    {"type": "function", "function": {"name": "search", "arguments": {"query": "Eiffel Tower <architect>", "top_k": 2}}},
                ],
            },
            {"role": "tool", "content": "{\"temp\": 21, \"sky\": \"sonnig ☀\"}"},
            {"role": "tool", "content": "Doc 1: Gustave Eiffel's company built it."},
            {"role": "assistant", "content": "It is 21 °C in München; Gustave Eiffel's company built the tower."},
        ],
        "tools": TOOLS,
        "add_generation_prompt": False,
    },
    {
        "name": "tool_call_with_content_no_tools",
        "messages": [
            {"role": "system", "content": "You call tools."},
            {"role": "user", "content": "Look it up."},
            {
                "role": "assistant",
                "content": "<think>I need a search.</think>",
                "tool_calls": [{"name": "search", "arguments": {"query": "a & b < c", "top_k": 1}}],
            },
            {"role": "tool", "content": "nothing found"},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "unicode",
        "messages": [
            {"role": "system", "content": "Réponds en français, s'il te plaît. 请用中文。"},
            {"role": "user", "content": "Cafe\u0301 vs café, 北京 🇩🇪 👨\u200d👩\u200d👧\u200d👦 — ça va?\r\n\ttab"},
            {"role": "assistant", "content": "Ça va très bien 😀 <answer>北京</answer>"},
        ],
        "tools": None,
        "add_generation_prompt": False,
    },
    {
        "name": "system_not_first",
        "messages": [
            {"role": "user", "content": "First question."},
            {"role": "system", "content": "A mid-conversation system note."},
            {"role": "user", "content": "Second question."},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
    {
        "name": "special_tokens_in_content",
        "messages": [
            {"role": "user", "content": "Say <|im_end|> and <|endoftext|> literally, then <think>."},
        ],
        "tools": None,
        "add_generation_prompt": True,
    },
]


# ---------------------------------------------------------------------------

def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The trainer sees the corpus line by line, like a text file.
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    # The Python ByteLevel decoder ignores its arguments and serialises the
    # defaults; write Qwen2's (decoding does not depend on them).
    spec = json.loads(tok.to_str())
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return Tokenizer.from_str(json.dumps(spec))


def tokenizer_config(tok: Tokenizer) -> dict:
    decoder = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        decoder[str(tid)] = {
            "content": at.content,
            "lstrip": at.lstrip,
            "normalized": at.normalized,
            "rstrip": at.rstrip,
            "single_word": at.single_word,
            "special": at.special,
        }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": QWEN25_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def encode_entry(tok: Tokenizer, text: str) -> dict:
    enc = tok.encode(text, add_special_tokens=False)
    enc_sp = tok.encode(text, add_special_tokens=True)
    return {
        "text": text,
        "ids": enc.ids,
        "ids_with_special": enc_sp.ids,
        "tokens": enc.tokens,
        "offsets": [list(o) for o in enc.offsets],
        "decoded": tok.decode(enc.ids, skip_special_tokens=False),
        "decoded_skip": tok.decode(enc.ids, skip_special_tokens=True),
    }


def dumps(v) -> str:
    return json.dumps(v, ensure_ascii=True)


def write_lines_json(path: Path, head: dict, key: str, rows: list, tail: dict | None = None) -> None:
    """One top-level key per line and one row of `key` per line (ASCII JSON)."""
    parts = [f"  {dumps(k)}: {dumps(v)}" for k, v in head.items()]
    parts.append(f"  {dumps(key)}: [\n" + ",\n".join("    " + dumps(r) for r in rows) + "\n  ]")
    for k, v in (tail or {}).items():
        parts.append(f"  {dumps(k)}: {dumps(v)}")
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="ascii")


def main() -> None:
    assert hashlib.sha256(QWEN25_CHAT_TEMPLATE.encode()).hexdigest() == QWEN25_CHAT_TEMPLATE_SHA256
    OUT.mkdir(parents=True, exist_ok=True)

    tok = build_tokenizer()
    (OUT / "tokenizer.json").write_text(tok.to_str(pretty=True) + "\n", encoding="utf-8")
    (OUT / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=True) + "\n", encoding="ascii"
    )
    # Reload both ways from disk, so that the fixture is what gets tested.
    tok = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(OUT))
    assert hf.chat_template == QWEN25_CHAT_TEMPLATE, "transformers did not pick up the chat template"
    assert hf.eos_token == "<|im_end|>" and hf.pad_token == "<|endoftext|>" and hf.bos_token is None

    hand = hand_strings()
    rand = random_strings(110)
    texts = hand + rand
    assert len(set(texts)) >= 300, len(set(texts))
    entries = []
    for i, t in enumerate(texts):
        e = encode_entry(tok, t)
        e = {"id": i, "kind": "hand" if i < len(hand) else "random", **e}
        # transformers' loaded tokenizer must agree with the raw one.
        assert hf.encode(t, add_special_tokens=False) == e["ids"], repr(t)
        assert hf.encode(t, add_special_tokens=True) == e["ids_with_special"], repr(t)
        assert hf.decode(e["ids"], skip_special_tokens=False) == e["decoded"], repr(t)
        assert hf.decode(e["ids"], skip_special_tokens=True) == e["decoded_skip"], repr(t)
        entries.append(e)

    # encode_batch must give what single encodes give: a batch of every 4th
    # string (plus the empty one), recorded with its ids.
    batch_ids = [0] + list(range(1, len(texts), 4))
    batch_texts = [texts[i] for i in batch_ids]
    batch = tok.encode_batch(batch_texts, add_special_tokens=False)
    batch_sp = tok.encode_batch(batch_texts, add_special_tokens=True)
    for i, b, bs in zip(batch_ids, batch, batch_sp):
        assert b.ids == entries[i]["ids"] and bs.ids == entries[i]["ids_with_special"], repr(texts[i])
        assert [list(o) for o in b.offsets] == entries[i]["offsets"]
    batch_entry = {
        "entry_ids": batch_ids,
        "texts": batch_texts,
        "ids": [b.ids for b in batch],
        "ids_with_special": [b.ids for b in batch_sp],
    }

    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    added = {at.content: tid for tid, at in sorted(tok.get_added_tokens_decoder().items())}
    write_lines_json(
        OUT / "encodings.json",
        {
            "about": "tokenizers.Tokenizer.from_file('tokenizer.json'): encode(text, add_special_tokens=False|True); "
            "offsets are in Unicode code points of `text` (the Python binding's char offsets); "
            "decoded = decode(ids, skip_special_tokens=False), decoded_skip = ...True",
            "tokenizers_version": tokenizers.__version__,
            "vocab_size": vocab_size,
            "added_tokens": added,
        },
        "entries",
        entries,
        {"batch": batch_entry},
    )

    chats = []
    for c in CONVERSATIONS:
        rendered = hf.apply_chat_template(
            c["messages"], tools=c["tools"], tokenize=False, add_generation_prompt=c["add_generation_prompt"]
        )
        ids = tok.encode(rendered, add_special_tokens=False).ids
        via_hf = hf.apply_chat_template(
            c["messages"], tools=c["tools"], tokenize=True, add_generation_prompt=c["add_generation_prompt"]
        )
        if isinstance(via_hf, dict) or hasattr(via_hf, "keys"):
            via_hf = via_hf["input_ids"]
        assert list(via_hf) == ids, c["name"]
        chats.append({**c, "rendered": rendered, "ids": ids})
    write_lines_json(
        OUT / "chat.json",
        {
            "about": "rendered = transformers AutoTokenizer.from_pretrained(folder).apply_chat_template(messages, "
            "tools=tools, tokenize=False, add_generation_prompt=...); ids = tokenizers encode(rendered, "
            "add_special_tokens=False).ids, checked equal to apply_chat_template(..., tokenize=True)",
            "transformers_version": transformers.__version__,
        },
        "conversations",
        chats,
    )

    (OUT / "README.md").write_text(readme(vocab_size, len(entries), len(rand), len(batch_ids), len(chats)), encoding="utf-8")

    n_special = sum(1 for at in tok.get_added_tokens_decoder().values() if at.special)
    print(
        f"wrote {OUT}: vocab {vocab_size} (model {tok.get_vocab_size(with_added_tokens=False)}, "
        f"{n_special} special, {len(TAGS)} tags), {len(entries)} strings ({len(rand)} random), "
        f"batch {len(batch_ids)}, {len(chats)} conversations"
    )
    for p in sorted(OUT.iterdir()):
        print(f"  {p.name}: {p.stat().st_size} bytes")


def readme(vocab_size: int, n_strings: int, n_random: int, n_batch: int, n_chats: int) -> str:
    return f"""# Tokenizer and chat-template parity fixture

Written by `scripts/make_tokenizer_fixture.py` (do not edit by hand); rerun with

    scripts/.venv-ref/bin/python scripts/make_tokenizer_fixture.py

Versions: tokenizers {tokenizers.__version__}, transformers {transformers.__version__}
(scripts/requirements-ref.txt). The output is deterministic (two runs give the same bytes).

## Files

- `tokenizer.json`: a byte-level BPE tokenizer in the Qwen2 layout, trained by
  the `tokenizers` library on the mixed text in the script (`CORPUS`):
  NFC normalizer; pre-tokenizer `Split` (the Qwen2 regex, Isolated) then
  `ByteLevel(add_prefix_space=false, use_regex=false)`; ByteLevel post-processor
  (adds nothing) and decoder. {vocab_size} tokens in all: ids 0..2 are the special
  tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` (special, in the model
  vocab), then the 256 byte symbols and the merges, then the agent tags
  `<think>`, `</think>`, `<search>`, `</search>`, `<information>`,
  `</information>`, `<answer>`, `</answer>` as added tokens that are not special
  (`special: false, normalized: false`, like `<think>` / `<tool_call>` in Qwen).
- `tokenizer_config.json`: the Hugging Face layout (`Qwen2Tokenizer`,
  `bos_token: null`, `eos_token: "<|im_end|>"`, `pad_token: "<|endoftext|>"`,
  `added_tokens_decoder`, `model_max_length`) with `chat_template` = the
  Qwen2.5-Instruct template verbatim (tools branch, `<tool_call>`,
  `<tool_response>`, default system prompt). `AutoTokenizer.from_pretrained`
  loads the folder.
- `encodings.json`: `about`, `tokenizers_version`, `vocab_size`, `added_tokens`
  (content -> id), `entries` (one per line) and `batch`. Each of the
  {n_strings} entries ({n_random} of them seeded random strings, `kind:
  "random"`) holds `id`, `kind`, `text`, `ids` (`encode(text,
  add_special_tokens=False)`), `ids_with_special` (`add_special_tokens=True`;
  the same ids, since the ByteLevel post-processor adds no token), `tokens`,
  `offsets` (`[start, end)` in Unicode code points of the original `text`, as
  the Python binding reports them; the Rust crate reports bytes unless
  `encode_char_offsets` is used), `decoded` (`decode(ids,
  skip_special_tokens=False)`) and `decoded_skip` (`skip_special_tokens=True`).
  `batch` holds `entry_ids`, `texts`, `ids` and `ids_with_special` of one
  `encode_batch` call over {n_batch} of the strings; they equal the single encodes.
  transformers' loaded tokenizer was checked to give the same ids and decodes.
- `chat.json`: `about`, `transformers_version` and {n_chats} `conversations`,
  each with `name`, `messages`, `tools` (or null), `add_generation_prompt`,
  `rendered` (`apply_chat_template(messages, tools=tools, tokenize=False,
  add_generation_prompt=...)`) and `ids` (`encode(rendered,
  add_special_tokens=False)` of the `tokenizers` Tokenizer, checked equal to
  `apply_chat_template(..., tokenize=True)`).

JSON is ASCII (`\\uXXXX` escapes), so that decomposed accents and invisible
characters survive editors and git untouched.

## What a port has to reproduce

- Special and added tokens are matched in the raw text even with
  `add_special_tokens=False` (`"<|im_end|>"` inside a user message is the
  single special token); a space before or after a tag is its own token
  (`" <think> "` is `Ġ`, `<think>`, `Ġ`), the tag does not absorb it.
- `decoded` is the NFC form of `text`, not `text` itself, for the decomposed
  strings; `decoded_skip` drops only the three special tokens, the tags stay.
- Offsets: pieces of one character (a multi-byte UTF-8 character split over
  byte-level tokens) all carry that character's span, so consecutive offsets
  overlap; and where NFC composes several code points into one, the composed
  character maps back to the first original code point only (`"cafe\\u0301"`
  ends with `[3, 4]`, not `[3, 5]`; a Hangul jamo triple maps to `[0, 1]`), so
  offsets can leave gaps.
- `tojson` in transformers is `json.dumps` with `ensure_ascii=False`, no HTML
  escaping and insertion key order (the tools carry `<`, `&`, `'` and non-ASCII
  text on purpose); stock Jinja2's `tojson` sorts keys and escapes `<`, `>`,
  `&`, `'` and non-ASCII, and minijinja's escapes the HTML characters too.
  A reader of chat.json must keep the key order of `tools` and of tool-call
  `arguments` (serde_json needs `preserve_order`).
- The chat template is Qwen2.5-Instruct's, verbatim (sha256
  `{QWEN25_CHAT_TEMPLATE_SHA256}`): the default system prompt when the first
  message is not a system one, tool calls with and without the `function`
  wrapper, consecutive `tool` messages folded into one user turn.
"""


if __name__ == "__main__":
    main()
