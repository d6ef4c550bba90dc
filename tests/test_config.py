"""Profiles: every shipped profile loads; bad keys and values are named in the error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pitools.config import FIELDS, Profile, load_profile, profile_names
from pitools.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write_profiles(tmp_path: Path, profiles: dict) -> Path:
    (tmp_path / "params").mkdir(exist_ok=True)
    path = tmp_path / "params" / "profiles.yaml"
    path.write_text(yaml.safe_dump({"profiles": profiles}))
    return path


def base_values() -> dict:
    return {"data_dir": "data", "max_symbols": 10, "max_years": 2, "n_workers": 2, "population_size": 8,
            "generations": 2, "sleep_between_evals": 0.0, "memory_budget_mb": 256, "seed": 1,
            "demo_symbols": 10, "demo_years": 2}


def test_shipped_profiles_load_with_the_knobs_of_the_old_system():
    names = profile_names()
    assert {"demo", "ci", "pi_safe", "pi_full"} <= set(names)
    for name in names:
        p = load_profile(name)
        assert isinstance(p, Profile) and p.name == name
        for knob in ("max_symbols", "max_years", "n_workers", "population_size", "generations",
                     "sleep_between_evals", "memory_budget_mb"):
            assert getattr(p, knob) is not None
        assert p.data_dir.is_absolute()
    full = load_profile("pi_full")
    assert full.max_symbols == 2556 and full.max_years == 20
    # pi_full extends pi_safe: keys it does not set come from pi_safe
    assert full.seed == load_profile("pi_safe").seed


def test_profile_is_frozen():
    p = load_profile("ci")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_symbols = 5  # type: ignore[misc]


def test_overrides_are_validated_like_the_file():
    p = load_profile("ci", overrides=["max_symbols=7", "sleep_between_evals=0.25", "n_workers=3"])
    assert (p.max_symbols, p.sleep_between_evals, p.n_workers) == (7, 0.25, 3)
    with pytest.raises(ConfigError) as err:
        load_profile("ci", overrides=["max_symbols=-3"])
    msg = str(err.value)
    assert "`max_symbols`" in msg and "-3" in msg and "from 1 to" in msg
    with pytest.raises(ConfigError, match="'max_symbol'.*Did you mean.*'max_symbols'"):
        load_profile("ci", overrides=["max_symbol=5"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_profile("ci", overrides=["max_symbols"])
    with pytest.raises(ConfigError, match="n_workers.*'two'.*integer"):
        load_profile("ci", overrides=["n_workers=two"])
    with pytest.raises(ConfigError, match="`seed`.*1.5.*integer"):
        load_profile("ci", overrides={"seed": 1.5})


@pytest.mark.parametrize("key,value,fragment", [
    ("max_years", 0, "from 1 to 100"),
    ("n_workers", "4", None),  # a quoted number in YAML is still accepted as that number
    ("memory_budget_mb", True, "integer"),
    ("sleep_between_evals", -1, "from 0 to 60"),
    ("data_dir", "", "non-empty string"),
    ("population_size", 1, "from 2 to"),
])
def test_bad_values_in_the_file_name_profile_key_and_value(tmp_path, key, value, fragment):
    values = base_values()
    values[key] = value
    path = write_profiles(tmp_path, {"mine": values})
    if fragment is None:
        assert getattr(load_profile("mine", path=path), key) == int(value)
        return
    with pytest.raises(ConfigError) as err:
        load_profile("mine", path=path)
    msg = str(err.value)
    assert "'mine'" in msg and f"`{key}`" in msg and repr(value) in msg and fragment in msg


def test_unknown_key_missing_key_unknown_profile_and_loops(tmp_path):
    values = base_values()
    values["max_symbolz"] = 3
    path = write_profiles(tmp_path, {"a": values})
    with pytest.raises(ConfigError, match="unknown key 'max_symbolz'.*Did you mean.*'max_symbols'"):
        load_profile("a", path=path)

    values = base_values()
    del values["seed"]
    path = write_profiles(tmp_path, {"a": values})
    with pytest.raises(ConfigError, match="lacks `seed`"):
        load_profile("a", path=path)

    path = write_profiles(tmp_path, {"a": {"extends": "b"}, "b": {"extends": "a"}})
    with pytest.raises(ConfigError, match="loops"):
        load_profile("a", path=path)

    with pytest.raises(ConfigError, match="unknown profile 'pi_sfe'.*'pi_safe'"):
        load_profile("pi_sfe")


def test_relative_data_dir_is_relative_to_the_checkout(tmp_path):
    path = write_profiles(tmp_path, {"a": base_values()})
    assert load_profile("a", path=path).data_dir == tmp_path / "data"
    assert load_profile("a", path=path).store_dir == tmp_path / "data" / "store"


def test_invalid_yaml_is_a_config_error(tmp_path):
    (tmp_path / "params").mkdir()
    bad = tmp_path / "params" / "profiles.yaml"
    bad.write_text("profiles: {demo: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile("demo", path=bad)


def test_every_field_has_a_range_or_a_type_and_help():
    for name, spec in FIELDS.items():
        assert spec.help, name
        if spec.kind in (int, float):
            assert spec.low is not None and spec.high is not None, name


def test_replace_resolves_a_relative_data_dir_like_the_file():
    p = load_profile("ci")
    q = p.replace(data_dir="data2", max_symbols=3)
    assert q.data_dir == p.data_dir.parent / "data2" or q.data_dir.name == "data2" and q.data_dir.is_absolute()
    assert q.data_dir != Path("/data2") and q.max_symbols == 3
    with pytest.raises(ConfigError, match="`max_symbols`"):
        p.replace(max_symbols=0)
