"""state.json: version 1 files (one ``current_product``) migrate on read to version 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from padocc_like.errors import StateError
from padocc_like.state.store import (
    STATE_VERSION,
    current_product,
    current_products,
    load_state,
    new_state,
    project_paths,
    set_current_products,
)


def product(kind: str, revision: int) -> dict[str, Any]:
    return {"kind": kind, "revision": revision, "path": f"/p/{kind}/r{revision}", "status": "valid"}


def write(tmp_path: Path, state: dict[str, Any]) -> Path:
    paths = project_paths(tmp_path, "p")
    paths.root.mkdir(parents=True)
    paths.state.write_text(json.dumps(state))
    return paths


def version_1(current: int | None) -> dict[str, Any]:
    state = new_state("p", "g")
    del state["current_products"]
    state.update(
        version=1, products=[product("kerchunk", 1), product("kerchunk", 2)], current_product=current
    )
    return state


def test_version_1_migrates_on_read(tmp_path: Path) -> None:
    state = load_state(write(tmp_path, version_1(2)))
    assert state is not None and state["version"] == STATE_VERSION == 2
    assert state["current_products"] == [{"kind": "kerchunk", "revision": 2}]
    assert current_product(state) == product("kerchunk", 2)
    assert current_products(state) == [product("kerchunk", 2)]


def test_version_1_without_a_current_product(tmp_path: Path) -> None:
    state = load_state(write(tmp_path, version_1(None)))
    assert state is not None and state["current_products"] == []
    assert current_product(state) is None and current_products(state) == []


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="state version 3 is not supported"):
        load_state(write(tmp_path, {**new_state("p", "g"), "version": 3}))


def test_several_kinds_first_is_the_product() -> None:
    state = new_state("p", "g")
    state["products"] = [product("kerchunk", 1), product("cfa", 2)]
    set_current_products(state, {"cfa": 2, "kerchunk": 1})
    assert [p["kind"] for p in current_products(state)] == ["cfa", "kerchunk"]
    assert current_product(state) == product("cfa", 2) and state["current_product"] == 2
    set_current_products(state, {})
    assert current_product(state) is None and state["current_product"] is None
