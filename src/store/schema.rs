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
    }
}

diesel::joinable!(group_members -> resources (member_id));
diesel::allow_tables_to_appear_in_same_query!(
    resources,
    attr_index,
    unique_keys,
    group_members,
    audit_events
);
