"""The project's own promises: layout, two-command setup, one environment in two formats."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pyproject_deps() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def conda_deps() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    out = {}
    for item in env["dependencies"]:
        if isinstance(item, dict):  # the pip: section installs the project itself
            assert item == {"pip": ["-e ."]}
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", item)
        name, spec = m.group(1), m.group(2).replace(" ", "")
        if name in ("python", "pip"):
            continue
        out[canonicalize_name(name)] = spec
    return out


def test_layout_of_the_product_card():
    for folder in ("notebooks", "pitools", "params", "scheduled", "outputs", "tests", "benchmarks", ".ci"):
        assert (ROOT / folder).is_dir(), folder
    for file in ("environment.yml", "pyproject.toml", "Makefile", "README.md", ".ci/run", "requirements.lock"):
        assert (ROOT / file).is_file(), file


def test_environment_yml_and_pyproject_name_the_same_packages_and_ranges():
    py, conda = pyproject_deps(), conda_deps()
    assert set(py) == set(conda), f"only in pyproject: {set(py) - set(conda)}; only in environment.yml: {set(conda) - set(py)}"
    for name, req in py.items():
        assert set(str(req.specifier).split(",")) == set(conda[name].split(",")), name


def test_product_card_packages_are_dependencies():
    card = {"jupyterlab", "papermill", "pandas", "pyarrow", "numpy", "numba", "plotly", "nevergrad", "ipywidgets"}
    assert card <= set(pyproject_deps())


def test_lock_pins_every_dependency_inside_its_range():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split(";")[0].strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock.setdefault(canonicalize_name(name), []).append(Version(version))
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [Requirement(r) for r in data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]]
    for req in reqs:
        pins = lock.get(canonicalize_name(req.name))
        assert pins, f"{req.name} is not pinned in requirements.lock"
        for v in pins:
            assert req.specifier.contains(v), f"{req.name}=={v} is outside {req.specifier}"


def test_ci_runs_exactly_make_test_and_the_readme_shows_the_two_commands():
    ci = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ci[-1].strip() == "make test"
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\s*(make \w+)\s*$", quick, flags=re.M)
    assert commands == ["make run", "make test"]


def test_makefile_installs_with_the_lock_as_constraints():
    mk = (ROOT / "Makefile").read_text()
    assert "--constraint $(LOCK)" in mk and "LOCK    := requirements.lock" in mk
    assert re.search(r"^run:", mk, re.M) and re.search(r"^test:", mk, re.M)


def test_generated_paths_are_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    for path in ("/.venv/", "/data/", "/outputs/*"):
        assert path in ignored


def test_no_source_file_is_ignored_by_git():
    """A too-wide ignore rule (`data/` once hid pitools/data/) must never hide code."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return
    sources = [str(p.relative_to(ROOT)) for p in (ROOT / "pitools").rglob("*.py")]
    sources += [str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*.py")]
    r = subprocess.run(["git", "check-ignore", "--no-index", *sources], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "", f"ignored by .gitignore: {r.stdout.split()}"
