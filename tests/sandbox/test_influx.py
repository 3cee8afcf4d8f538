from pathlib import Path

import pytest
import requests

from sandbox.influx import InfluxError, InfluxServer
from sandbox.net import listening_sockets
from sandbox.procs import running_processes
from sandbox.server import ServerStartError


def test_write_query_round_trip(influx_server: InfluxServer, influx_db: str) -> None:
    influx_server.write(
        influx_db,
        "pm500,site=plant-a,asset=meter-1 kw=12.5,kwh=1000i 1700000000000000000\n"
        "pm500,site=plant-a,asset=meter-2 kw=3 1700000001000000000\n",
    )
    rows = influx_server.points("pm500", influx_db, epoch="ns")
    assert rows == [
        {"time": 1700000000000000000, "asset": "meter-1", "kw": 12.5, "kwh": 1000, "site": "plant-a"},
        {"time": 1700000001000000000, "asset": "meter-2", "kw": 3, "kwh": None, "site": "plant-a"},
    ]
    assert [r["asset"] for r in influx_server.points("pm500", influx_db, where="asset = 'meter-2'")] == [
        "meter-2"
    ]
    raw = influx_server.query('SELECT count("kw") FROM "pm500"', db=influx_db)
    assert raw["results"][0]["series"][0]["values"][0][1] == 2


def test_each_test_gets_an_empty_database(influx_server: InfluxServer, influx_db: str) -> None:
    assert influx_server.points("pm500", influx_db) == []
    names = [v[0] for v in influx_server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
    assert influx_db in names


def test_errors_carry_influxdbs_message(influx_server: InfluxServer, influx_db: str) -> None:
    with pytest.raises(InfluxError, match="unable to parse"):
        influx_server.write(influx_db, "not line protocol")
    with pytest.raises(InfluxError, match="database not found"):
        influx_server.write("no_such_db_pm500", "m v=1")
    with pytest.raises(InfluxError, match="error parsing query"):
        influx_server.query("SELEKT nonsense", db=influx_db)


def test_listens_on_loopback_only(influx_server: InfluxServer) -> None:
    assert influx_server.pid is not None
    assert sorted(listening_sockets(influx_server.pid)) == sorted(
        [("127.0.0.1", influx_server.port), ("127.0.0.1", influx_server.rpc_port)]
    )
    config = influx_server.conf_path.read_text()
    assert "reporting-disabled = true" in config


def test_auth_restart_and_data_survive(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx", auth=True) as server:
        assert server.admin_user and server.admin_password
        anonymous = requests.post(f"{server.url}/query", params={"q": "SHOW DATABASES"}, timeout=30)
        assert anonymous.status_code == 401
        server.create_database("plant")
        server.write("plant", "pm500,asset=m1 kw=1 1700000000000000000")
        port = server.port
        server.restart()
        assert server.port == port
        assert [r["kw"] for r in server.points("pm500", "plant")] == [1]
        wrong = requests.post(f"{server.url}/query", params={"q": "SHOW DATABASES"},
                              auth=(server.admin_user, "wrong"), timeout=30)
        assert wrong.status_code == 401
    assert not server.running


def test_auth_on_a_used_workdir_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx", auth=True):
        pass
    again = InfluxServer(tmp_path / "influx", auth=True)
    with pytest.raises(ServerStartError, match="fresh workdir"):
        again.start()
    assert not again.running
    assert not [p for p in running_processes() if str(again.conf_path) in p.args]
