"""Writes ts/test/fixtures/reward-python.json: the Search-R1 / SQuAD answer
normalisation and token F1 computed by Python on seeded random strings, so
that ts/test/reward.test.ts can check that ts/src/reward/rules.ts agrees with
Python character for character (string.punctuation, Unicode-aware `\\b`,
`str.split()` white space, `str.lower()`).

Standard library only:  python3 scripts/make_reward_fixture.py
"""

import collections
import json
import pathlib
import random
import re
import string
import sys
import unicodedata

# The normalisation of Search-R1's verl/utils/reward_score/qa_em.py (the SQuAD
# evaluation script's `normalize_answer`).
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


# SQuAD v2's token F1 (both empty -> 1, one empty -> 0).
def f1_score(prediction, gold):
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


# Pieces chosen to hit each rule and the places where Python and JavaScript
# differ by default: articles glued to letters, digits, `_`, accents and
# combining marks; every ASCII punctuation character; the white space that
# only Python splits on (U+001C..U+001F, U+0085) and U+FEFF, which only
# JavaScript's \s knows; final sigma, dotted capital I, sharp s, ligatures.
WORDS = ["a", "an", "the", "A", "An", "THE", "The", "then", "theatre", "ant", "and",
         "paris", "Eiffel", "Tower", "1984", "42", "x", "é", "É", "naïve", "über", "ΟΔΟΣ",
         "Σ", "İstanbul", "straße", "ﬁnal", "东京", "Ω", "ǅ", "ⅷ", "²", "٣", "_", "a_b"]
MARKS = ["\u0301", "\u0308", "\u0323"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f",
          "\x85", "\xa0", "\u1680", "\u2003", "\u2028", "\u202f", "\u3000", "\ufeff", "\u200b"]
PUNCT = list(string.punctuation) + ["«", "»", "—", "…", "¿", "’"]


def random_text(rng):
    parts = []
    for _ in range(rng.randint(0, 8)):
        r = rng.random()
        if r < 0.45:
            word = rng.choice(WORDS)
            if rng.random() < 0.15:
                word += rng.choice(MARKS)
            parts.append(word)
        elif r < 0.75:
            parts.append(rng.choice(SPACES))
        else:
            parts.append(rng.choice(PUNCT))
    return "".join(parts)


def main():
    rng = random.Random(20240610)
    cases = []
    for _ in range(600):
        text = random_text(rng)
        other = random_text(rng)
        cases.append({
            "text": text,
            "normalized": normalize_answer(text),
            "other": other,
            "f1": f1_score(text, other),
        })
    out = pathlib.Path(__file__).resolve().parent.parent / "ts" / "test" / "fixtures" / "reward-python.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "generator": "scripts/make_reward_fixture.py",
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "cases": cases,
    }
    out.write_text(json.dumps(payload, ensure_ascii=True, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
