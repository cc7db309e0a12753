"""Settings: defaults < --config FILE < SYARAH_* environment < flags."""

import os
import socket
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, free_port, http_json

from syarah import options


def config_file(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="syarah-", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def test_defaults():
    s = options.load([], {})
    assert s.port == 3005 and s.address == "0.0.0.0"
    assert s.require_connect_token is False and s.websocket_compression is False
    assert s.migrate_on_start is True
    assert s.algorithms == ["HS256"] and s.origins == "*"
    assert s.effective_database_url.startswith("sqlite:///")
    assert s == options.defaults()


def test_each_layer_overrides_the_one_below():
    conf = config_file('port = 4001\njwt_issuer = "from-config"\nservice_key = "conf-key"\n'
                       'log_level = "warning"\nrequire_connect_token = True\n')
    env = {"SYARAH_PORT": "4002", "SYARAH_JWT_ISSUER": "from-env"}

    assert options.load([f"--config={conf}"], {}).port == 4001
    s = options.load([f"--config={conf}"], env)
    assert (s.port, s.jwt_issuer, s.service_key) == (4002, "from-env", "conf-key")
    assert s.require_connect_token is True and s.log_level == "warning"
    s = options.load([f"--config={conf}", "--port=4003", "--log_level=error",
                      "--require-connect-token=false"], env)
    assert (s.port, s.jwt_issuer, s.log_level) == (4003, "from-env", "error")
    assert s.require_connect_token is False
    # The config file may come from the environment too.
    assert options.load([], {"SYARAH_CONFIG": conf}).port == 4001
    # A flag before --config still wins over the file.
    assert options.load(["--port=4004", f"--config={conf}"], env).port == 4004


def test_flags_take_dashes_or_underscores_and_spaced_values():
    a = options.load(["--database-url=mysql://u:p@h:3306/d", "--jwt_algorithms=RS256,ES256"], {})
    b = options.load(["--database_url=mysql://u:p@h:3306/d", "--jwt-algorithms", "RS256,ES256"], {})
    assert a == b and a.algorithms == ["RS256", "ES256"]
    s = options.load(["--jwt-secret", "abc", "--port", "4100", "--xheaders",
                      "--websocket-compression", "false"], {})
    assert (s.jwt_secret, s.port, s.xheaders, s.websocket_compression) == ("abc", 4100, True, False)


def test_boolean_words_from_environment_and_flags():
    for word, value in (("true", True), ("1", True), ("yes", True), ("on", True),
                        ("false", False), ("0", False), ("no", False), ("off", False)):
        assert options.load([], {"SYARAH_REQUIRE_CONNECT_TOKEN": word}).require_connect_token is value
        assert options.load([f"--require-connect-token={word}"], {}).require_connect_token is value


def test_bad_settings_are_named():
    with pytest.raises(options.OptionsError, match="SYARAH_PORT"):
        options.load([], {"SYARAH_PORT": "lots"})
    with pytest.raises(options.OptionsError, match="no.such.thing"):
        options.load(["--no-such-thing=1"], {})
    with pytest.raises(options.OptionsError, match="config file"):
        options.load(["--config=/nonexistent/syarah.conf"], {})
    with pytest.raises(options.OptionsError, match="port"):
        options.load(["--port=http"], {})


def test_the_conf_samples_parse():
    dev = options.load([f"--config={ROOT}/conf/development.conf"], {})
    prod = options.load([f"--config={ROOT}/conf/production.conf"], {})
    assert dev.port == prod.port == 3005
    assert dev.require_connect_token is False and prod.require_connect_token is True
    assert dev.database_url.startswith("sqlite:///") and dev.jwt_secret
    assert prod.database_url.startswith("mysql://") and prod.algorithms == ["RS256"]
    assert prod.jwt_public_key_file and not prod.jwt_secret
    assert prod.origins == ["https://app.example.com"] and prod.log_format == "json"
    # Production secrets come from the environment, over the sample.
    env = {"SYARAH_DATABASE_URL": "mysql://chat:pw@db:3306/chat", "SYARAH_SERVICE_KEY": "k"}
    s = options.load([f"--config={ROOT}/conf/production.conf"], env)
    assert s.database_url == "mysql://chat:pw@db:3306/chat" and s.service_key == "k"


def refuses_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_running_server_takes_the_flag_over_env_over_config(make_server):
    conf_port, env_port = free_port(), free_port()
    conf = config_file(f'port = {conf_port}\nservice_key = "from-config"\n'
                       'log_level = "warning"\n')
    srv = make_server("sqlite", f"--config={conf}",
                      env={"SYARAH_PORT": str(env_port), "SYARAH_SERVICE_KEY": "from-env"})

    # make_server passes --port on the command line: that is where it listens.
    assert http_json(srv, "GET", "/healthz")[0] == 200
    assert refuses_connections(conf_port) and refuses_connections(env_port)
    path = "/api/admin/users/5f0c6f53-4b11-4c43-9d36-5a4e3f1e3d01"
    assert http_json(srv, "PUT", path, {"name": "Z"}, {"X-Service-Key": "from-config"})[0] == 401
    assert http_json(srv, "PUT", path, {"name": "Z"}, {"X-Service-Key": "from-env"})[0] == 200
    # --log-level=debug (a flag) beat log_level = "warning" (the file): info lines show.
    assert "INFO syarah.server: Syarah Chat listening on" in srv.log()


def test_server_with_a_bad_setting_says_so_and_exits():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "syarah-server"), "--port=notaport"],
        capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2
    assert "port" in proc.stderr and "Traceback" not in proc.stderr


def test_a_server_of_several_nodes_refuses_an_unknown_manager_before_opening_anything(tmp_path):
    for flag, name in (("--redis-manager=one", "redis_manager"),
                       ("--redis-pubsub=fast", "redis_pubsub")):
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bin", "syarah-server"), "--port=0",
             f"--database-url=sqlite:///{tmp_path}/x.db", "--jwt-secret=" + "s" * 32,
             "--redis-url=redis://127.0.0.1:1/0", flag],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
        assert proc.returncode == 2, proc.stderr
        assert f"cannot start: {name} must be one of" in proc.stderr
        assert "Traceback" not in proc.stderr
