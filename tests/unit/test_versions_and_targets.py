import pytest
from nimbus.common.errors import InvalidArgument, NotFound
from nimbus.common.model import AliasRecord, FunctionConfig, FunctionRecord, VersionRecord
from nimbus.funcmgr.blobgc import collectable
from nimbus.funcmgr.versions import check_alias_name, check_routing
from nimbus.invoker.sync.target import resolve

CFG = FunctionConfig("python3.11", "main.handler")
FN = FunctionRecord("ns", "f", CFG, "sha-latest", 1, "c", "u", revision=50)
VERSIONS = {
    n: VersionRecord("ns", "f", n, "", CFG, f"sha-{n}", 1, "c", revision=10 * int(n))
    for n in ("1", "2")
}
ALIASES = {
    "prod": AliasRecord("ns", "f", "prod", "1", "2", 0.3),
    "plain": AliasRecord("ns", "f", "plain", "2"),
    "edge": AliasRecord("ns", "f", "edge", "$LATEST"),
}


def target(qualifier, draw=0.5):
    return resolve(FN, qualifier, VERSIONS.get, ALIASES.get, draw)


@pytest.mark.parametrize(
    "qualifier, draw, version, revision",
    [
        ("", 0.5, "$LATEST", 50),
        ("$LATEST", 0.5, "$LATEST", 50),
        ("2", 0.5, "2", 20),
        ("plain", 0.0, "2", 20),
        ("prod", 0.29, "2", 20),
        ("prod", 0.3, "1", 10),
        ("prod", 0.99, "1", 10),
        ("edge", 0.5, "$LATEST", 50),
    ],
)
def test_resolve(qualifier, draw, version, revision):
    t = target(qualifier, draw)
    assert (t.version, t.revision) == (version, revision)


@pytest.mark.parametrize("qualifier", ["3", "nope"])
def test_unknown_qualifier_is_not_found(qualifier):
    with pytest.raises(NotFound):
        target(qualifier)


def test_weight_split_over_many_draws():
    draws = [i / 2000 for i in range(2000)]
    share = (
        sum(resolve(FN, "prod", VERSIONS.get, ALIASES.get, d).version == "2" for d in draws) / 2000
    )
    assert abs(share - 0.3) < 0.001


@pytest.mark.parametrize("alias", ["prod", "v1-live", "A_b", "9lives"])
def test_valid_alias_names(alias):
    check_alias_name(alias)


@pytest.mark.parametrize("alias", ["", "123", "-x", "a b", "x" * 129, "$LATEST"])
def test_invalid_alias_names(alias):
    with pytest.raises(InvalidArgument, match="^alias: "):
        check_alias_name(alias)


@pytest.mark.parametrize(
    "version, routing, weight, field",
    [
        ("1", "", 0.2, "routing.version"),
        ("1", "2", 1.5, "routing.weight"),
        ("1", "1", 0.5, "routing.version"),
        ("$LATEST", "2", 0.5, "routing"),
        ("1", "x", 0.5, "version"),
    ],
)
def test_invalid_routing(version, routing, weight, field):
    with pytest.raises(InvalidArgument, match=f"^{field}"):
        check_routing(version, routing, weight)


def test_collectable_keeps_referenced_and_young_blobs():
    blobs = {"old-unref": 0.0, "old-ref": 0.0, "young-unref": 95.0}
    assert collectable(blobs, {"old-ref"}, now=100.0, grace_s=10.0) == ["old-unref"]
