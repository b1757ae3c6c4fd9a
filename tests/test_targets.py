"""Target profiles: the built-in YAML files, loading by name or path, and validation errors."""
from __future__ import annotations

import textwrap

import pytest

from snnet_export.errors import SNNetExportError, TargetError
from snnet_export.engine_build.targets import TargetProfile, list_targets, load_target, target_dirs, target_from_dict


def _yaml(tmp_path, text: str, name: str = "custom.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_targets_load():
    names = [t.name for t in list_targets()]
    assert {"dgpu", "jetson-orin", "jetson-thor"} <= set(names)
    orin, thor, dgpu = load_target("jetson-orin"), load_target("jetson-thor"), load_target("dgpu")
    assert (orin.platform, orin.jetpack, orin.min_tensorrt, orin.max_opset) == ("jetson", "6.1+", "10.3", 20)
    assert (thor.platform, thor.jetpack, thor.min_tensorrt) == ("jetson", "7.x", "10.13")
    assert dgpu.platform == "dgpu" and dgpu.dla_core is None
    for t in (orin, thor, dgpu):
        assert t.batch_min <= t.batch_opt <= t.batch_max
        assert 0 <= t.optimization_level <= 5


def test_builtin_dir_is_found_relative_to_the_package():
    dirs = target_dirs()
    assert dirs and (dirs[0] / "dgpu.yaml").is_file()


def test_load_by_path_and_name_defaults_to_stem(tmp_path):
    path = _yaml(tmp_path, """
        description: my board
        batch: {min: 2, opt: 2, max: 2}
        workspace_mib: null
        hardware_compatibility: ampere+
        version_compatible: true
    """, "my-gpu.yaml")
    t = load_target(path)
    assert t.name == "my-gpu" and t.description == "my board"
    assert (t.batch_min, t.batch_opt, t.batch_max, t.workspace_mib) == (2, 2, 2, None)
    assert t.hardware_compatibility == "ampere+" and t.version_compatible
    assert load_target(str(path)) == t
    assert load_target(t) is t


def test_cwd_engines_targets_are_found(tmp_path, monkeypatch):
    (tmp_path / "engines" / "targets").mkdir(parents=True)
    _yaml(tmp_path / "engines" / "targets", "name: lab-gpu\n", "lab-gpu.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_target("lab-gpu").name == "lab-gpu"


def test_to_dict_round_trips():
    for t in list_targets():
        back = target_from_dict(t.to_dict(), source=t.source)
        assert back == t


@pytest.mark.parametrize("text, fragment", [
    ("name: x\nbatchsize: 4\n", "unknown key(s) ['batchsize']"),
    ("name: x\nbatch: {min: 1, mid: 2}\n", "batch: unknown key(s) ['mid']"),
    ("name: x\ndla: {core: 0, fallback: true}\nplatform: jetson\n", "dla: unknown key(s) ['fallback']"),
    ("name: x\nbatch: {min: 8, opt: 4, max: 16}\n", "min <= opt <= max"),
    ("name: x\nbatch: {min: 1, opt: 32, max: 16}\n", "min=1 opt=32 max=16"),
    ("name: x\nbatch: {min: 0}\n", "batch.min: must be an integer >= 1"),
    ("name: x\nworkspace_mib: -512\n", "workspace_mib (MiB): must be an integer >= 1, got -512"),
    ("name: x\noptimization_level: 6\n", "optimization_level: must be an integer 0..5"),
    ("name: x\noptimization_level: true\n", "optimization_level: must be an integer"),
    ("name: x\ndla: {core: 0}\n", "DLA cores exist only on Jetson"),
    ("name: x\nplatform: jetson\ndla: {core: 0}\n", "DLA runs static shapes only"),
    ("name: x\nplatform: jetson\nbatch: {min: 1, opt: 1, max: 1}\ndla: {core: 0}\n"
     "hardware_compatibility: ampere+\n", "cannot be combined with DLA"),
    ("name: x\nplatform: jetson\nbatch: {min: 1, opt: 1, max: 1}\ndla: {core: -1}\n", "dla.core: must be"),
    ("name: x\nhardware_compatibility: turing+\n", "hardware_compatibility: must be one of ['none', 'ampere+'"),
    ("name: x\nplatform: jetson-nano\n", "platform: must be one of ['dgpu', 'jetson']"),
    ("name: x\nmin_tensorrt: ten\n", "min_tensorrt: must be a version like '10.3'"),
    ("name: x\nversion_compatible: yes-please\n", "version_compatible: must be true or false"),
    ("name: X Y\n", "name: must be lower-case"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_invalid_profiles_are_refused(tmp_path, text, fragment):
    path = _yaml(tmp_path, text)
    with pytest.raises(TargetError) as err:
        load_target(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_valid_dla_profile(tmp_path):
    t = load_target(_yaml(tmp_path, """
        name: orin-dla
        platform: jetson
        batch: {min: 4, opt: 4, max: 4}
        dla: {core: 1, gpu_fallback: false}
    """))
    assert t.uses_dla and t.dla_core == 1 and not t.gpu_fallback


def test_unknown_name_lists_builtins():
    with pytest.raises(TargetError, match="unknown target 'jetson-nano'.*dgpu, jetson-orin, jetson-thor"):
        load_target("jetson-nano")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        load_target(tmp_path / "nope.yaml")
    with pytest.raises(TargetError, match=r"not valid YAML \(line"):
        load_target(_yaml(tmp_path, "name: x\nbatch: {min: 1\n"))


def test_target_error_is_a_value_error():
    with pytest.raises(ValueError):
        target_from_dict({"name": "x", "batch": {"min": 3, "opt": 2}})
    assert issubclass(TargetError, SNNetExportError)
    assert isinstance(TargetProfile(name="x"), TargetProfile)
