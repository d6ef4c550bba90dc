"""``pitools lab``: JupyterLab for the LAN, always behind a token or a password.

The server is ``python -m jupyterlab`` of this environment, rooted at the project (so
``notebooks/`` and the nightly reports in ``outputs/`` are in its file browser), with the
``pitools`` kernel installed and idle kernels culled so they do not hold RAM the nightly
run needs.

How the secret reaches the server: never on the command line (``ps`` shows argv to every
user) and never in the environment (every kernel inherits it, so ``!env`` in a notebook
would print it into a report). :func:`lab_config` writes ``<data_dir>/lab/server-config.json``
(mode 0600, in a 0700 folder) holding ``IdentityProvider.token`` and, with a password,
``PasswordIdentityProvider.hashed_password``; the command line names only that file
(``--config=…``). With ``--config`` jupyter_server reads that file (and ``jupyter_config.*``)
instead of the user's ``jupyter_server_config.*``: the lab's settings are these, on purpose.

JupyterLab's own setting defaults (:data:`LAB_SETTING_DEFAULTS`: no news pop-up, no update
check) go in ``<data_dir>/lab/jupyter-config/labconfig/default_setting_overrides.json``, a
folder put first on the server's ``JUPYTER_CONFIG_PATH`` (JupyterLab reads the ``labconfig``
folder of every Jupyter config folder), which leaves ``~/.jupyter`` and the environment alone.

Root: JupyterLab refuses to run as root unless given ``--allow-root``, and so does
``pitools lab``; with ``--allow-root`` it passes the flag on.

The token lives in `token_file` (default ``<data_dir>/lab/token``); a missing one is made
with :func:`secrets.token_urlsafe`, mode 0600. An empty, short or group/other-readable one is
refused. For a password instead, make a hash file (the prompt goes to the terminal)::

    (umask 077; python -c "from jupyter_server.auth import passwd; print(passwd())" > FILE)

and pass ``password_file=FILE`` (``--password-file FILE``) without a token file; pass both
to accept either.

Example
-------
Not run as tests (they write the token and start a server; the tests do that in a folder of their own):

>>> from pitools.config import load_profile
>>> cfg = lab_config(load_profile("demo"), port=8888)  # doctest: +SKIP
>>> cfg.url  # doctest: +SKIP
'http://127.0.0.1:8888/lab?token=…'
>>> run_lab(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pitools.config import Profile, project_root
from pitools.data.atomic import fsync_dir, write_text_atomic
from pitools.errors import ConfigError, check_int
from pitools.kernels import cache_dir
from pitools.box.kernelspec import ensure_kernel

__all__ = ["LabConfig", "lab_config", "run_lab", "lan_addresses", "MIN_TOKEN_CHARS", "LAB_SETTING_DEFAULTS"]

MIN_TOKEN_CHARS = 16  # the server is on the LAN and has no rate limit on guesses
CULL_INTERVAL_S = 60
# Defaults for JupyterLab's own settings (a user's saved choice still wins). JupyterLab 4
# asks "Would you like to get notified about official Jupyter news?" on every fresh browser
# profile while `fetchNews` is "none", and checks PyPI for a newer JupyterLab; on a box whose
# environment is pinned by requirements.lock both are noise, and the news comes from the
# internet. The announcements plugin reads exactly these two settings.
LAB_SETTING_DEFAULTS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}
_PASSWORD_HELP = ('(umask 077; python -c "from jupyter_server.auth import passwd; print(passwd())" > {f})')


@dataclass(frozen=True)
class LabConfig:
    """Everything needed to start the server; made by :func:`lab_config`."""

    argv: list[str]              # the full command to exec; holds no secret
    env: dict[str, str]          # its environment; holds no secret either
    url: str                     # what to open from another machine (with the token, if any)
    token_file: Path | None      # None: password only
    root_dir: Path
    config_file: Path            # the 0600 JSON that carries the token / password hash
    password_file: Path | None = None
    urls: tuple[str, ...] = ()   # every address this server should answer on


def _check_ip(ip: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(ip))
    except ValueError:
        raise ConfigError(f"`ip` = {ip!r} is not an IP address; use 127.0.0.1 (this machine only), "
                          "0.0.0.0 (every interface, the LAN) or one address of this machine") from None


def _existing_file(name: str, value: str | os.PathLike) -> Path:
    path = Path(os.path.expanduser(value))
    if not path.is_file():
        raise ConfigError(f"`{name}` = {str(value)!r} is not an existing file; give the path of one")
    return path.resolve()


def _read_secret(name: str, path: Path) -> str:
    """The stripped text of a secret file that only its owner can read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"`{name}` = {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # the mode of what was opened, not of what the name points at later
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"`{name}` = {str(path)!r} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(f"`{name}` = {str(path)!r} has mode {stat.S_IMODE(st.st_mode):04o}: group or others "
                              f"can read the secret; only its owner may. Fix it with `chmod 600 {path}`")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, encoding="utf-8") as fh:
        return fh.read().strip()


