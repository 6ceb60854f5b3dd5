"""The request schema means the same to every regex engine that reads it: a client's (ECMAScript, as schemathesis
reads the OpenAPI document), the server's (pydantic's Rust engine) and Python's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from pydantic import ValidationError

from hyperrec.serve.schemas import NOT_BLANK, RecommendRequest

# Whitespace to at least one engine: ECMAScript's, Unicode's White_Space, Python's str.isspace (U+001C-U+001F).
BLANK = [
    chr(c) for c in (0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1F, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
] + ["\ufeff"]
NOT_BLANK_TEXT = ["a", " oat milk ", "\u200b", "\u0085x"]


@pytest.mark.parametrize("query", BLANK)
def test_a_blank_query_is_refused_by_the_server_and_by_python(query):
    with pytest.raises(ValidationError, match="query"):
        RecommendRequest(user_id="u", context={"page": "search"}, query=query * 3)
    assert re.search(NOT_BLANK, query) is None


@pytest.mark.parametrize("query", NOT_BLANK_TEXT)
def test_a_query_with_a_character_is_accepted(query):
    assert RecommendRequest(user_id="u", context={"page": "search"}, query=query).query == query
    assert re.search(NOT_BLANK, query)


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to run ECMAScript's regex engine")
def test_ecmascript_reads_the_pattern_the_same_way():
    texts = json.dumps(BLANK + NOT_BLANK_TEXT)
    script = f"const p = new RegExp({json.dumps(NOT_BLANK)}, 'u'); console.log({texts}.map(t => p.test(t) ? 1 : 0).join(''))"
    found = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "0" * len(BLANK) + "1" * len(NOT_BLANK_TEXT)
