"""Writes the Parquet fixtures of ts/test/dataset.test.ts into ts/test/fixtures/:
small files in the layout that Search-R1's scripts/data_process/nq_search.py
writes (FlashRAG columns id, question, golden_answers, metadata, plus
data_source, prompt [{role, content}], ability, reward_model {style,
ground_truth {target}}, extra_info {split, index}), with nested columns and
several row groups, as pyarrow writes them. The questions are invented.

  search-r1-sample.parquet        7 rows, 3 row groups, snappy (the datasets default)
  search-r1-sample.expected.json  the same rows as JSON, as Python wrote them
  search-r1-target-only.parquet   no golden_answers column: answers only in
                                  reward_model.ground_truth.target; zstd
  search-r1-bad-answers.parquet   row 3 has golden_answers ["Oslo", null]; gzip
  search-r1-null-question.parquet row 5 has a null question; uncompressed

Needs pyarrow (any recent version):
  python3 -m venv /tmp/venv-pa && /tmp/venv-pa/bin/pip install pyarrow
  /tmp/venv-pa/bin/python scripts/make_dataset_fixture.py
"""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

OUT = pathlib.Path(__file__).resolve().parent.parent / "ts" / "test" / "fixtures"

PREFIX = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time "
    "you get new information. After reasoning, if you find you lack some knowledge, you can call a search "
    "engine by <search> query </search> and it will return the top searched results between <information> "
    "and </information>. You can search as many times as your want. If you find no further external "
    "knowledge needed, you can directly provide the answer inside <answer> and </answer>, without detailed "
    "illustrations. For example, <answer> Beijing </answer>. Question: "
)

QUESTIONS = [
    ("train_0", "nq", "who founded the city of varnholm?", ["Eira Solberg", "Queen Eira"]),
    ("train_1", "nq", "what river runs through the town of ostmark?", ["the Lune"]),
    ("train_2", "hotpotqa", "which composer wrote the opera that premiered in the velden hall?", ["Tomas Arke"]),
    ("train_3", "nq", "how many moons does the planet quillon have?", ["3", "three"]),
    ("train_4", "hotpotqa", "where was the author of \u201cThe Glass Road\u201d born?", ["K\u00f8ge"]),
    ("train_5", "nq", "what is the capital of the province of drau?", ["Lindt"]),
    ("train_6", "nq", "\u8c01\u53d1\u660e\u4e86\u98ce\u8f66\u949f?", ["\u674e\u660e"]),
]

PROMPT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
REWARD_MODEL = pa.struct([("style", pa.string()), ("ground_truth", pa.struct([("target", pa.list_(pa.string()))]))])
EXTRA_INFO = pa.struct([("split", pa.string()), ("index", pa.int64())])
METADATA = pa.struct([("annotator", pa.string()), ("difficulty", pa.float64())])


def rows(questions):
    out = []
    for index, (qid, source, question, answers) in enumerate(questions):
        out.append({
            "id": qid,
            "question": question,
            "golden_answers": answers,
            "metadata": {"annotator": "fixture", "difficulty": 0.5 + index / 10} if index % 2 == 0 else None,
            "data_source": source,
            "prompt": [{"role": "user", "content": PREFIX + (question or "")}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": answers}},
            "extra_info": {"split": "train", "index": index},
        })
    return out


def schema(with_golden=True):
    fields = [("id", pa.string()), ("question", pa.string())]
    if with_golden:
        fields.append(("golden_answers", pa.list_(pa.string())))
    fields += [
        ("metadata", METADATA),
        ("data_source", pa.string()),
        ("prompt", PROMPT),
        ("ability", pa.string()),
        ("reward_model", REWARD_MODEL),
        ("extra_info", EXTRA_INFO),
    ]
    return pa.schema(fields)


def write(name, records, row_group_size, compression, with_golden=True):
    if not with_golden:
        records = [{k: v for k, v in r.items() if k != "golden_answers"} for r in records]
    table = pa.Table.from_pylist(records, schema=schema(with_golden))
    pq.write_table(table, OUT / name, row_group_size=row_group_size, compression=compression)
    meta = pq.ParquetFile(OUT / name).metadata
    print(f"wrote {name}: {meta.num_rows} rows, {meta.num_row_groups} row groups, {compression}")
    return records


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sample = write("search-r1-sample.parquet", rows(QUESTIONS), 3, "snappy")
    (OUT / "search-r1-sample.expected.json").write_text(json.dumps(sample, ensure_ascii=False, indent=1) + "\n")
    write("search-r1-target-only.parquet", rows(QUESTIONS[:4]), 2, "zstd", with_golden=False)

    bad_answers = rows(QUESTIONS[:4])
    bad_answers[2]["golden_answers"] = ["Oslo", None]
    write("search-r1-bad-answers.parquet", bad_answers, 2, "gzip")

    null_question = rows(QUESTIONS[:6])
    null_question[4]["question"] = None
    write("search-r1-null-question.parquet", null_question, 4, "none")


if __name__ == "__main__":
    main()
