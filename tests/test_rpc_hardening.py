"""Malformed XML-RPC calls against a real server: always a Fault (or 413), never a 500 or a dead server."""

from __future__ import annotations

import http.client
import time
import xmlrpc.client

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.rpc.client import basic, blocking
from market.store import Database, upgrade
from market.store import accounts as sql
from tests import marketdata as md
from tests.servers import Market

METHODS = [
    "job",
    "init",
    "request",
    "state",
    "result",
    "price",
    "status",
    "cancel",
    "outcome",
    "fail",
    "alive",
    "whoami",
    "system.listMethods",
    "nonexistent",
    "",
    "__init__",
    "_auth",
]

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**31), 2**31 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=64).map(xmlrpc.client.Binary),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hardening")
    url = f"sqlite:{workdir}/market.sqlite"
    db = Database(url)
    upgrade(db)
    owner, owner_token = md.account(db, "owner")
    host, _ = md.account(db, "host")
    cid, ctoken = md.client(db, host, "box", 10.0)
    md.job(db, owner, 100)
    m = Market(url, str(workdir), "--window", "0.05", "--threshold", "1").start()
    yield m, db, {"account": ("account/owner", owner_token), "client": (f"client/{cid}", ctoken)}
    m.stop()
    db.close()


def post(port, body: bytes, auth: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml", "Authorization": auth})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def test_random_calls_get_faults_and_the_server_survives(server):
    market, db, creds = server

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        method=st.sampled_from(METHODS), args=st.lists(values, max_size=5), who=st.sampled_from(["account", "client"])
    )
    def check(method, args, who):
        user, token = creds[who]
        body = xmlrpc.client.dumps(tuple(args), method or "x", allow_none=True).encode()
        status, data = post(market.port, body, basic(user, token))
        assert status == 200, data[:300]
        try:
            xmlrpc.client.loads(data)
        except xmlrpc.client.Fault as f:
            assert f.faultCode != 99, f.faultString  # never an internal error
            assert f.faultString and "Traceback" not in f.faultString

    check()
    assert market.alive()
    assert db.transact(sql.audit)["balanced"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<",
        b"not xml at all",
        b"<?xml version='1.0'?><methodCall>",
        b"<!DOCTYPE x [<!ENTITY a '" + b"a" * 1000 + b"'>]><methodCall><methodName>&a;</methodName></methodCall>",
        b"\x00\xff" * 100,
    ],
)
def test_garbage_bodies_get_a_fault(server, body):
    market, _, creds = server
    status, data = post(market.port, body, basic(*creds["client"]))
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault):
        xmlrpc.client.loads(data)
    assert market.alive()


def _declare(port, length: int, auth: str | None, send: int = 0):
    """Send a head declaring ``length`` bytes and ``send`` of them; the status and body answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/RPC2")
    conn.putheader("Content-Length", str(length))
    if auth:
        conn.putheader("Authorization", auth)
    conn.endheaders()
    try:
        for _ in range(send // (1024 * 1024)):
            conn.send(b"x" * (1024 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = conn.getresponse()
    return response.status, response.read(), response.getheader("Connection")


def test_a_body_over_the_callers_limit_is_refused_with_413_before_it_is_read(server):
    market, _, creds = server
    started = time.monotonic()
    status, body, connection = _declare(market.port, 17 * 1024 * 1024, basic(*creds["client"]))
    assert status == 413 and b"16 MiB" in body and connection == "close"
    assert time.monotonic() - started < 5  # not after reading (or waiting for) 17 MiB
    assert market.alive()


def test_a_strangers_large_body_gets_fault_2_and_nothing_of_it_is_read(server):
    market, _, _ = server
    status, body, connection = _declare(market.port, 60 * 1024 * 1024, None, send=8 * 1024 * 1024)
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(body)
    assert status == 200 and e.value.faultCode == 2 and connection == "close"
    assert market.alive()


def test_unauthenticated_calls_are_refused(server):
    market, _, _ = server
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.ServerProxy(market.url).status()
    assert e.value.faultCode == 2
    with pytest.raises(xmlrpc.client.Fault) as e:
        blocking(market.url, "client/notanumber", "x").request(1)
    assert e.value.faultCode == 2


def test_a_body_that_is_not_a_method_call_gets_a_bad_argument_fault(server):
    market, _, creds = server
    answer = xmlrpc.client.dumps((1,), methodresponse=True).encode()
    status, data = post(market.port, answer, basic(*creds["client"]))
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(data)
    assert status == 200 and e.value.faultCode == 1 and "methodCall" in e.value.faultString
    status, data = post(market.port, b"<methodCall><params/></methodCall>", basic(*creds["client"]))
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(data)
    assert e.value.faultCode == 1


def test_an_unknown_method_gets_the_no_such_method_fault(server):
    market, _, creds = server
    with pytest.raises(xmlrpc.client.Fault) as e:
        blocking(market.url, *creds["client"]).nosuch()
    assert e.value.faultCode == 8001 and "no method 'nosuch'" in e.value.faultString
