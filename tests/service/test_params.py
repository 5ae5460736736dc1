"""One source of truth for node parameters: the table, the YAML defaults and the README agree."""
import re

import pytest
import yaml

from fsmde_ros.service.params import (
    NODE_PARAMS,
    PARAMS_BY_NAME,
    markdown_table,
    validate_params,
)
from tests.helpers.ros_env import REPO


def test_config_yaml_holds_exactly_the_table_defaults():
    data = yaml.safe_load((REPO / "config" / "surround_depth.yaml").read_text())
    values = data["surround_depth"]["ros__parameters"]
    assert values == {p.name: p.default for p in NODE_PARAMS}


def test_readme_parameter_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, "README parameter table is stale: paste fsmde_ros.service.params.markdown_table()"
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.M))
    assert set(PARAMS_BY_NAME) <= documented


def test_the_design_parameters_all_exist():
    design = ("rig model backend precision engine_cache_dir compressed slop queue_size camera_timeout allow_partial "
              "min_depth max_depth cloud_stride max_depth_std_ratio publish_cloud publish_depth publish_std "
              "publish_rig_tf qos_reliability").split()
    assert set(design) <= set(PARAMS_BY_NAME)


@pytest.mark.parametrize("values, message", [
    ({"backend": "tflite"}, "backend must be one of auto, tensorrt, onnxruntime, torch"),
    ({"precision": "int4"}, "precision must be one of fp16, fp32, int8"),
    ({"slop": -0.1}, r"slop must be in \[0, 1\]"),
    ({"cloud_stride": 0}, "cloud_stride must be in"),
    ({"cloud_stride": 2.5}, "cloud_stride must be an int in \\[1, 64\\], got 2.5"),
    ({"min_depth": 50.0, "max_depth": 10.0}, "min_depth .* must be below max_depth"),
    ({"unknown_thing": 1}, "unknown parameters"),
])
def test_bad_values_fail_fast_listing_what_is_valid(values, message):
    with pytest.raises(ValueError, match=message):
        validate_params(values)


def test_defaults_validate_and_ints_are_accepted_for_doubles():
    out = validate_params({"slop": 0})
    assert out["slop"] == 0.0 and isinstance(out["slop"], float)


def test_the_node_does_not_compete_with_a_vehicles_tf_by_default():
    """Regression (issue 14, item 8): publish_rig_tf defaulted to on and then competed with a vehicle's own
    TF publisher; on where the package is the only TF source (README: Required TF)."""
    assert PARAMS_BY_NAME["publish_rig_tf"].default is False
    assert "publish_rig_tf:=true" in (REPO / "README.md").read_text()
