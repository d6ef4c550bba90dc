r"""systemd units of the box: render ``scheduled/*.in`` for this machine and install them.

Four units: ``pitools-nightly.service`` (the nightly run, with cgroup memory limits and a
wall-clock limit), ``pitools-nightly-failed.service`` (its ``OnFailure=`` hook),
``pitools-nightly.timer`` (its schedule) and ``pitools-lab.service`` (JupyterLab on the
LAN). Templates hold ``@NAME@`` fields; :func:`render_units` fills them from a profile,
the interpreter pitools runs in and the checkout; :func:`install_services` writes them
and enables the timer (what ``pitools install-services`` does).

The units run exactly the profile they were rendered from: every field in which it
differs from the profile of that name in the checkout's ``params/profiles.yaml`` (the
``--set`` overrides of ``pitools install-services``, or a ``Profile.replace``) is carried
into ``ExecStart=`` as ``--set KEY=VALUE``, and read back through :func:`load_profile`
at render time to prove the unit gets the same profile.

Quoting (systemd.service(5), "Command lines"; systemd.unit(5), "Specifiers"): systemd
first replaces specifiers in the whole line (``%%`` is a literal ``%``), then splits it
into words like a shell without globbing or pipes (double quotes group, ``\\`` and
``\"`` are a backslash and a quote inside them), then expands ``$NAME`` in each word
(``$$`` is a literal ``$``). :func:`_arg` writes a word so that this gives back the value.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pitools.config import PROFILES_FILE, Profile, load_profile, project_root
from pitools.data.atomic import write_text_atomic
from pitools.errors import ConfigError, ServiceError, SystemctlError, check_int, did_you_mean
from pitools.kernels import cache_dir

__all__ = ["UNIT_NAMES", "ServiceError", "SystemctlError", "render_units", "install_services",
           "unit_dir"]

UNIT_NAMES = ("pitools-nightly.service", "pitools-nightly-failed.service", "pitools-nightly.timer",
              "pitools-lab.service")
TIMER = "pitools-nightly.timer"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "scheduled"
_FIELD = re.compile(r"@([A-Z_]+)@")
_PLAIN_ARG = re.compile(r"[\w@%$+=:,./-]+")
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f"\\]')
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _safe(name: str, value: str) -> str:
    """`value` for a unit file: no line breaks, quotes or backslashes; ``%`` escaped."""
    if _BAD_CHARS.search(value):
        raise ServiceError(f"`{name}` = {value!r} cannot go into a systemd unit: it holds a quote, a "
                           "backslash or a control character; use a path or name without them")
    return value.replace("%", "%%")


def _arg(name: str, value: str) -> str:
    r"""One word of ``ExecStart=`` that systemd reads back as `value` (see the module docstring):
    ``%`` → ``%%``, ``$`` → ``$$``; double-quoted, with ``\\`` and ``\"`` escaped, unless it is plain."""
    if _CONTROL_CHARS.search(value):
        raise ServiceError(f"`{name}` = {value!r} cannot go into a systemd unit: it holds a line break or "
                           "another control character; use a value without them")
    text = value.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_text(value: object) -> str:
    """A profile value as the VALUE of ``--set KEY=VALUE`` (lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, (list, tuple)):
        return ",".join(_set_text(v) for v in value)
    return str(value)


def _carried_overrides(profile: Profile, root: Path) -> list[str]:
    """``KEY=VALUE`` for every field where `profile` differs from the profile of its name in
    `root`'s profiles file — what the units must pass so that they run `profile` itself."""
    file = root / PROFILES_FILE
    if not file.is_file():
        raise ServiceError(f"`root` = {str(root)!r} has no {PROFILES_FILE}: the units run pitools in that "
                           "folder, so it must be the pitools checkout; pass it as `root`")
    try:
        base = load_profile(profile.name, path=file)
    except ConfigError as exc:
        raise ServiceError(f"the units would run `pitools nightly --profile {profile.name}` in {str(root)!r}, "
                           f"but its {PROFILES_FILE} does not give that profile: {exc}") from None
    names = [f.name for f in dataclasses.fields(profile) if f.name != "name"]
    sets = [f"{n}={_set_text(getattr(profile, n))}" for n in names if getattr(profile, n) != getattr(base, n)]
    again = load_profile(profile.name, overrides=sets, path=file)
    lost = [n for n in names if getattr(again, n) != getattr(profile, n)]
    if lost:
        shown = ", ".join(f"`{n}` = {getattr(profile, n)!r}" for n in lost)
        raise ServiceError(f"{shown} cannot be passed to the units as `--set` (it does not read back the same); "
                           f"set it in profile {profile.name!r} of {str(file)!r} instead")
    return sets


