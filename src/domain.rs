//! The words every layer shares: which kind of resource, and who acts.
//!
//! This module imports nothing from the crate, so the store, the adapters,
//! the policy and the SCIM layer can all name a [`Kind`] or an [`Actor`]
//! without reaching into a layer above them.

/// Which resource type a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    /// The resource type name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
}

/// Who is acting: the tenant and the token (by name, never the secret).
#[derive(Debug, Clone)]
pub struct Actor {
    /// The tenant namespace.
    pub tenant: String,
    /// The token's configured name.
    pub token_id: String,
    /// For an app's pull token: the app, whose read-only view it sees.
    pub app: Option<String>,
}

impl Actor {
    /// How audit rows name this actor: `tenant/token`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.tenant, self.token_id)
    }

    /// Whether this is an app's pull token, which may only read.
    pub fn read_only(&self) -> bool {
        self.app.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_labelled_by_tenant_and_token() {
        let actor = Actor {
            tenant: "acme".into(),
            token_id: "entra".into(),
            app: None,
        };
        assert_eq!(actor.label(), "acme/entra");
        assert!(!actor.read_only());
        assert_eq!(Kind::Group.name(), "Group");
    }
}
