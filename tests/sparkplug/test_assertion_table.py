"""The Edge Node assertion table: complete, each met id judged by its test, and shown in the docs."""

from __future__ import annotations

from pathlib import Path

from tests.sparkplug import assertions

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def test_every_edge_node_assertion_has_a_verdict_and_each_met_one_its_test() -> None:
    rows = assertions.verdicts()
    assert [v for _, v, _ in rows if v not in ("met", "not applicable", "not followed")] == []
    assert len(rows) == len(assertions.edge_node_ids()) >= 200
    met = {i for i, v, _ in rows if v == "met"}
    judged = set(assertions.judged())
    assert {assertions.test_name(i) for i in met} <= judged
    # and no test claims an id the specification does not have, or one that is not an Edge Node's
    assert judged <= {assertions.test_name(i) for i in met}


def test_exceptions_name_real_edge_node_ids() -> None:
    edge = set(assertions.edge_node_ids())
    assert set(assertions.NOT_APPLICABLE) <= edge and set(assertions.NOT_FOLLOWED) <= edge
    assert not set(assertions.NOT_APPLICABLE) & set(assertions.NOT_FOLLOWED)


def test_the_vendored_assertion_list() -> None:
    ids = assertions.spec_ids()
    assert len(ids) == len(set(ids)) == 299  # Sparkplug 3.0, eclipse-sparkplug/sparkplug e45b610
    assert "tck-id-payloads-alias-uniqueness" in ids and "tck-id-topics-ddata-mqtt" in ids


def test_docs_show_the_table() -> None:
    assert assertions.render_table() in DOC.read_text()
