"""The portal form (`deploy/createUiDefinition.json`): schema-valid, wired to the template's parameters,
and showing no raw expression to the user.

The form's output expressions are evaluated here by a small interpreter of the CreateUiDefinition
functions they use (`basics`, `steps`, `location`, `split`, `last`, `if`, `equals`, indexing and
property access), so the derivations (workspace name and resource group from the picked id, the
region dropdown to the endpoint URL) are checked with values, not only by shape.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploy import build_template as bt
from deploy import ui_definition
from tests.arm_lint import SCHEMA_PREFIX, Json, is_expression, registry

UI_SCHEMA = f"{SCHEMA_PREFIX}0.1.2-preview/CreateUIDefinition.MultiVm.json#"
WORKSPACE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-sentinel/providers/"
    "Microsoft.OperationalInsights/workspaces/law-soc"
)

# Microsoft.Solutions.ResourceSelector is documented ("Microsoft.Solutions.ResourceSelector UI
# element") but absent from the vendored 0.1.2-preview schema, which predates it. It is validated
# against its documented properties instead, and removed before the rest is checked.
RESOURCE_SELECTOR_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "type": {"enum": ["Microsoft.Solutions.ResourceSelector"]},
        "label": {"type": "string", "minLength": 1},
        "toolTip": {"type": "string"},
        "resourceType": {"type": "string", "pattern": r"^[A-Za-z]+\.[A-Za-z]+(/[A-Za-z]+)+$"},
        "options": {
            "type": "object",
            "properties": {
                "filter": {
                    "type": "object",
                    "properties": {
                        "subscription": {"enum": ["all", "onBasics"]},
                        "location": {"enum": ["all", "onBasics"]},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        "constraints": {
            "type": "object",
            "properties": {"required": {"type": ["boolean", "string"]}},
            "additionalProperties": False,
        },
        "visible": {"type": ["boolean", "string"]},
    },
    "required": ["name", "type", "label", "resourceType"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def ui() -> Json:
    data: Json = json.loads(bt.UI_DEFINITION_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module", params=["committed", "stamped"])
def template(request: pytest.FixtureRequest) -> Json:
    """The form is published with the stamped release template; it must also fit the committed one."""
    if request.param == "committed":
        data: Json = json.loads(bt.TEMPLATE_PATH.read_text(encoding="utf-8"))
        return data
    pin = bt.ReleasePin("example/nordpass-sentinel-connector", f"v{bt.CONNECTOR_VERSION}", "cd" * 32)
    return bt.build_template(bt.SentinelContent.load(), pin)


def elements(ui: Json) -> Iterator[tuple[str, Json]]:
    """(step name, element) for every element, sections included; the basics step is 'basics'."""

    def walk(step: str, items: list[Json]) -> Iterator[tuple[str, Json]]:
        for element in items:
            yield step, element
            yield from walk(step, element.get("elements", []))

    yield from walk("basics", ui["parameters"].get("basics", []))
    for step in ui["parameters"].get("steps", []):
        yield from walk(step["name"], step["elements"])


# --- schema -------------------------------------------------------------------------------------


def schema_errors(ui: Json) -> list[str]:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    document = copy.deepcopy(ui)
    problems: list[str] = []
    selector = Draft4Validator(RESOURCE_SELECTOR_SCHEMA)

    def strip(items: list[Json], where: str) -> list[Json]:
        kept = []
        for element in items:
            if element.get("type") == "Microsoft.Solutions.ResourceSelector":
                problems.extend(
                    f"{where}/{element.get('name')}: {e.message}" for e in selector.iter_errors(element)
                )
            else:
                kept.append(element)
        return kept

    params = document["parameters"]
    params["basics"] = strip(params.get("basics", []), "basics")
    for step in params.get("steps", []):
        step["elements"] = strip(step["elements"], step["name"])
    validator = Draft4Validator({"$ref": UI_SCHEMA}, registry=registry())
    problems += [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(document)
    ]
    return problems


def test_validates_against_the_create_ui_definition_schema(ui: Json) -> None:
    assert ui["$schema"] == UI_SCHEMA
    assert ui["handler"] == "Microsoft.Azure.CreateUIDef" and ui["version"] == "0.1.2-preview"
    assert schema_errors(ui) == []


def _unknown_property(ui: Json) -> None:
    next(e for _, e in elements(ui) if e["type"] == "Microsoft.Common.PasswordBox")["colour"] = "red"


def _selector_unknown_property(ui: Json) -> None:
    next(e for _, e in elements(ui) if e["type"] == "Microsoft.Solutions.ResourceSelector")["multiselect"] = (
        True
    )


def _selector_bad_filter(ui: Json) -> None:
    selector = next(e for _, e in elements(ui) if e["type"] == "Microsoft.Solutions.ResourceSelector")
    selector["options"]["filter"]["subscription"] = "mine"


def _unknown_element_type(ui: Json) -> None:
    ui["parameters"]["steps"][0]["elements"].append(
        {"name": "x", "type": "Microsoft.Common.Slider", "label": "x"}
    )


@pytest.mark.parametrize(
    "breaker", [_unknown_property, _selector_unknown_property, _selector_bad_filter, _unknown_element_type]
)
def test_schema_check_is_narrow_enough_to_fail(ui: Json, breaker: Callable[[Json], None]) -> None:
    broken = copy.deepcopy(ui)
    breaker(broken)
    assert schema_errors(broken)


# --- wiring to the template -----------------------------------------------------------------------


def wiring_problems(ui: Json, template: Json) -> list[str]:
    params = template["parameters"]
    outputs = ui["parameters"]["outputs"]
    problems = [f"output {name} is not a template parameter" for name in outputs if name not in params]
    required = {name for name, spec in params.items() if "defaultValue" not in spec}
    problems += [
        f"required parameter {name} is not set by the form" for name in sorted(required - set(outputs))
    ]
    names = {(step, element["name"]) for step, element in elements(ui)}
    for name, expression in outputs.items():
        if not is_expression(expression):
            problems.append(f"output {name} is a literal, not an expression")
            continue
        for step, element in re.findall(r"steps\('(\w+)'\)\.(\w+)", expression):
            if (step, element) not in names:
                problems.append(f"output {name} reads steps('{step}').{element}, which does not exist")
        for element in re.findall(r"basics\('(\w+)'\)", expression):
            if ("basics", element) not in names:
                problems.append(f"output {name} reads basics('{element}'), which does not exist")
    return problems


def test_outputs_are_template_parameters_and_cover_the_required_ones(ui: Json, template: Json) -> None:
    assert wiring_problems(ui, template) == []
    assert set(ui["parameters"]["outputs"]) == {
        "workspaceName",
        "workspaceResourceGroup",
        "location",
        "nordPassEndpointUrl",
        "nordPassToken",
        "deploySentinelContent",
    }


def test_wiring_check_can_fail(ui: Json, template: Json) -> None:
    broken = copy.deepcopy(ui)
    broken["parameters"]["outputs"]["workspace"] = broken["parameters"]["outputs"].pop("workspaceName")
    problems = wiring_problems(broken, template)
    assert any("workspace is not a template parameter" in p for p in problems)
    assert any("required parameter workspaceName" in p for p in problems)
    broken = copy.deepcopy(ui)
    broken["parameters"]["outputs"]["nordPassToken"] = "[steps('nordpass').apiToken]"
    assert any("does not exist" in p for p in wiring_problems(broken, template))


def raw_expression_defaults(ui: Json) -> list[str]:
    return [
        f"{step}/{element['name']}: {element['defaultValue']!r}"
        for step, element in elements(ui)
        if isinstance(element.get("defaultValue"), str) and element["defaultValue"].lstrip().startswith("[")
    ]


def test_no_raw_expression_is_shown_as_a_default(ui: Json) -> None:
    """With a form the portal shows only the form's elements; template parameters it does not set
    (namePrefix, nameSuffix) keep their template defaults, which ARM evaluates."""
    assert raw_expression_defaults(ui) == []


def test_raw_default_check_can_fail(ui: Json) -> None:
    broken = copy.deepcopy(ui)
    region = next(e for _, e in elements(broken) if e["name"] == "customEndpointUrl")
    region["defaultValue"] = "[parameters('nordPassEndpointUrl')]"
    assert raw_expression_defaults(broken)


def test_the_token_is_a_password_box_feeding_a_secure_parameter(ui: Json, template: Json) -> None:
    token = next(e for _, e in elements(ui) if e["name"] == "token")
    assert token["type"] == "Microsoft.Common.PasswordBox"
    assert token["constraints"]["required"] is True
    assert ui["parameters"]["outputs"]["nordPassToken"] == "[steps('nordpass').token]"
    assert template["parameters"]["nordPassToken"]["type"] == "securestring"


def test_the_workspace_is_picked_from_a_list(ui: Json) -> None:
    (selector,) = [e for _, e in elements(ui) if e["type"] == "Microsoft.Solutions.ResourceSelector"]
    assert selector["resourceType"] == "Microsoft.OperationalInsights/workspaces"
    # The template requires the workspace in the deployment's subscription.
    assert selector["options"]["filter"]["subscription"] == "onBasics"
    assert selector["options"]["filter"]["location"] == "all"
    assert not [
        e for _, e in elements(ui) if e["type"] == "Microsoft.Common.TextBox" and "orkspace" in e["name"]
    ]


# --- the outputs, evaluated ---------------------------------------------------------------------


class Evaluator:
    """Just enough of the CreateUiDefinition expression language for the form's outputs."""

    _TOKEN = re.compile(
        r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>[().,\[\]]))"
    )

    def __init__(self, basics: Json, steps: Json, location: str) -> None:
        self.functions: dict[str, Callable[..., Any]] = {
            "basics": lambda name: basics[name],
            "steps": lambda name: steps[name],
            "location": lambda: location,
            "split": lambda text, sep: text.split(sep),
            "last": lambda seq: seq[-1],
            "if": lambda cond, yes, no: yes if cond else no,
            "equals": lambda a, b: a == b,
        }

    def __call__(self, expression: str) -> Any:
        assert is_expression(expression), expression
        self.tokens = [
            (m.lastgroup, m.group(m.lastgroup or "")) for m in self._TOKEN.finditer(expression[1:-1])
        ]
        self.position = 0
        value = self.value()
        assert self.position == len(self.tokens), f"trailing input in {expression}"
        return value

    def take(self, expected: str | None = None) -> tuple[str | None, str]:
        kind, text = self.tokens[self.position]
        assert expected is None or text == expected, (expected, text)
        self.position += 1
        return kind, text

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            result: Any = text[1:-1].replace("''", "'")
        elif kind == "number":
            result = int(text)
        else:
            assert kind == "name", text
            self.take("(")
            args = []
            while self.peek() != ")":
                args.append(self.value())
                if self.peek() == ",":
                    self.take(",")
            self.take(")")
            result = self.functions[text](*args)
        while self.peek() in {".", "["}:
            if self.take()[1] == ".":
                result = result[self.take()[1]]
            else:
                result = result[self.value()]
                self.take("]")
        return result


