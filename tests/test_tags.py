"""Tag eligibility: pure."""

from dataclasses import dataclass

import pytest

from router.config import parse_config
from router.errors import ClientError, ConfigError, InvalidRequest, NoEligibleEndpoint
from router.tags import FUNCTION_CALLING, eligible, parse_tags, required_tags


@dataclass
class Endpoint:
    name: str
    tags: tuple[str, ...]


GROUP = [
    Endpoint("eu-tools", ("eu", "function-calling")),
    Endpoint("us-vision", ("us", "vision", "function-calling")),
    Endpoint("eu-plain", ("eu",)),
]


def names(endpoints):
    return [e.name for e in endpoints]


def test_no_tags_asked_means_every_endpoint_in_order():
    assert names(eligible("g", GROUP)) == ["eu-tools", "us-vision", "eu-plain"]


def test_an_endpoint_must_carry_every_requested_tag():
    assert names(eligible("g", GROUP, ["eu"])) == ["eu-tools", "eu-plain"]
    assert names(eligible("g", GROUP, ["eu", "function-calling"])) == ["eu-tools"]


def test_tools_require_function_calling():
    assert required_tags(["eu"], has_tools=True) == {"eu", FUNCTION_CALLING}
    assert names(eligible("g", GROUP, ["eu"], has_tools=True)) == ["eu-tools"]


def test_a_tag_no_endpoint_has_is_named():
    with pytest.raises(NoEligibleEndpoint) as info:
        eligible("voice-fast", GROUP, ["eu", "gpu-h100"])
    error = info.value
    assert error.missing_tags == ("gpu-h100",)
    assert "'gpu-h100'" in error.message and "'voice-fast'" in error.message
    assert isinstance(error, ClientError) and error.http_status == 400
    assert error.to_openai()["error"]["code"] == "no_eligible_endpoint"
    assert error.to_openai()["error"]["param"] == "tags"


def test_tags_that_exist_but_never_together_name_what_the_closest_lacks():
    with pytest.raises(NoEligibleEndpoint) as info:
        eligible("g", GROUP, ["eu", "vision"])
    assert info.value.missing_tags in {("vision",), ("eu",)}
    assert "all of the tags 'eu', 'vision'" in info.value.message


def test_tools_without_a_function_calling_endpoint_say_why():
    plain = [Endpoint("a", ("eu",)), Endpoint("b", ())]
    with pytest.raises(NoEligibleEndpoint) as info:
        eligible("g", plain, has_tools=True)
    assert info.value.missing_tags == (FUNCTION_CALLING,)
    assert "carries tools" in info.value.message


def test_parse_tags_from_a_header_or_a_list():
    assert parse_tags(" EU, vision ,,eu") == ("eu", "vision")
    assert parse_tags(["Vision", "eu"]) == ("eu", "vision")
    assert parse_tags(None) == () and parse_tags("") == ()
    with pytest.raises(InvalidRequest) as info:
        parse_tags("eu, bad tag!", param="x-nemo-tags")
    assert info.value.param == "x-nemo-tags" and "bad tag!" in info.value.message
    with pytest.raises(InvalidRequest):
        parse_tags(["eu", 3])


def test_config_rejects_malformed_tags():
    raw = {"model_groups": {"g": {"endpoints": [{"name": "a", "base_url": "http://h/v1", "model": "m", "tags": ["Has Space"]}]}}}
    with pytest.raises(ConfigError, match="model_groups.g.endpoints.0.tags.0"):
        parse_config(raw)
