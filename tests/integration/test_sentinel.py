"""Redis Sentinel as the broker and the shared state: a private master and a real Sentinel
(``redis-server --sentinel``) on loopback, both with passwords.

``broker: sentinel://:<master password>@127.0.0.1:<sentinel port>`` plus ``sentinel.master_name``
(and ``sentinel.password`` for the Sentinel's own ``requirepass``): Celery's kombu transport and
the breaker/rate-limit client both find the master through the Sentinel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from broadcaster import service
from broadcaster.config import ConfigError, load_settings
from broadcaster.runtime import connect_redis, parse_sentinel_url
from tests.conftest import free_port, unavailable
from tests.support.system import System, settings_for

pytestmark = pytest.mark.slow
MASTER_PASSWORD = "master-" + uuid.uuid4().hex[:12]
SENTINEL_PASSWORD = "sentinel-" + uuid.uuid4().hex[:12]


@pytest.fixture
def sentinel_setup():
    binary = shutil.which("redis-server")
    if not binary:
        unavailable("redis-server binary")
    workdir = tempfile.mkdtemp(prefix="bc-sentinel-")
    master_port, sentinel_port = free_port(), free_port()
    procs = [subprocess.Popen([binary, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", workdir, "--requirepass", MASTER_PASSWORD,
                               "--logfile", os.path.join(workdir, "master.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    conf = os.path.join(workdir, "sentinel.conf")
    with open(conf, "w") as f:  # Sentinel rewrites its file, so it must be writable
        f.write(f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\nrequirepass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor bcmaster 127.0.0.1 {master_port} 1\n"
                f"sentinel auth-pass bcmaster {MASTER_PASSWORD}\n")
    procs.append(subprocess.Popen([binary, conf, "--sentinel", "--logfile", os.path.join(workdir, "sentinel.log")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    import redis

    sentinel = redis.Redis(port=sentinel_port, password=SENTINEL_PASSWORD, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            if sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "bcmaster"):
                break
        except Exception:  # noqa: BLE001 - still starting
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the Sentinel did not come up")
        time.sleep(0.1)
    yield {"url": f"sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel_port}", "master_port": master_port}
    for p in procs:
        p.kill()
        p.wait(5)
    shutil.rmtree(workdir, ignore_errors=True)


def test_sentinel_urls_parse_like_celery():
    hosts, password, db = parse_sentinel_url("sentinel://:p%40ss@s1:26379/2;sentinel://:p%40ss@s2;sentinel://s3:5000")
    assert hosts == [("s1", 26379), ("s2", 26379), ("s3", 5000)] and password == "p@ss" and db == 2


def test_a_sentinel_broker_without_master_name_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as info:
        load_settings({"broker": "sentinel://127.0.0.1:26379", "channels": {}}, env={})
    text = str(info.value)
    assert "sentinel.master_name" in text and "Traceback" not in text


def test_delivery_through_a_sentinel_managed_broker(sentinel_setup, sqlite_url, receiver):
    settings = settings_for(sqlite_url, sentinel_setup["url"],
                            {"hook": {"kind": "webhook", "format": "generic", "url": receiver.url + "/hook"}},
                            sentinel={"master_name": "bcmaster", "password": SENTINEL_PASSWORD})
    # the shared state found the master through the Sentinel, with the master's password
    client = connect_redis(sentinel_setup["url"], settings, socket_timeout=2)
    assert client.ping() and client.connection_pool.get_master_address()[1] == sentinel_setup["master_port"]
    # no secret in what people see
    shown = repr(settings) + str(settings.model_dump())
    assert MASTER_PASSWORD not in shown and SENTINEL_PASSWORD not in shown
    system = System(settings)
    try:
        assert system.app.conf.broker_transport_options["master_name"] == "bcmaster"
        receiver.script(503)
        with system.worker():
            system.start_scheduler()
            ann = service.submit(system.runtime, {"kind": "incident", "title": "API errors", "body": "Investigating."},
                                 principal=service.SYSTEM).id
            [d] = system.wait_settled(ann, timeout=60)
        assert str(d.state) == "delivered" and d.attempts == 2
        assert len(receiver.ok()) == 1
        # the breaker's state lives on the master behind the Sentinel
        assert system.runtime.redis.ping()
    finally:
        system.stop()