def _evaluate(ui: Json, region: str, custom: str | None, content: bool) -> dict[str, Any]:
    evaluate = Evaluator(
        basics={"workspace": {"id": WORKSPACE_ID, "name": "law-soc", "location": "westeurope"}},
        steps={
            "nordpass": {"region": region, "customEndpointUrl": custom, "token": "example-token"},
            "sentinel": {"deployContent": content},
        },
        location="northeurope",
    )
    return {name: evaluate(expression) for name, expression in ui["parameters"]["outputs"].items()}


def test_outputs_derive_the_workspace_and_map_the_region(ui: Json) -> None:
    eu = _evaluate(ui, bt.EU_ENDPOINT, None, True)
    assert eu == {
        "workspaceName": "law-soc",
        "workspaceResourceGroup": "rg-sentinel",
        "location": "northeurope",
        "nordPassEndpointUrl": bt.EU_ENDPOINT,
        "nordPassToken": "example-token",
        "deploySentinelContent": True,
    }
    assert _evaluate(ui, bt.US_ENDPOINT, None, False)["nordPassEndpointUrl"] == bt.US_ENDPOINT
    assert _evaluate(ui, bt.US_ENDPOINT, None, False)["deploySentinelContent"] is False
    custom = "https://nordpass.example/activities/query"
    assert _evaluate(ui, ui_definition.CUSTOM_REGION, custom, True)["nordPassEndpointUrl"] == custom


