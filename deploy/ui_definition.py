"""The portal form behind the Deploy to Azure button (`deploy/createUiDefinition.json`).

Without a form the portal shows the bare template: a free-text workspace name, a free-text endpoint
URL and raw `[resourceGroup().location]` expressions as defaults. The form asks instead for:

- the Sentinel workspace, picked from the workspaces of the chosen subscription; its name and
  resource group are derived from the picked resource id;
- the NordPass region (EU, US, or a custom URL typed only when "custom" is chosen), mapped to the
  Activity API URL;
- the token, in a password box;
- whether to deploy the Sentinel content.

Every output names a template parameter; template parameters the form does not set keep the
template's defaults, which ARM evaluates (the user never sees them as raw text).
"""

from __future__ import annotations

from typing import Any

from deploy.build_template import EU_ENDPOINT, US_ENDPOINT

Json = dict[str, Any]

SCHEMA = "https://schema.management.azure.com/schemas/0.1.2-preview/CreateUIDefinition.MultiVm.json#"
CUSTOM_REGION = "custom"
_WORKSPACE = "basics('workspace').id"


def build_ui_definition() -> Json:
    basics: list[Json] = [
        {
            "name": "workspace",
            "type": "Microsoft.Solutions.ResourceSelector",
            "label": "Microsoft Sentinel workspace",
            "toolTip": "The Log Analytics workspace that has Microsoft Sentinel. It must be in the "
            "subscription chosen above; it can be in another resource group.",
            "resourceType": "Microsoft.OperationalInsights/workspaces",
            "options": {"filter": {"subscription": "onBasics", "location": "all"}},
            "constraints": {"required": True},
        },
        {
            "name": "rolesNote",
            "type": "Microsoft.Common.InfoBox",
            "options": {
                "icon": "Info",
                "text": "You need Owner, or Contributor plus User Access Administrator, on this resource "
                "group and on the workspace's resource group: the deployment creates role assignments "
                "for the connector's managed identity. The region above must offer Azure Functions Flex "
                "Consumption; the data collection rule always follows the workspace's region.",
            },
        },
    ]
    nordpass: list[Json] = [
        {
            "name": "region",
            "type": "Microsoft.Common.DropDown",
            "label": "NordPass region",
            "defaultValue": "Europe (EU)",
            "toolTip": "Where your NordPass organisation's data lives (NordPass Admin Panel).",
            "constraints": {
                "allowedValues": [
                    {"label": "Europe (EU)", "value": EU_ENDPOINT},
                    {"label": "United States (US)", "value": US_ENDPOINT},
                    {"label": "Custom URL", "value": CUSTOM_REGION},
                ],
                "required": True,
            },
        },
        {
            "name": "customEndpointUrl",
            "type": "Microsoft.Common.TextBox",
            "label": "Activity API URL",
            "toolTip": "The full https URL of the NordPass Activity API query endpoint.",
            "constraints": {
                "required": True,
                "regex": r"^https://[^\s/]+(/\S*)?$",
                "validationMessage": "Enter an https URL, for example " + EU_ENDPOINT,
            },
            "visible": f"[equals(steps('nordpass').region, '{CUSTOM_REGION}')]",
        },
        {
            "name": "token",
            "type": "Microsoft.Common.PasswordBox",
            "label": {"password": "Activity API token", "confirmPassword": "Confirm the token"},
            "toolTip": "From the NordPass Admin Panel. It is stored only in the Key Vault that this "
            "deployment creates.",
            "constraints": {"required": True, "regex": r"^\S+$", "validationMessage": "Paste the token."},
            "options": {"hideConfirmation": True},
        },
    ]
    sentinel: list[Json] = [
        {
            "name": "deployContent",
            "type": "Microsoft.Common.OptionsGroup",
            "label": "Deploy the NordPass analytic rules, workbook and connector page",
            "defaultValue": "Yes",
            "toolTip": "Needs Microsoft Sentinel on the workspace. Ingestion never waits for the content: "
            "if it fails, redeploy it alone with sentinel-content.json.",
            "constraints": {
                "allowedValues": [{"label": "Yes", "value": True}, {"label": "No", "value": False}],
                "required": True,
            },
        }
    ]
    region = "steps('nordpass').region"
    return {
        "$schema": SCHEMA,
        "handler": "Microsoft.Azure.CreateUIDef",
        "version": "0.1.2-preview",
        "parameters": {
            "config": {
                "basics": {
                    "description": "The NordPass Activity API -> Microsoft Sentinel connector: every NordPass "
                    "activity event in the table NordPassEventLogs_CL within about a minute."
                }
            },
            "basics": basics,
            "steps": [
                {
                    "name": "nordpass",
                    "label": "NordPass",
                    "subLabel": {"preValidation": "Region and token", "postValidation": "Done"},
                    "bladeTitle": "NordPass Activity API",
                    "elements": nordpass,
                },
                {
                    "name": "sentinel",
                    "label": "Sentinel content",
                    "subLabel": {"preValidation": "Rules and workbook", "postValidation": "Done"},
                    "bladeTitle": "Microsoft Sentinel content",
                    "elements": sentinel,
                },
            ],
            "outputs": {
                "workspaceName": f"[last(split({_WORKSPACE}, '/'))]",
                "workspaceResourceGroup": f"[split({_WORKSPACE}, '/')[4]]",
                "location": "[location()]",
                "nordPassEndpointUrl": (
                    f"[if(equals({region}, '{CUSTOM_REGION}'), steps('nordpass').customEndpointUrl, {region})]"
                ),
                "nordPassToken": "[steps('nordpass').token]",
                "deploySentinelContent": "[steps('sentinel').deployContent]",
            },
        },
    }
