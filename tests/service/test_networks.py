"""/v1/networks: one test per outcome (201, 200, 204, 404, 409, 422), checking status and detail."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import DEFAULT_OWNER
from service.settings import Settings
from tests.service.helpers import assert_same_404

WINE = {"name": "wine-mlp", "input_dim": 13,
        "layers": [{"type": "dense", "units": 32, "activation": "relu"},
                   {"type": "dropout", "rate": 0.1},
                   {"type": "dense", "units": 3, "activation": "softmax"}],
        "loss": "cross_entropy"}


def _spec(**changes) -> dict:
    return {**WINE, **changes}


@pytest.fixture
def idle_client(tmp_path):
    """A client whose app has no workers, so queued jobs inserted by a test stay queued."""
    with TestClient(create_app(Settings(data_dir=tmp_path / "idle", workers=0))) as c:
        yield c


def test_create_201_counts_params_and_fills_defaults(client):
    r = client.post("/v1/networks", json=_spec(layers=WINE["layers"][:2] + [{"type": "dense", "units": 3,
                                                                             "activation": "softmax"}]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["id"]) == 32
    assert body["n_params"] == 13 * 32 + 32 + 32 * 3 + 3
    assert body["output_dim"] == 3 and body["task"] == "classification"
    assert body["name"] == "wine-mlp" and body["input_dim"] == 13 and body["loss"] == "cross_entropy"
    assert body["layers"][1] == {"type": "dropout", "rate": 0.1}


def test_create_without_input_dim_has_unknown_n_params(client):
    r = client.post("/v1/networks", json={"layers": [{"type": "dense", "units": 4, "activation": "tanh"},
                                                     {"type": "dense", "units": 1}], "loss": "mse"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["n_params"] is None and body["input_dim"] is None
    assert body["task"] == "regression" and body["output_dim"] == 1
    assert body["layers"][1]["activation"] == "linear"      # the default activation
    assert body["name"] == "network"


def test_create_binary_sigmoid_network(client):
    r = client.post("/v1/networks", json={"name": "b", "input_dim": 2, "layers": [
        {"type": "dense", "units": 8, "activation": "relu", "init": "he"},
        {"type": "activation", "name": "tanh"},
        {"type": "dense", "units": 1, "activation": "sigmoid"}], "loss": "binary_cross_entropy"})
    assert r.status_code == 201, r.text
    assert r.json()["n_params"] == 2 * 8 + 8 + 8 + 1
    assert r.json()["task"] == "classification"


def test_create_422_softmax_not_last(client):
    layers = [{"type": "dense", "units": 8, "activation": "softmax"}, {"type": "dense", "units": 3,
                                                                      "activation": "softmax"}]
    r = client.post("/v1/networks", json=_spec(layers=layers))
    assert r.status_code == 422
    assert r.json()["detail"] == "layers[0].activation: softmax is only allowed in the last layer"


def test_create_422_loss_incompatible_with_output(client):
    r = client.post("/v1/networks", json=_spec(loss="mse"))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("loss: mse cannot follow a softmax output")
    layers = [{"type": "dense", "units": 3, "activation": "sigmoid"}]
    r = client.post("/v1/networks", json=_spec(layers=layers))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("loss: cross_entropy needs a softmax output activation")


def test_create_422_too_many_params(client):
    r = client.post("/v1/networks", json=_spec(input_dim=100_000, layers=[
        {"type": "dense", "units": 1000, "activation": "relu"}, {"type": "dense", "units": 3,
                                                                  "activation": "softmax"}]))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "100,004,003 parameters" in detail and "max_params=5,000,000 (MLP_MAX_PARAMS)" in detail


def test_create_422_too_many_params_even_without_input_dim(client):
    spec = {"layers": [{"type": "dense", "units": 3000, "activation": "relu"},
                       {"type": "dense", "units": 3000, "activation": "relu"},
                       {"type": "dense", "units": 1}], "loss": "mse"}
    r = client.post("/v1/networks", json=spec)
    assert r.status_code == 422
    assert "even with input_dim=1" in r.json()["detail"]


@pytest.mark.settings(max_layers=2)
def test_create_422_too_many_layers(client):
    r = client.post("/v1/networks", json=WINE)
    assert r.status_code == 422
    assert r.json()["detail"] == "layers: 3 layers exceed the limit max_layers=2 (MLP_MAX_LAYERS)"


@pytest.mark.parametrize("layer, loc", [
    ({"type": "dense", "units": 0, "activation": "relu"}, ["body", "layers", 0, "dense", "units"]),
    ({"type": "dense", "units": 4, "activation": "swish"}, ["body", "layers", 0, "dense", "activation"]),
    ({"type": "dense", "units": 4, "init": "zeros_please"}, ["body", "layers", 0, "dense", "init"]),
    ({"type": "dropout", "rate": 1.0}, ["body", "layers", 0, "dropout", "rate"]),
    ({"type": "conv", "units": 4}, ["body", "layers", 0]),
])
def test_create_422_invalid_layer_names_the_field(client, layer, loc):
    r = client.post("/v1/networks", json=_spec(layers=[layer, WINE["layers"][-1]]))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


def test_create_422_unknown_loss(client):
    r = client.post("/v1/networks", json=_spec(loss="hinge"))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "loss"]
    assert "cross_entropy" in r.json()["detail"][0]["msg"]


def test_get_200_and_404(client):
    net = client.post("/v1/networks", json=WINE).json()
    r = client.get(f"/v1/networks/{net['id']}")
    assert r.status_code == 200 and r.json() == net
    r = client.get("/v1/networks/doesnotexist")
    assert r.status_code == 404
    assert r.json()["detail"] == "network doesnotexist not found"


def test_list_limit_offset_total(client):
    ids = [client.post("/v1/networks", json=_spec(name=f"n{i}")).json()["id"] for i in range(5)]
    r = client.get("/v1/networks", params={"limit": 2, "offset": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 5 and len(body["items"]) == 2
    page = [item["id"] for item in client.get("/v1/networks", params={"limit": 100}).json()["items"]]
    assert sorted(page) == sorted(ids)
    assert [i["id"] for i in body["items"]] == page[1:3]
    assert client.get("/v1/networks", params={"limit": 0}).status_code == 422


def test_delete_204_then_404(client):
    net = client.post("/v1/networks", json=WINE).json()
    r = client.delete(f"/v1/networks/{net['id']}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/networks/{net['id']}").status_code == 404
    r = client.delete(f"/v1/networks/{net['id']}")
    assert r.status_code == 404
    assert r.json()["detail"] == f"network {net['id']} not found"


def test_delete_409_while_a_job_uses_it(idle_client):
    from service.jobs.tables import Job

    net = idle_client.post("/v1/networks", json=WINE).json()
    with idle_client.app.state.sessionmaker() as session:
        session.add(Job(id="j" * 32, owner=DEFAULT_OWNER, network_id=net["id"], dataset_id="d" * 32, params={},
                        epochs=1, status="queued"))
        session.commit()
    r = idle_client.delete(f"/v1/networks/{net['id']}")
    assert r.status_code == 409
    assert r.json()["detail"].startswith(f"network {net['id']} is used by job {'j' * 32}")
    assert idle_client.get(f"/v1/networks/{net['id']}").status_code == 200


def test_other_tenant_gets_404(client):
    from service.networks.tables import Network

    with client.app.state.sessionmaker() as session:
        session.add(Network(id="x" * 32, owner="someone-else", name="theirs", spec=WINE, input_dim=13,
                            output_dim=3, n_params=547, task="classification"))
        session.commit()
    assert_same_404(client, "get", "/v1/networks/{}", "x" * 32)
    assert_same_404(client, "delete", "/v1/networks/{}", "x" * 32)
    assert client.get("/v1/networks").json()["total"] == 0


def test_openapi_documents_the_layer_union_with_examples(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    create = schema["NetworkCreate"]
    assert create["examples"][0]["name"] == "wine-mlp"
    layers = create["properties"]["layers"]["items"]
    assert layers["discriminator"]["propertyName"] == "type"
    assert "softmax" in schema["DenseLayer"]["properties"]["activation"]["enum"]


@pytest.mark.settings(quota_max_params=100)
def test_create_413_over_the_tenants_parameter_quota(client):
    r = client.post("/v1/networks", json=WINE)
    assert r.status_code == 413
    assert r.json()["detail"].startswith("quota exceeded: the network has 547 parameters, more than the limit "
                                         "quota_max_params (MLP_QUOTA_MAX_PARAMS)=100")
    assert client.get("/v1/networks").json()["total"] == 0


def test_list_422_offset_out_of_range(client):
    r = client.get("/v1/networks", params={"offset": 10**30})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "offset"]
