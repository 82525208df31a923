"""Trace files with prefix structure, the shipped traces, slicing and scaling, and refusal of bad files.

Formats pinned here: Mooncake's trace JSONL (https://github.com/kvcache-ai/Mooncake/blob/main/FAST25-release/README.md:
``timestamp`` is "Relative request arrival time in milliseconds", ``hash_ids`` "Remapped prefix block hashes. The
block size is 512 tokens") and Azure's LLM inference 2023 CSV (https://github.com/Azure/AzurePublicDataset/blob/
master/AzureLLMInferenceDataset2023.md: ``TIMESTAMP``, ``ContextTokens``, ``GeneratedTokens``).
"""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from mlops_lb import load
from mlops_lb.errors import SpecError
from mlops_lb.load.profiles import profile_from_dict

DATA = Path(load.__file__).resolve().parents[1] / "data" / "traces"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class TestReaders:
    def test_mooncake_jsonl_ms_and_hash_ids(self, tmp_path: Path) -> None:
        """JSONL times are milliseconds; hash_ids, sizes and sessions come along in order."""
        p = _jsonl(
            tmp_path / "t.jsonl",
            [
                {
                    "timestamp": 1000,
                    "input_length": 700,
                    "output_length": 5,
                    "hash_ids": [0, 1],
                    "session_id": "a",
                },
                {
                    "timestamp": 1500,
                    "input_length": 900,
                    "output_length": 6,
                    "hash_ids": [0, 1, 2],
                    "session_id": "a",
                },
            ],
        )
        t = load.trace(p)
        assert t.offsets == (0.0, 0.5) and t.hash_ids == ((0, 1), (0, 1, 2)) and t.sessions == ("a", "a")
        assert t.prompt_tokens == (700, 900) and t.has_prefixes and t.block_tokens == 512

    def test_compressed_files_read_like_plain_ones(self, tmp_path: Path) -> None:
        """.gz and .xz of the same bytes give the same trace."""
        text = 'timestamp,prompt_tokens,output_tokens,hash_ids\n0,20,2,"[1, 2]"\n1.5,30,3,1 2 3\n'
        (tmp_path / "a.csv.gz").write_bytes(gzip.compress(text.encode()))
        (tmp_path / "a.csv.xz").write_bytes(lzma.compress(text.encode()))
        a, b = load.trace(tmp_path / "a.csv.gz"), load.trace(tmp_path / "a.csv.xz")
        assert a.to_dict() | {"source": ""} == b.to_dict() | {"source": ""}
        assert a.hash_ids == ((1, 2), (1, 2, 3)) and a.offsets == (0.0, 1.5)

    def test_azure_date_times(self, tmp_path: Path) -> None:
        """Azure's TIMESTAMP (7 fractional digits) reads as seconds from the first row."""
        p = tmp_path / "az.csv"
        p.write_text(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
        )
        t = load.trace(p)
        assert t.offsets == pytest.approx((0.0, 4.314579)) and t.prompt_tokens == (374, 396)


class TestBadFiles:
    """Each bad input is refused with its line and column, before anything runs (issue 28, Bad input)."""

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            (
                "timestamp,prompt_tokens,output_tokens\n0,5,1\n,5,1\n",
                r"line 3, column 'timestamp': the timestamp is missing",
            ),
            ("timestamp\n0\n2\n1\n", r"line 4: timestamp 1 s is earlier than the line before \(2 s\)"),
            (
                "timestamp,prompt_tokenz\n0,5\n",
                r"line 1: unknown column 'prompt_tokenz'; did you mean 'prompt_tokens'",
            ),
            (
                'timestamp,hash_ids\n0,"[1, 2]"\n1,"[1, 2.5]"\n',
                r"line 3, column 'hash_ids': hash_ids\[1\] must be an integer",
            ),
            (
                "timestamp,hash_ids\n0,a b\n",
                r"line 2, column 'hash_ids': hash_ids 'a b' must be a list of integers",
            ),
            ("timestamp,hash_ids\n0,[]\n", r"line 2, column 'hash_ids': hash_ids must be a non-empty list"),
        ],
    )
    def test_csv(self, tmp_path: Path, text: str, match: str) -> None:
        p = tmp_path / "bad.csv"
        p.write_text(text)
        with pytest.raises(SpecError, match=match):
            load.trace(p)

    @pytest.mark.parametrize(
        ("rows", "match"),
        [
            ([{"input_length": 5, "output_length": 1, "hash_ids": [1]}], r"line 1, field 'timestamp': the timestamp is missing"),
            (
                [{"timestamp": 5, "input_length": 5, "output_length": 1, "hash_ids": [1]},
                 {"timestamp": 4, "input_length": 5, "output_length": 1, "hash_ids": [1]}],
                r"line 2: timestamp 0.004 s is earlier",
            ),
            ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_idz": [1]}], r"line 1: unknown field 'hash_idz'"),
            ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "1,2"}], r"line 1, field 'hash_ids': hash_ids must be a non-empty list"),
            ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1, True]}], r"line 1, field 'hash_ids': hash_ids\[1\] must be an integer"),
            ([{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [-3]}], r"hash_ids\[0\] must be an integer >= 0"),
        ],
    )  # fmt: skip
    def test_jsonl(self, tmp_path: Path, rows: list[dict], match: str) -> None:
        with pytest.raises(SpecError, match=match):
            load.trace(_jsonl(tmp_path / "bad.jsonl", rows))

    def test_unordered_file_is_sorted_only_on_request(self, tmp_path: Path) -> None:
        """sort=True sorts the rows with their columns (the error's fix), keeping each row's hash_ids."""
        p = tmp_path / "u.csv"
        p.write_text("timestamp,hash_ids\n2,[2]\n1,[1]\n")
        t = load.trace(p, sort=True)
        assert t.offsets == (0.0, 1.0) and t.hash_ids == ((1,), (2,))

    def test_unknown_name_says_what_is_shipped(self) -> None:
        with pytest.raises(
            SpecError, match=r"'mooncake-conv' is neither a file nor a shipped trace.*mooncake-conv-2025"
        ):
            load.trace("mooncake-conv")


