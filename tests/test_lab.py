"""pitools lab: a real JupyterLab on loopback, reachable only with the token."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import stat
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import free_port, running_lab
from pitools.config import load_profile
from pitools.errors import PitoolsError
from pitools.box.lab import lab_config, run_lab

AS_ROOT = os.geteuid() == 0  # CI containers run as root; the lab refuses that unless told


@pytest.fixture
def profile(tmp_path):
    return load_profile("ci").replace(data_dir=str(tmp_path / "data"))


def _request(port, method, path, token=None, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        if isinstance(body, dict):
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()  # http.client never follows redirects
        return resp.status, resp.msg, resp.read()  # resp.msg keeps every Set-Cookie
    finally:
        conn.close()


@contextlib.contextmanager
def _running(cfg, tmp_path):
    """A real JupyterLab from cfg (conftest.running_lab), its runtime files and settings kept
    out of ~ (a fresh user: no saved JupyterLab settings)."""
    env = {**cfg.env, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces")}
    with running_lab(cfg, env, tmp_path / "lab.log") as (proc, port):
        yield proc, port


@pytest.fixture
def server(profile, tmp_path):
    cfg = lab_config(profile, port=free_port(), open_browser=False, allow_root=AS_ROOT)
    with _running(cfg, tmp_path) as (proc, port):
        yield cfg, proc, port


def test_real_lab_needs_the_token(server, tmp_path):
    cfg, proc, port = server
    runtime = tmp_path / "runtime"
    token = cfg.token_file.read_text().strip()

    # the secret is nowhere ps or a kernel could see it
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
    assert token not in cmdline
    assert token not in Path(f"/proc/{proc.pid}/environ").read_bytes().decode()
    assert token not in " ".join(cfg.argv) and "JUPYTER_TOKEN" not in cfg.env
    assert stat.S_IMODE(cfg.token_file.stat().st_mode) == 0o600 and len(token) >= 16
    assert stat.S_IMODE(cfg.config_file.stat().st_mode) == 0o600
    assert cfg.url == f"http://127.0.0.1:{port}/lab?token={token}"

    assert _request(port, "GET", "/api/contents")[0] == 403
    assert _request(port, "GET", "/api/contents", token="wrong-token-wrong-token")[0] == 403
    status, headers, _ = _request(port, "GET", "/lab")
    assert status in (302, 303) and "/login" in headers["Location"]

    status, _, body = _request(port, "GET", "/api/contents", token=token)
    assert status == 200
    names = {item["name"] for item in json.loads(body)["content"]}
    assert {"notebooks", "outputs"} <= names

    # no news question, no update check: the announcements plugin asks while `fetchNews` is
    # "none" (JupyterLab's default) and reads these settings as the server serves them
    status, _, body = _request(port, "GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification",
                               token=token)
    assert status == 200, body
    served = json.loads(body)
    defaults = {k: v["default"] for k, v in served["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    assert "fetchNews" not in served["settings"]  # a default: a user who opts in from Settings wins

    status, _, body = _request(port, "POST", "/api/kernels", token=token, body={"name": "pitools"})
    assert status == 201, body
    kernel = json.loads(body)
    assert kernel["name"] == "pitools"
    try:
        # a kernel stays "starting" until someone talks to it: be that client, as the
        # browser would, and check it is this environment's Python with pitools
        from jupyter_client import BlockingKernelClient

        connection = runtime / f"kernel-{kernel['id']}.json"
        info = json.loads(connection.read_text())
        assert (info["transport"], info["ip"]) == ("tcp", "127.0.0.1")  # kernel ports on loopback only
        client = BlockingKernelClient(connection_file=str(connection))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=30)
            out = []
            reply = client.execute_interactive(
                "import sys, pitools; print(sys.executable)", timeout=30,
                output_hook=lambda m: out.append(m["content"].get("text", "")))
            assert reply["content"]["status"] == "ok" and "".join(out).strip() == sys.executable
        finally:
            client.stop_channels()
        deadline, state = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            status, _, body = _request(port, "GET", f"/api/kernels/{kernel['id']}", token=token)
            assert status == 200
            state = json.loads(body)["execution_state"]
            if state == "idle":
                break
            time.sleep(0.3)
        assert state == "idle"
    finally:
        assert _request(port, "DELETE", f"/api/kernels/{kernel['id']}", token=token)[0] == 204


def test_command_line_flags(profile):
    cfg = lab_config(profile, ip="0.0.0.0", port=9999, cull_idle_after=600, allow_root=AS_ROOT)
    argv = cfg.argv
    assert "--ServerApp.allow_remote_access=True" in argv and "--no-browser" in argv
    assert "--MappingKernelManager.cull_idle_timeout=600" in argv
    assert "--MappingKernelManager.cull_connected=False" in argv
    assert not any("allow_origin" in a for a in argv)
    assert all(":9999/lab?token=" in u for u in cfg.urls)

    loop = lab_config(profile, cull_idle_after=0, open_browser=True, allow_root=AS_ROOT)
    assert not any("allow_remote_access" in a for a in loop.argv) and "--no-browser" not in loop.argv
    assert "--MappingKernelManager.cull_idle_timeout=0" in loop.argv
    assert loop.token_file == (profile.data_dir / "lab" / "token").resolve()
    assert cfg.token_file.read_text() == loop.token_file.read_text()  # made once, then reused
    assert stat.S_IMODE(loop.token_file.parent.stat().st_mode) == 0o700


def test_run_lab_prints_where_to_connect(profile, monkeypatch, capsys):
    cfg = lab_config(profile, port=8899, allow_root=AS_ROOT)
    calls = []
    monkeypatch.setattr(os, "execve", lambda *a: calls.append(a))
    run_lab(cfg, show_token=False)
    out = capsys.readouterr().out
    token = cfg.token_file.read_text().strip()
    assert calls == [(cfg.argv[0], cfg.argv, cfg.env)]
    assert "http://127.0.0.1:8899/lab?token=<token>" in out and str(cfg.token_file) in out and token not in out
    run_lab(cfg, show_token=True)
    assert cfg.url in capsys.readouterr().out


@pytest.mark.parametrize("content, mode, expected", [
    ("x" * 40 + "\n", 0o644, "chmod 600"),
    ("x" * 40, 0o640, "chmod 600"),
    ("", 0o600, "is empty"),
    ("  \n", 0o600, "is empty"),
    ("short", 0o600, "at least 16"),
])
def test_bad_token_file_is_refused(profile, tmp_path, content, mode, expected):
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(PitoolsError, match=expected) as err:
        lab_config(profile, token_file=path, allow_root=AS_ROOT)
    assert str(path) in str(err.value)


def test_password_file(profile, tmp_path):
    from jupyter_server.auth import passwd

    pw = tmp_path / "pw"
    pw.write_text(passwd("correct horse", algorithm="sha1") + "\n")
    pw.chmod(0o600)
    cfg = lab_config(profile, password_file=pw, allow_root=AS_ROOT)
    assert cfg.token_file is None and "token" not in cfg.url
    saved = json.loads(cfg.config_file.read_text())
    assert saved["PasswordIdentityProvider"]["hashed_password"].startswith("sha1:")
    assert saved["PasswordIdentityProvider"]["password_required"] is True
    assert not any("sha1:" in a for a in cfg.argv)

    both = lab_config(profile, password_file=pw, token_file=tmp_path / "tok", allow_root=AS_ROOT)
    assert json.loads(both.config_file.read_text())["IdentityProvider"]["token"]

    pw.write_text("hunter2\n")
    with pytest.raises(PitoolsError, match="password hash"):
        lab_config(profile, password_file=pw, allow_root=AS_ROOT)
    pw.chmod(0o644)
    with pytest.raises(PitoolsError, match="chmod 600"):
        lab_config(profile, password_file=pw, allow_root=AS_ROOT)


@pytest.mark.parametrize("kwargs, expected", [
    ({"port": 0}, "`port` = 0"),
    ({"port": 70000}, "`port` = 70000 must be an integer from 1 to 65535"),
    ({"port": "8888"}, "`port` = '8888'"),
    ({"ip": "999.1.1.1"}, "`ip` = '999.1.1.1' is not an IP address"),
    ({"ip": "pi.local"}, "`ip` = 'pi.local'"),
    ({"cull_idle_after": -1}, "`cull_idle_after` = -1"),
    ({"certfile": "/nonexistent/cert.pem", "keyfile": "/nonexistent/key.pem"}, "`certfile` = '/nonexistent/cert.pem'"),
    ({"password_file": "/nonexistent/pw"}, "`password_file` = '/nonexistent/pw'"),
])
def test_bad_arguments_name_themselves(profile, kwargs, expected):
    with pytest.raises(PitoolsError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        lab_config(profile, allow_root=AS_ROOT, **kwargs)


def test_tls_needs_both_files(profile, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(PitoolsError, match="`keyfile` is missing"):
        lab_config(profile, certfile=cert, allow_root=AS_ROOT)
    with pytest.raises(PitoolsError, match="`certfile` is missing"):
        lab_config(profile, keyfile=key, allow_root=AS_ROOT)
    cfg = lab_config(profile, certfile=cert, keyfile=key, allow_root=AS_ROOT)
    assert cfg.url.startswith("https://") and f"--ServerApp.certfile={cert}" in cfg.argv


def test_root_is_refused_unless_allowed(profile, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # what CI containers and `sudo` are
    monkeypatch.delenv("SUDO_USER", raising=False)
    with pytest.raises(PitoolsError, match=r"refuses to run as root \(uid 0\).*pass `--allow-root`") as err:
        lab_config(profile)
    assert err.value.exit_code == 2 and "own user" in str(err.value)
    monkeypatch.setenv("SUDO_USER", "pi")
    with pytest.raises(PitoolsError, match="without sudo, as 'pi'"):
        lab_config(profile)
    # allowed: JupyterLab gets its own --allow-root, or it would refuse to start
    assert "--allow-root" in lab_config(profile, allow_root=True).argv
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "--allow-root" not in lab_config(profile, allow_root=True).argv  # not root: nothing to allow


def test_real_lab_with_a_password(profile, tmp_path):
    from jupyter_server.auth import passwd

    pw = tmp_path / "pw"
    pw.write_text(passwd("correct horse battery", algorithm="argon2") + "\n")
    pw.chmod(0o600)
    cfg = lab_config(profile, port=free_port(), password_file=pw, open_browser=False, allow_root=AS_ROOT)
    with _running(cfg, tmp_path) as (_, port):
        assert _request(port, "GET", "/api/contents")[0] == 403
        assert _request(port, "GET", "/api/contents?token=")[0] == 403  # no empty token slips through
        # the login form, as a browser fills it: the _xsrf cookie, then the password
        _, headers, _ = _request(port, "GET", "/login")
        cookies = {c.split("=", 1)[0]: c.split(";")[0] for c in headers.get_all("Set-Cookie", [])}
        xsrf = cookies["_xsrf"].split("=", 1)[1]
        form = f"_xsrf={quote(xsrf)}&password={quote('correct horse battery')}"
        status, headers, _ = _request(port, "POST", "/login?next=%2Flab", body=form, headers={
            "Cookie": cookies["_xsrf"], "Content-Type": "application/x-www-form-urlencoded"})
        assert status in (302, 303) and headers["Location"].endswith("/lab")
        login = [c.split(";")[0] for c in headers.get_all("Set-Cookie", []) if c.startswith("username-")]
        status, _, body = _request(port, "GET", "/api/contents", headers={"Cookie": login[0]})
        assert status == 200 and "notebooks" in {i["name"] for i in json.loads(body)["content"]}
        wrong = f"_xsrf={quote(xsrf)}&password=wrong"
        status, headers, _ = _request(port, "POST", "/login", body=wrong, headers={
            "Cookie": cookies["_xsrf"], "Content-Type": "application/x-www-form-urlencoded"})
        assert not any(c.startswith("username-") for c in headers.get_all("Set-Cookie", []))


def test_the_command_names_bad_input_before_starting_anything(tmp_path):
    from conftest import run_cli

    proc = run_cli("lab", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--port", "70000", "--allow-root")
    assert proc.returncode == 2 and "`port`" in proc.stderr and "70000" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("lab", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--certfile", str(tmp_path / "c.pem"),
                   "--allow-root")
    assert proc.returncode == 2 and "keyfile" in proc.stderr
