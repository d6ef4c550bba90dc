"""systemd units: rendered from the profile, checked by the real ``systemd-analyze verify``.

``systemd-analyze verify --recursive-errors=no`` is what makes a bad setting fail: without
an explicit ``--recursive-errors`` systemd 252 only logs "…, ignoring" and exits 0. User
units are verified with ``--user`` and a private ``XDG_RUNTIME_DIR`` (there is no user
manager in a container); where even that cannot start, the system verify is used.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pitools.box import services
from pitools.config import load_profile
from pitools.errors import PitoolsError
from pitools.kernels import cache_dir
from pitools.box.services import UNIT_NAMES, ServiceError, SystemctlError, install_services, render_units

ROOT = Path(__file__).resolve().parents[1]
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


class Recorder:
    """A stand-in for subprocess.run that records each command."""

    def __init__(self, returncode: int = 0, stderr: str = ""):
        self.calls: list[list[str]] = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, self.returncode, stdout="", stderr=self.stderr)


@pytest.fixture(autouse=True)
def _no_sudo(monkeypatch):
    monkeypatch.delenv("SUDO_USER", raising=False)


def me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def verify(folder: Path, user_mode: bool, tmp_path: Path) -> tuple[int, str]:
    """Run the real ``systemd-analyze [--user] verify`` on every unit in `folder`."""
    files = sorted(str(p) for p in folder.iterdir())
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""}
    base = [ANALYZE, "verify", "--man=no", "--recursive-errors=no"]
    if user_mode:
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        res = subprocess.run([ANALYZE, "--user", *base[1:], *files], capture_output=True, text=True,
                             timeout=60, env={**env, "XDG_RUNTIME_DIR": str(runtime)})
        if "Failed to initialize manager" not in res.stderr:
            return res.returncode, res.stdout + res.stderr
    res = subprocess.run([*base, *files], capture_output=True, text=True, timeout=60, env=env)
    return res.returncode, res.stdout + res.stderr


def systemd_argv(line: str) -> list[str]:
    """The argv systemd runs for one ``ExecStart=`` value, by its rules (systemd.service(5)
    "Command lines", systemd.unit(5) "Specifiers"), written out independently of pitools:
    split into words (double or single quotes group; a backslash escapes the next character,
    C escapes included), then in each word ``%%`` → ``%`` and ``$$`` → ``$``. Any other
    specifier or ``$NAME`` would be replaced by systemd, so it fails here."""
    escapes = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "s": " "}
    words, word, quote, in_word, i = [], [], None, False, 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            nxt = line[i + 1]
            word.append(escapes.get(nxt, nxt))
            in_word, i = True, i + 2
            continue
        if quote:
            if c == quote:
                quote = None
            else:
                word.append(c)
        elif c in "\"'":
            quote, in_word = c, True
        elif c.isspace():
            if in_word:
                words.append("".join(word))
            word, in_word = [], False
        else:
            word.append(c)
            in_word = True
        i += 1
    assert quote is None, f"unbalanced quote in {line!r}"
    if in_word:
        words.append("".join(word))
    out = []
    for w in words:
        assert not re.search(r"%[^%]", w.replace("%%", "")), f"a specifier systemd would expand in {w!r}"
        assert not re.search(r"\$[^$]", w.replace("$$", "")), f"a variable systemd would expand in {w!r}"
        out.append(w.replace("%%", "%").replace("$$", "$"))
    return out


def exec_start(unit_text: str) -> list[str]:
    (line,) = directives(unit_text)["ExecStart"]
    argv = systemd_argv(line)
    # a second, unrelated reading: shlex after undoing systemd's own escapes
    assert shlex.split(line.replace("%%", "%").replace("$$", "$")) == argv, line
    return argv


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@needs_analyze
@pytest.mark.parametrize("user_mode", [False, True], ids=["system", "user"])
@pytest.mark.parametrize("name", ["ci", "pi_safe"])
def test_dest_writes_the_four_units_that_systemd_accepts(name, user_mode, tmp_path):
    rec = Recorder()
    dest = tmp_path / "units"
    text = install_services(load_profile(name), user_mode=user_mode, dest=dest, run=rec)
    assert sorted(p.name for p in dest.iterdir()) == sorted(UNIT_NAMES)
    assert rec.calls == []  # --dest enables nothing
    assert "nothing enabled" in text and "enable --now pitools-nightly.timer" in text
    assert all((dest / n).stat().st_mode & 0o777 == 0o644 for n in UNIT_NAMES)
    rc, out = verify(dest, user_mode, tmp_path)
    assert rc == 0, out
    for n in UNIT_NAMES:  # not even a warning about a unit of ours
        assert n not in out and str(dest) not in out, out
    nightly = directives((dest / "pitools-nightly.service").read_text())
    lab = directives((dest / "pitools-lab.service").read_text())
    if user_mode:
        assert "User" not in nightly and "Group" not in nightly and lab["WantedBy"] == ["default.target"]
    else:
        assert nightly["User"] == [me()] and "Group" in nightly and lab["WantedBy"] == ["multi-user.target"]


@needs_analyze
@pytest.mark.parametrize("user_mode", [False, True], ids=["system", "user"])
@pytest.mark.parametrize("unit, good, bad, said", [
    ("pitools-nightly.service", "MemoryMax=3300M", "MemoryMax=lots", "lots"),
    ("pitools-nightly.service", "Nice=10", "Nice=99", "99"),
    ("pitools-nightly.service", "TimeoutStartSec=180min", "TimeoutStartSec=soon", "soon"),
    ("pitools-nightly.timer", "OnCalendar=Mon..Fri", "OnCalendar=Blursday 99:99 #", "Blursday"),
    ("pitools-lab.service", "ExecStart=/", "ExecStart=relative/", "relative/"),
])
def test_verify_rejects_a_corrupted_unit(unit, good, bad, said, user_mode, tmp_path):
    dest = tmp_path / "units"
    install_services(load_profile("pi_safe"), user_mode=user_mode, dest=dest, run=Recorder())
    path = dest / unit
    text = path.read_text()
    assert good in text
    path.write_text(text.replace(good, bad, 1))
    rc, out = verify(dest, user_mode, tmp_path)
    assert rc != 0 and said in out, out


def test_limits_and_priority_come_from_the_profile(tmp_path):
    p = load_profile("ci").replace(memory_high_mb=1500, memory_max_mb=1800, nightly_timeout_min=45, nice=5,
                                   schedule="*-*-* 02:15:00")
    units = render_units(p, lab_port=9999, lab_memory_max_mb=768)
    nightly = directives(units["pitools-nightly.service"])
    assert nightly["MemoryHigh"] == ["1500M"] and nightly["MemoryMax"] == ["1800M"]
    assert nightly["TimeoutStartSec"] == ["45min"] and nightly["Nice"] == ["5"]
    assert nightly["MemorySwapMax"] == ["0"] and nightly["KillMode"] == ["control-group"]
    assert nightly["OnFailure"] == ["pitools-nightly-failed.service"] and nightly["Type"] == ["oneshot"]
    python = os.path.abspath(sys.executable)
    carried = ('--profile ci --set nightly_timeout_min=45 --set memory_high_mb=1500 --set memory_max_mb=1800 '
               '--set nice=5 --set "schedule=*-*-* 02:15:00"')  # the replaced fields: the unit runs this profile
    assert nightly["ExecStart"] == [f"{python} -m pitools nightly {carried}"]
    assert f'"NUMBA_CACHE_DIR={cache_dir()}"' in nightly["Environment"]  # one cache, not per data folder
    assert '"PYTHONUNBUFFERED=1"' in nightly["Environment"]
    failed = directives(units["pitools-nightly-failed.service"])
    assert failed["ExecStart"] == [f"{python} -m pitools nightly-failed --profile ci --unit pitools-nightly.service"]
    timer = directives(units["pitools-nightly.timer"])
    assert timer["OnCalendar"] == ["*-*-* 02:15:00"] and timer["Persistent"] == ["true"]
    assert timer["Unit"] == ["pitools-nightly.service"] and timer["WantedBy"] == ["timers.target"]
    lab = directives(units["pitools-lab.service"])
    assert lab["ExecStart"] == [f"{python} -m pitools lab {carried} --ip 0.0.0.0 --port 9999 "
                                f"--token-file {p.data_dir / 'lab' / 'token'}"]
    assert lab["MemoryMax"] == ["768M"] and lab["Restart"] == ["on-failure"]


@needs_analyze
def test_paths_with_spaces_and_percent_are_quoted_and_escaped(tmp_path):
    venv = tmp_path / "my env 100%" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)  # a venv's python is a symlink: kept, not resolved
    root = tmp_path / "check out"
    (root / "params").mkdir(parents=True)
    shutil.copy(ROOT / "params" / "profiles.yaml", root / "params")
    units = render_units(load_profile("ci", path=root / "params" / "profiles.yaml"), python=venv / "python", root=root)
    nightly = directives(units["pitools-nightly.service"])
    assert nightly["ExecStart"] == [f'"{str(venv / "python").replace("%", "%%")}" -m pitools nightly --profile ci']
    assert nightly["WorkingDirectory"] == [str(root)]
    dest = tmp_path / "units"
    services._write(units, dest)
    rc, out = verify(dest, False, tmp_path)
    assert rc == 0 and "pitools" not in out, out


def test_dry_run_writes_nothing_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "SYSTEM_UNIT_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    rec = Recorder()
    for user_mode in (False, True):
        text = install_services(load_profile("pi_safe"), user_mode=user_mode, dry_run=True,
                                dest=tmp_path / "dest", run=rec)
        assert [l for l in text.splitlines() if l.startswith("# ---- ")] == [f"# ---- {n}" for n in UNIT_NAMES]
        assert "MemoryMax=3300M" in text
    assert rec.calls == [] and list(tmp_path.iterdir()) == []


def test_user_install_enables_the_timer_and_lingers(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    rec = Recorder()
    text = install_services(load_profile("pi_safe"), user_mode=True, run=rec)
    folder = tmp_path / "config" / "systemd" / "user"
    assert sorted(p.name for p in folder.iterdir()) == sorted(UNIT_NAMES)
    assert rec.calls == [["systemctl", "--user", "daemon-reload"],
                         ["systemctl", "--user", "enable", "--now", "pitools-nightly.timer"],
                         ["loginctl", "enable-linger", me()]]
    assert "$ systemctl --user daemon-reload" in text and f"$ loginctl enable-linger {me()}" in text


def test_system_install_needs_root_then_runs_systemctl(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "SYSTEM_UNIT_DIR", tmp_path / "system")
    monkeypatch.setattr(services.os, "geteuid", lambda: 1000)
    rec = Recorder()
    with pytest.raises(ServiceError, match=r"needs root.*sudo.*--user"):
        install_services(load_profile("pi_safe"), user="root", run=rec)
    assert rec.calls == [] and not (tmp_path / "system").exists()
    monkeypatch.setattr(services.os, "geteuid", lambda: 0)
    text = install_services(load_profile("pi_safe"), user="root", run=rec)
    assert sorted(p.name for p in (tmp_path / "system").iterdir()) == sorted(UNIT_NAMES)
    assert rec.calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "pitools-nightly.timer"]]
    assert "$ systemctl enable --now pitools-nightly.timer" in text


def test_a_failing_systemctl_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    rec = Recorder(returncode=1, stderr="Failed to connect to bus: No medium found")
    with pytest.raises(SystemctlError, match=r"systemctl --user daemon-reload.*exit status 1.*connect to bus") as e:
        install_services(load_profile("pi_safe"), user_mode=True, run=rec)
    assert e.value.exit_code == 1 and isinstance(e.value, PitoolsError) and len(rec.calls) == 1

    def missing(cmd, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", cmd[0])

    with pytest.raises(SystemctlError, match="cannot run 'systemctl'"):
        install_services(load_profile("pi_safe"), user_mode=True, run=missing)


@pytest.mark.parametrize("port", [0, 65536, -1, "8888", True, 8.5])
def test_bad_port_is_named(port):
    with pytest.raises(ServiceError, match=r"`lab_port` = " + repr(port).replace(".", r"\.") + ".*1 to 65535"):
        render_units(load_profile("ci"), lab_port=port)


def test_unknown_user_and_bad_python_are_named(tmp_path):
    with pytest.raises(ServiceError, match="`user` = 'no-such-user-xyz' is not a user") as e:
        install_services(load_profile("ci"), user="no-such-user-xyz", dest=tmp_path / "d")
    assert e.value.exit_code == 2 and isinstance(e.value, ValueError) and not (tmp_path / "d").exists()
    with pytest.raises(ServiceError, match="`python` = '/no/such/python' is not an executable"):
        render_units(load_profile("ci"), python="/no/such/python")
    with pytest.raises(ServiceError, match="`nice` = -5 .*--user"):
        render_units(load_profile("ci").replace(nice=-5), user_mode=True)
    with pytest.raises(ServiceError, match=r"`root` = '.*line\\nbreak'.*quote"):
        (tmp_path / "line\nbreak").mkdir()
        render_units(load_profile("ci"), root=tmp_path / "line\nbreak")


@needs_analyze
def test_bad_schedule_is_named(tmp_path):
    bad = load_profile("ci").replace(schedule="Blursday 25:99")
    with pytest.raises(ServiceError, match=r"`schedule` = 'Blursday 25:99' is not a systemd calendar"):
        install_services(bad, dest=tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_the_command_writes_the_units_to_dest_and_names_bad_input(tmp_path):
    from conftest import run_cli

    dest = tmp_path / "units"
    proc = run_cli("install-services", "--profile", "ci", "--dest", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(UNIT_NAMES)
    assert "pitools nightly --profile ci" in (dest / "pitools-nightly.service").read_text()
    dry = run_cli("install-services", "--profile", "ci", "--dry-run")
    assert dry.returncode == 0 and "# ---- pitools-nightly.timer" in dry.stdout
    bad = run_cli("install-services", "--profile", "ci", "--dest", str(tmp_path / "x"), "--lab-port", "70000")
    assert bad.returncode == 2 and "70000" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()


# ------------------------------------------------ the units run the profile as rendered

def test_the_command_carries_set_overrides_into_execstart():
    from conftest import run_cli

    proc = run_cli("install-services", "--dry-run", "--profile", "pi_safe", "--set", "data_dir=/srv/pt")
    assert proc.returncode == 0, proc.stderr
    units = dict(part.split("\n", 1) for part in proc.stdout.split("# ---- ")[1:])
    python = os.path.abspath(sys.executable)
    assert exec_start(units["pitools-nightly.service"]) == [
        python, "-m", "pitools", "nightly", "--profile", "pi_safe", "--set", "data_dir=/srv/pt"]
    assert exec_start(units["pitools-lab.service"]) == [
        python, "-m", "pitools", "lab", "--profile", "pi_safe", "--set", "data_dir=/srv/pt", "--ip", "0.0.0.0",
        "--port", "8888", "--token-file", "/srv/pt/lab/token"]
    # the failure hook loads no profile (it must work when the profile is what broke)
    assert exec_start(units["pitools-nightly-failed.service"]) == [
        python, "-m", "pitools", "nightly-failed", "--profile", "pi_safe", "--unit", "pitools-nightly.service"]


NASTY = {"data_dir": '/srv/my "pt" 100% $HOME', "drop_dir": "drop\\box 'x' %n", "n_workers": "1",
         "sleep_between_evals": "0.25", "schedule": "Mon..Fri *-*-* 19:00:00"}


@pytest.mark.parametrize("user_mode", [False, True], ids=["system", "user"])
def test_quotes_spaces_percent_dollar_and_backslash_read_back_as_the_same_profile(user_mode, tmp_path):
    profile = load_profile("pi_safe", overrides=NASTY)
    units = render_units(profile, user_mode=user_mode)
    argv = exec_start(units["pitools-nightly.service"])
    assert argv[:6] == [os.path.abspath(sys.executable), "-m", "pitools", "nightly", "--profile", "pi_safe"]
    sets = argv[6:]
    assert sets[::2] == ["--set"] * len(NASTY)
    values = dict(s.split("=", 1) for s in sets[1::2])
    assert values == NASTY
    # what the unit runs is the profile that was rendered
    assert load_profile("pi_safe", overrides=sets[1::2]) == profile
    lab = exec_start(units["pitools-lab.service"])
    assert lab[6:6 + len(sets)] == sets and lab[-1] == '/srv/my "pt" 100% $HOME/lab/token'
    if ANALYZE is not None:  # and systemd itself reads the files without a complaint
        dest = tmp_path / "units"
        services._write(units, dest)
        rc, out = verify(dest, user_mode, tmp_path)
        assert rc == 0 and "pitools" not in out, out


def test_a_replaced_profile_is_carried_and_an_unchanged_one_adds_nothing():
    plain = exec_start(render_units(load_profile("ci"))["pitools-nightly.service"])
    assert "--set" not in plain
    same = load_profile("ci", overrides=["n_workers=2"])  # ci already has 2 workers: nothing to carry
    assert exec_start(render_units(same)["pitools-nightly.service"]) == plain
    changed = load_profile("ci").replace(n_workers=1, seed=99)
    assert exec_start(render_units(changed)["pitools-nightly.service"])[-4:] == ["--set", "n_workers=1",
                                                                                 "--set", "seed=99"]


def test_the_numba_cache_is_the_unit_users_and_shared_by_data_folders(tmp_path):
    a = render_units(load_profile("ci", overrides=[f"data_dir={tmp_path / 'a'}"]))
    b = render_units(load_profile("ci", overrides=[f"data_dir={tmp_path / 'b'}"]))
    env_a = directives(a["pitools-nightly.service"])["Environment"]
    assert f'"NUMBA_CACHE_DIR={cache_dir()}"' in env_a
    assert env_a == directives(b["pitools-nightly.service"])["Environment"]
    other = render_units(load_profile("ci"), user="nobody")  # another login: its home, not this shell's
    home = pwd.getpwnam("nobody").pw_dir
    assert f'"NUMBA_CACHE_DIR={home}/.cache/pitools/numba"' in directives(other["pitools-lab.service"])["Environment"]


def test_a_profile_the_checkout_does_not_have_is_refused(tmp_path):
    with pytest.raises(ServiceError, match=r"`root` = .* has no params/profiles\.yaml"):
        render_units(load_profile("ci"), root=tmp_path)
    ghost = dataclasses.replace(load_profile("ci"), name="ghost")
    with pytest.raises(ServiceError, match=r"--profile ghost.*unknown profile 'ghost'"):
        render_units(ghost)
    with pytest.raises(ServiceError, match=r"line break"):
        render_units(load_profile("ci", overrides={"drop_dir": "in\ncoming"}))


def test_systemd_argv_reads_like_systemd():  # the reader above, on cases from systemd.service(5)
    assert systemd_argv('/bin/echo "one two" three\\ four \'a "b"\' "x\\\\y" 5%%') == [
        "/bin/echo", "one two", "three four", 'a "b"', "x\\y", "5%"]
    with pytest.raises(AssertionError):
        systemd_argv("/bin/echo $HOME")
    with pytest.raises(AssertionError):
        systemd_argv("/bin/echo %h")
