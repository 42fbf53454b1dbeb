"""Which model a request that names none gets, when LUGPI_DEFAULT_MODEL is unset (issue 27
item 11): publishing a model whose name sorts first used to silently take the default
over. The model that is the default stays the default while it is served."""

from __future__ import annotations

from pathlib import Path

from contracts.repository import publish
from tests.api.conftest import MakeClient


def test_random_publishing_a_name_that_sorts_first_keeps_the_default(
    make_client: MakeClient, tmp_path: Path, random_bundles: dict[str, Path]
) -> None:
    repo = tmp_path / "fresh-repo"
    publish(random_bundles["single"], repo, "sentiment")
    client = make_client(model_repository=repo, allow_unauthenticated_admin=True)
    assert client.get("/models").json()["default_model"] == "sentiment"

    publish(random_bundles["single"], repo, "aardvark")  # sorts before "sentiment"
    assert client.post("/models/aardvark/reload").status_code == 200
    body = client.get("/models").json()
    assert {m["name"] for m in body["models"]} == {"aardvark", "sentiment"}
    assert body["default_model"] == "sentiment"
    r = client.post("/classify", json={"texts": ["a film"]})
    assert r.status_code == 200 and r.json()["model"] == "sentiment"