def _token(token_file: Path) -> str:
    """Read the token, or create the file with a new one (0600, folder 0700)."""
    token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        # O_EXCL: of two starts racing, one writes and the other reads what it wrote
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(token_file.parent)
    token = _read_secret("token_file", token_file)
    if not token:
        raise ConfigError(f"`token_file` = {str(token_file)!r} is empty; an empty token would let anyone on the LAN "
                          "in. Delete the file (`pitools lab` writes a new token) or put a token in it")
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"`token_file` = {str(token_file)!r} holds a token of {len(token)} characters; it must be "
                          f"at least {MIN_TOKEN_CHARS} printable characters without spaces. Delete the file to get "
                          "a new one")
    return token


def _hashed_password(password_file: Path) -> str:
    text = _read_secret("password_file", password_file)
    algorithm, _, rest = text.partition(":")
    ok_algorithm = algorithm == "argon2" or algorithm in hashlib.algorithms_available
    if not text or not rest or not ok_algorithm or (algorithm != "argon2" and rest.count(":") != 1):
        raise ConfigError(f"`password_file` = {str(password_file)!r} does not hold a password hash "
                          "('argon2:…' or 'sha1:salt:hash'); make one with " + _PASSWORD_HELP.format(f=password_file))
    return text


def _write_private_json(path: Path, data: dict) -> None:
    """Write `data` to `path` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_text_atomic(path, json.dumps(data, indent=1))  # mkstemp: 0600 from birth, never readable by others


def lan_addresses(family: int = socket.AF_INET) -> list[str]:
    """This machine's non-loopback addresses (best effort; ``[]`` when none are found).

    >>> addresses = lan_addresses()                  # e.g. ['192.168.1.42']
    >>> any(a.startswith("127.") for a in addresses)  # never loopback
    False
    """
    found: list[str] = []
    try:
        found += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, family)]
    except OSError:
        pass
    try:  # the address of the default route; a UDP connect sends nothing
        probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            found.insert(0, s.getsockname()[0])
    except OSError:
        pass
    keep = []
    for a in found:
        ip = ipaddress.ip_address(a.split("%")[0])
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified) and a not in keep:
            keep.append(a)
    return keep


def _url(scheme: str, host: str, port: int, token: str) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/lab" + (f"?token={quote(token, safe='')}" if token else "")


def lab_config(profile: Profile, ip: str = "127.0.0.1", port: int = 8888,
               token_file: str | os.PathLike | None = None, password_file: str | os.PathLike | None = None,
               certfile: str | os.PathLike | None = None, keyfile: str | os.PathLike | None = None,
               cull_idle_after: int = 1800, root: str | os.PathLike | None = None, *,
               open_browser: bool | None = None, allow_root: bool = False) -> LabConfig:
    """Validate the options, prepare the token and the ``pitools`` kernel, build the command.

    Parameters
    ----------
    profile : Profile
        Its ``data_dir`` holds ``lab/token`` and ``lab/server-config.json``.
    ip : str
        Address to listen on: ``127.0.0.1`` this machine only, ``0.0.0.0`` the LAN.
    port : int
        1..65535. Taken already: the server fails rather than move to another port.
    token_file, password_file : path, optional
        The token (made when missing) and/or a ``passwd()`` hash. Only `password_file`:
        password login, no token. Neither: the default token file.
    certfile, keyfile : path, optional
        Both or neither; with them the server speaks https.
    cull_idle_after : int
        Seconds after which an idle kernel with no open browser tab is shut down; 0 never.
        Connected kernels are kept (``cull_connected=False``): a tab being read keeps its
        state, and a laptop that sleeps drops its connection, so forgotten tabs still go.
    root : path, optional
        The server's root folder; default the project root.
    open_browser : bool, optional
        Default: only on loopback and not under systemd. Never on a LAN address.
    allow_root : bool
        Running as root is refused unless True (a kernel is a shell on the box).

    Example
    -------
    >>> cfg = lab_config(load_profile("ci"), ip="0.0.0.0", port=8888)  # doctest: +SKIP
    >>> os.execve(cfg.argv[0], cfg.argv, cfg.env)  # doctest: +SKIP
    """
    address = _check_ip(ip)
    port = check_int("port", port, 1, 65535)
    cull = check_int("cull_idle_after", cull_idle_after, 0, allowed="a whole number of seconds >= 0 (0: never cull)")
    if os.geteuid() == 0 and not allow_root:
        # JupyterLab refuses root the same way; a flag nobody passed must not open a root shell on the LAN
        sudo_user = os.environ.get("SUDO_USER")
        instead = (f"Run it without sudo, as {sudo_user!r}" if sudo_user else
                   "Run it as your own user (the unit of `pitools install-services` sets User=)")
        raise ConfigError("`pitools lab` refuses to run as root (uid 0), as JupyterLab itself does: every kernel and "
                          f"terminal would be a root shell for whoever has the token. {instead}; where root is all "
                          "there is (a container, CI), pass `--allow-root` (`pitools lab --allow-root`), which "
                          "pitools hands on to JupyterLab")
    if (certfile is None) != (keyfile is None):
        missing, given = ("keyfile", certfile) if keyfile is None else ("certfile", keyfile)
        raise ConfigError(f"`{missing}` is missing: TLS needs both `certfile` and `keyfile` (got only "
                          f"{str(given)!r}); pass --{missing} PEM too, or neither for plain http")
    cert = _existing_file("certfile", certfile) if certfile is not None else None
    key = _existing_file("keyfile", keyfile) if keyfile is not None else None
    pw_path = _existing_file("password_file", password_file) if password_file is not None else None
    hashed = _hashed_password(pw_path) if pw_path is not None else ""
    lab_dir = Path(profile.data_dir) / "lab"
    tok_path = None
    if token_file is not None or pw_path is None:
        tok_path = Path(os.path.expanduser(token_file)) if token_file is not None else lab_dir / "token"
        tok_path = tok_path.resolve()
    token = _token(tok_path) if tok_path is not None else ""
    root_dir = Path(root).expanduser().resolve() if root is not None else project_root()

    config_file = lab_dir / "server-config.json"
    _write_private_json(config_file, {
        "IdentityProvider": {"token": token},  # "" only with a password (checked above)
        # the password is the file's; a login page must not replace it or write ~/.jupyter
        "PasswordIdentityProvider": {"hashed_password": hashed, "password_required": bool(hashed),
                                     "allow_password_change": False},
        # /pitools/box/reports/: outputs/ behind the login, charts included (pitools/box/lab_reports.py)
        "ServerApp": {"jpserver_extensions": {"pitools.box.lab_reports": True}},
    })
    jupyter_config = lab_dir / "jupyter-config"
    _write_private_json(jupyter_config / "labconfig" / "default_setting_overrides.json", LAB_SETTING_DEFAULTS)
    ensure_kernel()

    loopback = address.is_loopback
    if open_browser is None:
        open_browser = loopback and not os.environ.get("INVOCATION_ID")  # systemd sets INVOCATION_ID
    argv = [sys.executable, "-m", "jupyterlab", f"--config={config_file}",
            f"--ServerApp.ip={address}", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",  # a moved port would make the printed URL wrong
            f"--ServerApp.root_dir={root_dir}",
            f"--MappingKernelManager.cull_idle_timeout={cull}",
            f"--MappingKernelManager.cull_interval={max(1, min(CULL_INTERVAL_S, cull or CULL_INTERVAL_S))}",
            "--MappingKernelManager.cull_connected=False"]
    # Kernels keep jupyter's default transport, TCP on loopback. (IPC with one fixed socket
    # name, as the nightly run uses for its one kernel at a time, collides when the lab
    # starts two kernels at once.)
    if not loopback:
        argv.append("--ServerApp.allow_remote_access=True")
    if not open_browser or not loopback:
        argv.append("--no-browser")
    if cert is not None and key is not None:
        argv += [f"--ServerApp.certfile={cert}", f"--ServerApp.keyfile={key}"]
    if allow_root and os.geteuid() == 0:
        argv.append("--allow-root")

    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE")}
    env.setdefault("PITOOLS_HOME", str(root_dir))  # kernels find params/ whatever folder they start in
    # first on the path: these defaults win over other layers' defaults (a user's setting wins over all)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(jupyter_config), *filter(None, [env.get("JUPYTER_CONFIG_PATH")])])
    env.setdefault("NUMBA_CACHE_DIR", str(cache_dir()))  # the nightly run's cache: kernels compiled once

    scheme = "https" if cert is not None else "http"
    if address.is_unspecified:
        hosts = lan_addresses(socket.AF_INET) if address.version == 4 else lan_addresses(socket.AF_INET6)
        hosts = hosts or [socket.gethostname()]
    else:
        hosts = [str(address)]
    urls = tuple(_url(scheme, h, port, token) for h in hosts)
    return LabConfig(argv=argv, env=env, url=urls[0], token_file=tok_path, root_dir=root_dir,
                     config_file=config_file, password_file=pw_path, urls=urls)


def run_lab(config: LabConfig, *, show_token: bool | None = None, replace_process: bool = True) -> int:
    """Print where to connect, then become the server (``os.execve``).

    Parameters
    ----------
    config : LabConfig
    show_token : bool, optional
        Print URLs with the token. Default: only to a terminal — under systemd stdout goes
        to the journal, which more people may read than the 0600 token file.
    replace_process : bool
        False: run the server as a child and return its exit status.

    Example
    -------
    >>> run_lab(lab_config(load_profile("demo")))  # doctest: +SKIP
    """
    if show_token is None:
        show_token = sys.stdout.isatty()
    print(f"pitools lab: JupyterLab on {', '.join(u.split('/lab')[0] for u in config.urls)} "
          f"(root {config.root_dir})")
    for url in config.urls:
        print(f"  open {url if show_token or '?token=' not in url else url.split('?')[0] + '?token=<token>'}")
    print(f"  nightly reports: {config.urls[0].split('/lab')[0]}/pitools/box/reports/")
    if config.token_file is not None:
        print(f"  token file: {config.token_file}  (`cat` it; delete it for a new token)")
    if config.password_file is not None:
        print(f"  password login (hash in {config.password_file})")
    sys.stdout.flush()  # exec replaces the process: unflushed output would be lost
    if replace_process:
        # exec, not a child: systemd (Type=exec) then signals and tracks the server itself
        os.execve(config.argv[0], config.argv, config.env)
        return 0  # not reached, unless execve is replaced (tests)

    return subprocess.run(config.argv, env=config.env).returncode