def test_the_region_dropdown_offers_the_template_endpoints(ui: Json, template: Json) -> None:
    region = next(e for _, e in elements(ui) if e["name"] == "region")
    values = [v["value"] for v in region["constraints"]["allowedValues"]]
    known = template["parameters"]["nordPassEndpointUrl"]["metadata"]["knownValues"]
    assert values == [known["EU"], known["US"], ui_definition.CUSTOM_REGION]
    labels = [v["label"] for v in region["constraints"]["allowedValues"]]
    assert region["defaultValue"] in labels  # the portal takes the label
    custom = next(e for _, e in elements(ui) if e["name"] == "customEndpointUrl")
    assert custom["visible"] == f"[equals(steps('nordpass').region, '{ui_definition.CUSTOM_REGION}')]"
    pattern = re.compile(custom["constraints"]["regex"])
    assert pattern.match(bt.EU_ENDPOINT) and not pattern.match("http://insecure.example/x")
    assert not pattern.match("not a url")


def test_the_content_switch_defaults_to_on_like_the_template(ui: Json, template: Json) -> None:
    switch = next(e for _, e in elements(ui) if e["name"] == "deployContent")
    by_label = {v["label"]: v["value"] for v in switch["constraints"]["allowedValues"]}
    assert by_label[switch["defaultValue"]] is template["parameters"]["deploySentinelContent"]["defaultValue"]
    assert set(by_label.values()) == {True, False}


