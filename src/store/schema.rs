//! Diesel table definitions shared by the SQLite and PostgreSQL backends.
//! Only types both backends (and `MultiConnection`) support appear here:
//! text for ids, UTC timestamps and JSON documents.

diesel::table! {
    resources (id) {
        id -> Text,
        tenant -> Text,
        resource_type -> Text,
        external_id -> Nullable<Text>,
        display -> Nullable<Text>,
        data -> Text,
        version -> BigInt,
        created -> Text,
        last_modified -> Text,
    }
}

diesel::table! {
    attr_index (tenant, resource_type, attr, value, resource_id) {
        tenant -> Text,
        resource_type -> Text,
        attr -> Text,
        value -> Text,
        resource_id -> Text,
    }
}

diesel::table! {
    unique_keys (tenant, resource_type, attr, value) {
        tenant -> Text,
        resource_type -> Text,
        attr -> Text,
        value -> Text,
        resource_id -> Text,
    }
}

diesel::table! {
    group_members (group_id, member_id) {
        group_id -> Text,
        member_id -> Text,
        member_type -> Text,
    }
}

diesel::table! {
    audit_events (seq) {
        seq -> BigInt,
        at -> Text,
        tenant -> Nullable<Text>,
        actor -> Text,
        action -> Text,
        resource_type -> Nullable<Text>,
        resource_id -> Nullable<Text>,
        outcome -> Text,
        detail -> Nullable<Text>,
        prev_hash -> Nullable<Text>,
        hash -> Nullable<Text>,
        app -> Nullable<Text>,
        chain_pos -> Nullable<BigInt>,
    }
}

diesel::table! {
    sync_jobs (app, resource_id) {
        app -> Text,
        resource_id -> Text,
        tenant -> Text,
        state -> Text,
        generation -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> Text,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Text>,
        claimed_generation -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        last_status -> Nullable<BigInt>,
        created_at -> Text,
        updated_at -> Text,
        priority -> BigInt,
        inflight -> Nullable<Text>,
    }
}

diesel::table! {
    app_accounts (app, resource_id) {
        app -> Text,
        resource_id -> Text,
        tenant -> Text,
        resource_type -> Text,
        remote_id -> Nullable<Text>,
        status -> Text,
        applied -> Text,
        revision -> BigInt,
        created_at -> Text,
        updated_at -> Text,
        disabled_at -> Nullable<Text>,
    }
}

diesel::table! {
    access_grants (app, resource_id, entitlement, rule) {
        app -> Text,
        resource_id -> Text,
        tenant -> Text,
        entitlement -> Text,
        rule -> Text,
        granted_at -> Text,
        expires_at -> Nullable<Text>,
        expired_at -> Nullable<Text>,
    }
}

diesel::table! {
    lifecycle_timers (app, resource_id) {
        app -> Text,
        resource_id -> Text,
        tenant -> Text,
        due_at -> Text,
    }
}

diesel::table! {
    app_state (app) {
        app -> Text,
        paused -> Bool,
        reason -> Nullable<Text>,
        updated_at -> Text,
    }
}

diesel::joinable!(group_members -> resources (member_id));
diesel::allow_tables_to_appear_in_same_query!(
    resources,
    attr_index,
    unique_keys,
    group_members,
    audit_events,
    sync_jobs,
    app_accounts,
    app_state,
    access_grants,
    lifecycle_timers
);