def _env(name: str, key: str, value: str) -> str:
    return f'"{key}={_safe(name, value)}"'


def _current_user() -> str:
    uid = os.geteuid()
    if uid == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]  # `sudo pitools install-services`: the person, not root
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        raise ServiceError(f"the current uid {uid!r} has no entry in /etc/passwd; pass `user=` "
                           "(an existing login) to run the units as") from None


def _check_user(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except (KeyError, TypeError):
        names = [p.pw_name for p in pwd.getpwall()]
        raise ServiceError(f"`user` = {user!r} is not a user of this machine.{did_you_mean(str(user), names)} "
                           "Pass an existing login (e.g. the one that owns the checkout).") from None


def _check_schedule(schedule: str) -> None:
    _safe("schedule", schedule)
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return  # not a systemd machine: `--dest` still renders, systemd checks at install
    res = subprocess.run([tool, "calendar", schedule], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        raise ServiceError(f"profile `schedule` = {schedule!r} is not a systemd calendar expression"
                           f"{' (' + why[-1] + ')' if why else ''}; allowed: an OnCalendar= value such as "
                           "'Mon..Fri *-*-* 18:30:00 America/New_York' (see `man systemd.time`); "
                           "try it with `systemd-analyze calendar '...'`")


def render_units(profile: Profile, user_mode: bool = False, user: str | None = None,
                 python: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                 lab_port: int = 8888, *, lab_memory_max_mb: int = 1024) -> dict[str, str]:
    """Render the four units for `profile` on this machine.

    Parameters
    ----------
    profile : Profile
        Gives ``schedule``, ``nightly_timeout_min``, ``memory_high_mb``, ``memory_max_mb``,
        ``nice`` and ``data_dir`` (lab token file). The nightly and lab units run it with
        ``--set`` for each field where it differs from the file's profile of that name.
    user_mode : bool
        True: units for ``systemctl --user`` (no ``User=``/``Group=``, the lab is wanted by
        ``default.target``). False: system units that run as `user`.
    user : str, optional
        The login the units run as (system mode). Default: ``$SUDO_USER`` under sudo,
        else the current user.
    python : path, optional
        The interpreter pitools is installed in. Default: ``sys.executable`` made absolute
        but not resolved (a virtualenv's ``bin/python`` is a symlink out of the venv).
    root : path, optional
        The checkout (``WorkingDirectory=``, ``$PITOOLS_HOME``). Default: ``project_root()``.
    lab_port : int
        TCP port of JupyterLab, 1..65535.
    lab_memory_max_mb : int
        ``MemoryMax=`` of JupyterLab and its kernels, in MB.

    Returns
    -------
    dict
        File name → unit text, in :data:`UNIT_NAMES` order.

    Example
    -------
    >>> from pitools.config import load_profile
    >>> units = render_units(load_profile("ci"), user_mode=True, lab_port=9999)
    >>> "MemoryMax=3300M" in units["pitools-nightly.service"]
    True
    """
    lab_port = check_int("lab_port", lab_port, 1, 65535, error=ServiceError)
    lab_memory_max_mb = check_int("lab_memory_max_mb", lab_memory_max_mb, 64, 1_048_576, error=ServiceError)
    user = _current_user() if user is None else user
    entry = _check_user(user)
    python = Path(os.path.abspath(sys.executable if python is None else python))
    if not python.is_file() or not os.access(python, os.X_OK):
        raise ServiceError(f"`python` = {str(python)!r} is not an executable file; pass the interpreter "
                           "of the environment pitools is installed in (e.g. .venv/bin/python)")
    root = Path(os.path.abspath(project_root() if root is None else root))
    if not root.is_dir():
        raise ServiceError(f"`root` = {str(root)!r} is not a directory; pass the pitools checkout")
    _safe("root", str(root))  # WorkingDirectory= takes no quotes: refuse before anything else about it
    if user_mode and profile.nice < 0:
        raise ServiceError(f"profile `nice` = {profile.nice!r} is below 0, which a --user unit may not "
                           "ask for; use 0..19 or install system units (sudo, without --user)")
    _check_schedule(profile.schedule)
    if user_mode:
        user_lines = "# A --user unit runs as the user whose manager starts it (no User=/Group=)."
        network = "# (a --user manager cannot wait for the system's network-online.target)"
    else:
        group = grp.getgrgid(entry.pw_gid).gr_name
        user_lines = f"User={_safe('user', user)}\nGroup={_safe('group', group)}"
        network = "Wants=network-online.target\nAfter=network-online.target"
    data_dir = Path(profile.data_dir)
    sets = _carried_overrides(profile, root)
    # the numba cache of the user the units run as (pitools.kernels.cache_dir): this shell's
    # environment only when that user is the one installing, else that user's home
    env = os.environ if entry.pw_uid == os.geteuid() else {"HOME": entry.pw_dir}
    fields = {
        "PROFILE": _safe("profile", profile.name),
        "PROFILE_ARG": _arg("profile", profile.name),
        # the profile as rendered: its name and every override, so the timer runs this store
        "PROFILE_ARGS": " ".join(["--profile", _arg("profile", profile.name),
                                  *(f"--set {_arg('--set', s)}" for s in sets)]),
        "NETWORK": network,
        "USER_LINES": user_lines,
        "ROOT": _safe("root", str(root)),
        "ENV_HOME": _env("root", "PITOOLS_HOME", str(root)),
        "ENV_NUMBA": _env("numba cache dir", "NUMBA_CACHE_DIR", str(cache_dir(env))),
        "PYTHON": _arg("python", str(python)),
        "TIMEOUT_MIN": str(int(profile.nightly_timeout_min)),
        "MEMORY_HIGH_MB": str(int(profile.memory_high_mb)),
        "MEMORY_MAX_MB": str(int(profile.memory_max_mb)),
        "NICE": str(int(profile.nice)),
        "SCHEDULE": profile.schedule.strip(),
        "LAB_PORT": str(lab_port),
        "LAB_MEMORY_MAX_MB": str(lab_memory_max_mb),
        "TOKEN_FILE": _arg("data_dir", str(data_dir / "lab" / "token")),
        "WANTED_BY": "default.target" if user_mode else "multi-user.target",
        # mount namespaces: a system manager sets them up; a --user one often may not
        "PRIVATE_TMP": ("# PrivateTmp/ProtectSystem: left out of --user units (they need user namespaces)"
                        if user_mode else "PrivateTmp=yes"),
        "PROTECT_SYSTEM": "" if user_mode else "ProtectSystem=full",
    }
    units = {}
    for name in UNIT_NAMES:
        template = _template(name, root)
        fields["HEADER"] = (f"{name}: rendered by `pitools install-services` from scheduled/{name}.in "
                            f"for profile {profile.name!r}"
                            + (f" with {' '.join('--set ' + s for s in sets)}" if sets else "")
                            + "; change the template or the profile, not this file.")
        units[name] = _fill(name, template, fields)
    return units


def _template(name: str, root: Path) -> str:
    for folder in (TEMPLATE_DIR, root / "scheduled"):
        if (folder / f"{name}.in").is_file():
            return (folder / f"{name}.in").read_text()
    raise ServiceError(f"template {name + '.in'!r} is missing from {str(TEMPLATE_DIR)!r}; "
                       "restore scheduled/ from git")


def _fill(name: str, template: str, fields: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(1) not in fields:
            raise ServiceError(f"template {name + '.in'!r} has an unknown field @{m.group(1)}@; "
                               f"known: {', '.join(sorted(fields))}")
        return fields[m.group(1)]

    return _FIELD.sub(sub, template)


def unit_dir(user_mode: bool) -> Path:
    """Where systemd reads installed units: ``/etc/systemd/system`` or ``~/.config/systemd/user``."""
    if not user_mode:
        return SYSTEM_UNIT_DIR
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "systemd" / "user"


def _write(units: dict[str, str], folder: Path) -> list[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in units.items():
            write_text_atomic(folder / name, text, perms=0o644)  # world-readable, like /etc/systemd's
            paths.append(folder / name)
        return paths
    except OSError as exc:
        raise ServiceError(f"cannot write the units into {str(folder)!r}: {exc.strerror or exc}; "
                           "pick a writable folder") from None


def _memory_note() -> str:
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")
    try:
        if "memory" in controllers.read_text().split():
            return ""
    except OSError:
        return ""
    return ("note: the cgroup memory controller is off here, so MemoryHigh/MemoryMax are not enforced; "
            "on Raspberry Pi OS add `cgroup_enable=memory` to /boot/firmware/cmdline.txt and reboot\n")


def install_services(profile: Profile, user_mode: bool = False, dry_run: bool = False,
                     dest: str | os.PathLike | None = None, lab_port: int = 8888,
                     run: Callable[..., subprocess.CompletedProcess] = subprocess.run, *,
                     user: str | None = None, python: str | os.PathLike | None = None,
                     root: str | os.PathLike | None = None, lab_memory_max_mb: int = 1024) -> str:
    """Render the units and install them (``pitools install-services``); returns what was done.

    Parameters
    ----------
    profile, user_mode, lab_port, user, python, root, lab_memory_max_mb
        As in :func:`render_units`.
    dry_run : bool
        Return the rendered units (a ``# ---- <name>`` line before each) and write nothing.
    dest : path, optional
        Write the units into this folder and enable nothing; the text says how to install
        them by hand.
    run : callable
        Runs ``systemctl``/``loginctl`` (``subprocess.run``'s signature; tests pass a fake).

    Otherwise the units go to ``/etc/systemd/system`` (needs root) or, with `user_mode`,
    ``~/.config/systemd/user``, then ``systemctl [--user] daemon-reload``, ``systemctl
    [--user] enable --now pitools-nightly.timer`` and, with `user_mode`, ``loginctl
    enable-linger USER`` so the timer fires while the user is logged out.

    Example
    -------
    >>> from pitools.config import load_profile
    >>> print(install_services(load_profile("pi_safe"), user_mode=True, dry_run=True))
    # ---- pitools-nightly.service
    ...
    """
    user = _current_user() if user is None else user
    units = render_units(profile, user_mode=user_mode, user=user, python=python, root=root,
                         lab_port=lab_port, lab_memory_max_mb=lab_memory_max_mb)
    scope, sudo = (["--user"], "") if user_mode else ([], "sudo ")
    sc = " ".join(["systemctl", *scope])
    if dry_run:
        return "\n".join(f"# ---- {name}\n{text}" for name, text in units.items())
    if dest is not None:
        folder = Path(dest)
        _write(units, folder)
        files = " ".join(shlex.quote(str(folder / n)) for n in units)
        target = "~/.config/systemd/user" if user_mode else str(SYSTEM_UNIT_DIR)
        return (f"wrote {', '.join(units)} into {folder} (nothing enabled); to install by hand:\n"
                f"  {sudo}install -D -m 644 -t {target} {files}\n"
                f"  {sudo}{sc} daemon-reload\n  {sudo}{sc} enable --now {TIMER}\n"
                + (f"  loginctl enable-linger {shlex.quote(user)}\n" if user_mode else "")
                + _memory_note())
    if user_mode and os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        raise ServiceError(f"`--user` under sudo would install into root's user manager; run "
                           f"`pitools install-services --user` as {os.environ['SUDO_USER']!r} without sudo")
    if not user_mode and os.geteuid() != 0:
        raise ServiceError(f"installing system units into {str(SYSTEM_UNIT_DIR)!r} needs root: run it with "
                           "sudo (e.g. `sudo .venv/bin/pitools install-services`), or pass `--user` for units "
                           "of your own systemd user manager, or `--dest DIR` to only write the files")
    folder = unit_dir(user_mode)
    _write(units, folder)
    lines = [f"wrote {', '.join(units)} into {folder}"]
    commands = [["systemctl", *scope, "daemon-reload"], ["systemctl", *scope, "enable", "--now", TIMER]]
    if user_mode:
        commands.append(["loginctl", "enable-linger", user])
    for cmd in commands:
        lines.append("$ " + shlex.join(cmd))
        try:
            res = run(cmd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise SystemctlError(f"cannot run {cmd[0]!r} ({exc.strerror or exc}): is this a systemd machine? "
                                 f"Use `--dest DIR` to only write the files (done: {'; '.join(lines[:-1])})") from None
        if res.returncode != 0:
            why = ((res.stderr or "") + (res.stdout or "")).strip()
            raise SystemctlError(f"`{shlex.join(cmd)}` failed with exit status {res.returncode}: "
                                 f"{why or 'no message'} (done before it: {'; '.join(lines[:-1])})")
    lines.append(f"the nightly timer is enabled: `{sc} list-timers {TIMER}` shows the next run, "
                 f"`journalctl {'--user ' if user_mode else ''}-u pitools-nightly` its log")
    lines.append(f"JupyterLab is installed but not started: `{sudo}{sc} enable --now pitools-lab.service` "
                 f"(the token goes in {Path(profile.data_dir) / 'lab' / 'token'})")
    if not user_mode and user == "root":
        lines.append("note: the units run as root; run the installer with sudo from your own login to run them as you "
                     "(pitools-lab.service refuses to start as root: every kernel would be a root shell on the LAN)")
    return "\n".join(lines) + "\n" + _memory_note()
