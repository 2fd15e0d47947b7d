"""The shipped model's outputs stay bit-identical (golden record: ``tests/data/golden.json``).

Refactors must not move a bit. When the outputs are meant to change (new shipped weights, a
deliberate change of the method), regenerate the record with ``python tests/make_golden.py``
and commit it. Hashes are compared on the kind of machine the record was made on (same torch
version and CPU capability, one thread); elsewhere the statistics and probes must agree to 1e-5,
as other vector units may round convolutions differently.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from make_golden import CASES, GOLDEN, METHODS, machine, outputs, weights_sha256

REGENERATE = "regenerate it with `python tests/make_golden.py` and commit tests/data/golden.json"


@pytest.fixture(scope="module")
def golden() -> dict:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    now = weights_sha256()
    if data["weights_sha256"] != now:
        pytest.fail(
            f"the shipped weights changed (golden record made with {data['weights_sha256'][:12]}…, "
            f"shipped now {now[:12]}…): if the new outputs are intended, {REGENERATE}",
            pytrace=False,
        )
    return data


def test_the_record_covers_every_case(golden: dict) -> None:
    assert sorted(golden["cases"]) == sorted(f"{c}/{m}" for c in CASES for m in METHODS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(CASES))
def test_outputs_are_bit_identical(golden: dict, case: str, method: str) -> None:
    want = golden["cases"][f"{case}/{method}"]
    got = outputs(case, method)
    same_machine = golden["machine"] == machine()
    for name, w in want.items():
        g = got[name]
        assert g["shape"] == w["shape"], f"{case}/{method} {name}: shape changed"
        if same_machine:
            assert g["sha256"] == w["sha256"], (
                f"{case}/{method} {name} changed (mean {w['mean']:.7g} -> {g['mean']:.7g}, "
                f"max |probe diff| {np.abs(np.subtract(g['probes'], w['probes'])).max():.3g}); "
                f"if intended, {REGENERATE}")
        else:
            for key in ("mean", "min", "max", "probes"):
                np.testing.assert_allclose(g[key], w[key], atol=1e-5, err_msg=f"{case}/{method} {name} {key}")
