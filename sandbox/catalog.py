"""The known NordPass event catalog (docs/event-catalog.md) as data: 145 (event_type, action) pairs.

Grouped like the official workbook: AREA "admin" (Admin Panel), "vault" and "logins". Several
actions appear under more than one type, so everything keys on the pair, never on the action.
"""

from __future__ import annotations

from typing import Final

ADMIN: Final[dict[str, tuple[str, ...]]] = {
    "access": (
        "item_reassignment_transferred",
        "recovery_request_approved",
        "recovery_request_created",
        "recovery_request_declined",
        "user_email_updated",
        "user_status_updated",
        "extend_trial_organization",
    ),
    "billing": ("payment_method_change_started",),
    "checkout": (
        "change_credit_card_failure",
        "change_credit_card_success",
        "renewal_success",
        "trial_to_subscription",
        "upgrade",
        "upsell",
    ),
    "domain": (
        "domain_added",
        "domain_deleted",
        "domain_verified",
        "domain_reverification_failed",
        "domain_reverified",
        "domain_verification_failed",
        "domain_verification_restarted",
        "domain_added_auto",
    ),
    "global_settings": (
        "global_settings_updated",
        "mfa_reset",
        "password_policy_toggled",
        "password_policy_updated",
        "global_settings_customization_deleted",
    ),
    "totp": ("global_settings_updated", "2fa_reset_in_ecp"),
    "integrations": (
        "activities_token_created",
        "activities_token_revoked",
        "vanta_integration_disabled",
        "vanta_integration_enabled",
    ),
    "invites": (
        "invite_converted_to_provisioned",
        "invite_link_generated",
        "user_approved",
        "user_converted_to_provisioned",
        "user_invite_accepted",
        "user_invite_declined",
        "user_invite_removed",
        "user_invite_resent",
        "user_invited",
        "whitelisted_domains_updated",
        "invite_status_updated",
    ),
    "item_delete": ("item_reassignment_deleted",),
    "oauth_credentials": (
        "oauth_credentials_created",
        "oauth_credentials_deleted",
        "oauth_credentials_updated",
    ),
    "oauth_domain": ("oauth_domain_created", "oauth_domain_deleted", "oauth_domain_verified"),
    "oauth_token_management": ("all_tokens_deleted", "token_deleted"),
    "roles": ("user_role_updated",),
    "role_settings": (
        "password_policy_toggled",
        "password_policy_updated",
        "role_settings_cleared",
        "role_settings_updated",
        "role_settings_deleted",
    ),
    "user_settings": ("user_settings_cleared", "user_settings_updated"),
    "scim_credentials": (
        "scim_credentials_created",
        "scim_credentials_deleted",
        "scim_credentials_recreated",
    ),
    "group_provisioning": ("group_provisioning_disabled", "group_provisioning_enabled"),
    "groups": (
        "group_created",
        "group_updated",
        "group_users_added",
        "group_users_removed",
        "groups_deleted",
    ),
    "sharing_hub": ("item_viewed", "viewed", "item_access_revealed"),
    "consents": ("organization_consent_given", "organization_consent_revoked"),
    "breach": (
        "breach_report_viewed",
        "domain_breached",
        "breach_details_viewed",
        "breach_unresolved",
        "breach_resolved",
        "user_muted",
        "user_unmuted",
    ),
}

VAULT: Final[dict[str, tuple[str, ...]]] = {
    "item_access": (
        "item_viewed",
        "2fa_item_accessed",
        "item_autofilled",
        "item_copied",
        "item_moved_to_shared_folder",
        "item_secret_viewed",
        "items_created",
        "items_imported",
        "items_imported_v2",
        "items_updated",
        "vault_exported",
        "deleted_item_copied",
        "deleted_item_viewed",
        "deleted_item_autofilled",
        "deleted_item_secret_viewed",
    ),
    "item_delete": ("items_deleted",),
    "item_share": (
        "external_items_received",
        "item_acl_changed",
        "item_new_ttl_set",
        "item_owner_changed",
        "item_time_limited_share_expired",
        "items_shared",
        "items_unshared",
        "shared_folder_shared",
        "shared_folder_unshared",
        "item_accepted",
        "item_rejected",
    ),
    "password_health": (
        "item_created_reused",
        "item_created_weak",
        "item_updated_reused",
        "item_updated_weak",
        "items_imported_reused",
        "items_imported_weak",
    ),
    "totp": (
        "2fa_item_accessed",
        "2fa_added_to_item",
        "2fa_device_deleted",
        "2fa_device_enrolled",
        "2fa_item_created",
        "2fa_removed_from_item",
    ),
    "consents": ("user_consent_given", "user_consent_revoked"),
    "breach": ("email_breached",),
    "redeem": ("redeem_granted", "redeem_removed"),
}

LOGINS: Final[dict[str, tuple[str, ...]]] = {
    "lock": ("master_validated", "master_changed", "master_failed"),
    "login": ("user_login_failed", "user_login_successful"),
    "biometric": ("biometric_disabled", "biometric_enabled"),
    "password": (
        "business_account_password_change_failed",
        "business_account_password_change_successful",
        "password_reset_requested",
        "password_reset_successful",
        "business_account_password_reset_successful",
        "business_account_password_reset_requested",
    ),
    "recovery_code": (
        "recovery_copied",
        "recovery_created",
        "recovery_downloaded",
        "recovery_reset",
        "recovery_used",
    ),
}

AREAS: Final[dict[str, dict[str, tuple[str, ...]]]] = {"admin": ADMIN, "vault": VAULT, "logins": LOGINS}


def _flatten() -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (area, event_type, action)
        for area, types in AREAS.items()
        for event_type, actions in types.items()
        for action in actions
    )


# (area, event_type, action) in document order; 145 entries, every pair unique.
ENTRIES: Final[tuple[tuple[str, str, str], ...]] = _flatten()
PAIRS: Final[tuple[tuple[str, str], ...]] = tuple((t, a) for _, t, a in ENTRIES)
PAIR_SET: Final[frozenset[tuple[str, str]]] = frozenset(PAIRS)

# A pair's area. `totp`, `breach`, `consents` and `item_delete` span two areas; the pair decides.
AREA_OF: Final[dict[tuple[str, str], str]] = {(t, a): area for area, t, a in ENTRIES}

EXPECTED_TOTALS: Final[dict[str, int]] = {"admin": 83, "vault": 44, "logins": 18}


def pairs_in(area: str) -> list[tuple[str, str]]:
    return [(t, a) for ar, t, a in ENTRIES if ar == area]