class TestShipped:
    def test_every_shipped_trace_loads_with_its_licence_on_record(self) -> None:
        """Each name loads; every shipped file exists and is named, with its licence text, in the NOTICE."""
        notice = (DATA / "NOTICE").read_text()
        facts = load.shipped_traces()
        for name in facts:
            t = load.trace(name)
            assert len(t.offsets) > 100 and t.has_sizes, name
        assert load.trace("azure-conv-2023").prompt_tokens[:2] == (374, 396)
        assert len(load.trace("azure-conv-2023").offsets) == 19366
        assert len(load.trace("azure-code-2023").offsets) == 8819
        moon = load.trace("mooncake-conv-2025")
        assert len(moon.offsets) == 12031 and moon.has_prefixes and moon.hash_ids[0][:3] == (0, 1, 2)
        assert (
            facts["azure-conv-2023"]["licence"] == "CC-BY-4.0"
            and facts["mooncake-conv-2025"]["licence"] == "Apache-2.0"
        )
        assert "SYNTHETIC" in facts["synthetic-multiturn"]["description"]
        for f in ("AzureLLMInferenceTrace_conv.csv.gz", "AzureLLMInferenceTrace_code.csv.gz",
                  "mooncake_conversation_trace.jsonl.xz", "LICENSE-CC-BY-4.0.txt", "LICENSE-Apache-2.0.txt"):  # fmt: skip
            assert (DATA / f).is_file() and f in notice, f
        assert sum(p.stat().st_size for p in DATA.iterdir()) < 1_100_000  # "about 1 MB" (issue 28)

    def test_window_and_speed_keep_the_recorded_gaps(self) -> None:
        """A window keeps the recorded arrivals; speed 2 halves every gap (bursts stay bursts, no resampling)."""
        full = load.trace("azure-code-2023")
        w = load.trace("azure-code-2023", start_s=600, duration_s=60)
        inside = [t for t in full.offsets if 600 <= t < 660]
        assert len(w.offsets) == len(inside) and w.offsets[0] == 0.0
        fast = load.trace("azure-code-2023", start_s=600, duration_s=60, speed=2.0)
        gaps = [b - a for a, b in zip(w.offsets, w.offsets[1:], strict=False)]
        fast_gaps = [b - a for a, b in zip(fast.offsets, fast.offsets[1:], strict=False)]
        assert fast_gaps == pytest.approx([g / 2 for g in gaps])
        assert fast.prompt_tokens == w.prompt_tokens
        with pytest.raises(SpecError, match="holds no request"):
            load.trace("azure-code-2023", start_s=10, duration_s=1e-9)

    def test_prefix_trace_round_trips(self) -> None:
        """to_dict / profile_from_dict keep hash_ids, sessions and block size (what a run bundle stores)."""
        t = load.multiturn(sessions=5, seed=2)
        assert profile_from_dict(json.loads(json.dumps(t.to_dict()))) == t


class TestMultiturn:
    def test_structure_matches_its_stated_parameters(self) -> None:
        """Every turn's prompt extends the previous turn of its session; sessions share only system prompts."""
        t = load.multiturn(
            sessions=30, system_prompts=2, system_blocks=3, turn_blocks=(1, 2), block_tokens=16, seed=4
        )
        last: dict[str, tuple[int, ...]] = {}
        for ids, s, n in zip(t.hash_ids, t.sessions, t.prompt_tokens, strict=True):
            assert n == len(ids) * 16
            if s in last:
                prev = last[s]
                assert ids[: len(prev)] == prev and 1 <= len(ids) - len(prev) <= 2
            last[s] = ids
        firsts = {ids[:3] for ids in t.hash_ids}
        assert firsts <= {(0, 1, 2), (3, 4, 5)}
        assert load.multiturn(sessions=30, seed=4) == load.multiturn(sessions=30, seed=4)
        assert load.multiturn(sessions=30, seed=4) != load.multiturn(sessions=30, seed=5)

    def test_bad_parameters_name_the_field(self) -> None:
        with pytest.raises(SpecError, match="max_prompt_tokens must hold at least one turn"):
            load.multiturn(system_blocks=100, block_tokens=64)
        with pytest.raises(SpecError, match="turns"):
            load.multiturn(turns=(3, 1))