def _words(text: str) -> str:
    return " ".join(text.split()).lower()


def test_every_text_about_the_content_names_each_kind_it_deploys(ui: Json, template: Json) -> None:
    """The content switch deploys what `CONTENT_BUILDERS` builds; the switch's description, the
    content-only template, the portal form, the release notes and the docs say so, kind by kind."""
    from deploy import release

    kinds = list(bt.CONTENT_BUILDERS)
    assert len(kinds) >= 5
    # Each kind is a true claim: its builder makes resources from the shipped content.
    content = bt.SentinelContent.load()
    for kind, build in bt.CONTENT_BUILDERS.items():
        assert build(content, bt.Workspace()), kind

    standalone = json.loads(bt.CONTENT_TEMPLATE_PATH.read_text(encoding="utf-8"))
    (note,) = [e for _, e in elements(ui) if e["name"] == "contentNote"]
    deploy_md = (bt.REPO_ROOT / "deploy" / "DEPLOY.md").read_text(encoding="utf-8")
    readme = (bt.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    deploy_section = readme.split("<!-- section:deploy -->")[1].split("<!-- /section:deploy -->")[0]
    notes = release.release_notes("example/repo", "v1.2.3", [release.Asset(release.TEMPLATE, 1, "0" * 64)])
    texts = {
        "template switch": template["parameters"]["deploySentinelContent"]["metadata"]["description"],
        "content-only template": standalone["metadata"]["description"],
        "portal form": note["options"]["text"],
        "DEPLOY.md form row": next(
            line for line in deploy_md.splitlines() if line.startswith("| Sentinel content:")
        ),
        "DEPLOY.md parameter row": next(
            line for line in deploy_md.splitlines() if line.startswith("| `deploySentinelContent` |")
        ),
        "README deploy section": deploy_section,
        "release notes": notes,
    }
    missing = {where: [k for k in kinds if k.lower() not in _words(text)] for where, text in texts.items()}
    assert not {where: gaps for where, gaps in missing.items() if gaps}
    # The form's step no longer says "rules and workbook" only.
    (step,) = [s for s in ui["parameters"]["steps"] if s["name"] == "sentinel"]
    assert "hunting" in step["subLabel"]["preValidation"].lower()
