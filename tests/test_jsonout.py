"""The --json document is written a piece at a time, a table's rows one to a line:
whatever the values, it reads back as ``json.dumps`` would have written it."""

import json

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from llm.cli import cli

from llm_streamscope.analysis.numbers import finite
from llm_streamscope.views import jsonout
from llm_streamscope.views.jsonout import json_pieces

PLAIN = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
ROW = st.dictionaries(st.sampled_from(["index", "text", '}, {"index": ', "t_ms"]), PLAIN)
DOCUMENTS = st.recursive(
    PLAIN | st.lists(ROW),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


def strict_loads(text):
    """JSON as the standard has it: no NaN or Infinity."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))


@given(DOCUMENTS)
def test_any_document_reads_back_as_it_was(document):
    # A float that is not finite is null (JSON has no NaN or Infinity); the rest is exact.
    expected = json.loads(json.dumps(finite(document)))
    assert strict_loads("".join(json_pieces(document))) == expected
    batch, jsonout._BATCH = jsonout._BATCH, 2  # a table's rows encoded a batch at a time
    try:
        assert strict_loads("".join(json_pieces(document))) == expected
    finally:
        jsonout._BATCH = batch


def test_json_of_a_text_that_looks_like_a_row_boundary(tmp_path):
    body = tmp_path / "tricky.sse"
    tricky = 'a"}, {"index": 1, "text": "b'
    chunk = {"choices": [{"index": 0, "delta": {"content": tricky}}], "model": "gpt-4o"}
    body.write_text(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n")
    result = CliRunner().invoke(cli, ["streamscope", "inspect", str(body), "--json"])
    assert result.exit_code == 0, result.output
    (response,) = json.loads(result.stdout)["responses"]
    assert [f["text"] for f in response["fragments"]] == [tricky]
    rows = [line.strip().rstrip(",") for line in result.stdout.splitlines()]
    rows = [json.loads(row) for row in rows if row.startswith('{"index"')]  # one to a line
    assert rows[0]["text"] == tricky
    assert [r for r in rows if "first_fragment" in r] == response["streams"][0]["tokens"]
