//! What a check runs with: the run-wide [`Ctx`] (client plus the cached
//! ServiceProviderConfig) and a per-check [`Session`] that remembers every
//! resource the check created and deletes them afterwards, whether the check
//! passed, failed or panicked:
//!
//! ```text
//! runner ──▶ Session::new ──▶ check(&session) ──▶ session.cleanup()
//!                 │  post_user / post_group record ids      │ groups first,
//!                 └─ Drop (on panic) ──────────────────────▶┘ then users
//! ```

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use serde_json::Value;

use crate::client::{Client, Reply};
use crate::expect::{array_attr, attr, id_of};
use crate::fixtures;

/// The SCIM endpoints a check can create resources in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/Users`
    Users,
    /// `/Groups`
    Groups,
}

impl Endpoint {
    /// The collection path, e.g. `/Users`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Users => "/Users",
            Endpoint::Groups => "/Groups",
        }
    }
}

/// Run-wide state shared by all checks.
pub struct Ctx {
    /// The server under test.
    pub client: Client,
    config: OnceLock<Result<Value, String>>,
}

impl Ctx {
    /// Wraps the client; nothing is fetched until a check asks.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            config: OnceLock::new(),
        }
    }

    /// The ServiceProviderConfig, fetched once per run.
    pub fn service_provider_config(&self) -> Result<&Value, String> {
        self.config
            .get_or_init(|| {
                let reply = self.client.get("/ServiceProviderConfig").send()?;
                reply.json_with(200).cloned()
            })
            .as_ref()
            .map_err(|e| format!("ServiceProviderConfig unavailable: {e}"))
    }

    /// Whether the server advertises `<feature>.supported = true`.
    pub fn supports(&self, feature: &str) -> Result<bool, String> {
        let config = self.service_provider_config()?;
        Ok(attr(config, &format!("{feature}.supported")).and_then(Value::as_bool) == Some(true))
    }
}

/// One check's view of the server, with automatic clean-up.
pub struct Session<'a> {
    ctx: &'a Ctx,
    created: RefCell<Vec<(Endpoint, String)>>,
    cleaned: Cell<bool>,
}

impl<'a> Session<'a> {
    /// Starts a session with nothing to clean up.
    pub fn new(ctx: &'a Ctx) -> Self {
        Self {
            ctx,
            created: RefCell::new(Vec::new()),
            cleaned: Cell::new(false),
        }
    }

    /// The HTTP client.
    pub fn client(&self) -> &'a Client {
        &self.ctx.client
    }

    /// The run-wide context.
    pub fn ctx(&self) -> &'a Ctx {
        self.ctx
    }

    /// Records a resource to delete at the end of the check.
    pub fn track(&self, endpoint: Endpoint, id: &str) {
        self.created.borrow_mut().push((endpoint, id.to_owned()));
        self.cleaned.set(false);
    }

    /// Tracks the resource a `meta.location` or Bulk `location` names
    /// (`…/Users/{id}` or `…/Groups/{id}`); anything else is ignored.
    pub fn track_location(&self, location: &str) {
        for endpoint in [Endpoint::Users, Endpoint::Groups] {
            let marker = format!("{}/", endpoint.path());
            if let Some((_, id)) = location.rsplit_once(marker.as_str())
                && !id.is_empty()
                && !id.contains('/')
            {
                self.track(endpoint, id);
            }
        }
    }

    /// Tracks whatever `filter` finds in `endpoint`: a safety net for
    /// requests (like Bulk) whose reply may not say what they created.
    pub fn adopt(&self, endpoint: Endpoint, filter: &str) {
        let reply = self
            .client()
            .get(endpoint.path())
            .query("filter", filter)
            .send();
        if let Ok(reply) = reply
            && let Ok(body) = reply.body()
        {
            for resource in array_attr(body, "Resources").unwrap_or_default() {
                if let Ok(id) = id_of(resource) {
                    self.track(endpoint, &id);
                }
            }
        }
    }

    /// `GET path`, insisting on 200 with a SCIM JSON body.
    pub fn fetch(&self, path: &str) -> Result<Value, String> {
        self.client().get(path).send()?.json_with(200).cloned()
    }

    /// POSTs `body` to `endpoint`; any resource the server reports as created
    /// is tracked. The reply is returned unchecked.
    pub fn post(&self, endpoint: Endpoint, body: &Value) -> Result<Reply, String> {
        let reply = self.client().post(endpoint.path(), body).send()?;
        if (200..300).contains(&reply.status)
            && let Some(id) = reply.body().ok().and_then(|b| id_of(b).ok())
        {
            self.track(endpoint, &id);
        }
        Ok(reply)
    }

    /// Creates a user from `body`, insisting on 201; returns the resource.
    pub fn create_user_from(&self, body: &Value) -> Result<Value, String> {
        let reply = self.post(Endpoint::Users, body)?;
        reply.json_with(201).cloned()
    }

    /// Creates a fresh user with a unique userName built from `tag`.
    pub fn create_user(&self, tag: &str) -> Result<Value, String> {
        self.create_user_from(&fixtures::user(&fixtures::unique_user_name(tag)))
    }

    /// Creates a group with a unique displayName and the given member ids.
    pub fn create_group(&self, tag: &str, members: &[&str]) -> Result<Value, String> {
        let body = fixtures::group(&fixtures::unique_name(tag), members);
        let reply = self.post(Endpoint::Groups, &body)?;
        reply.json_with(201).cloned()
    }

    /// Deletes everything this session created (groups first, newest first).
    /// A 404 counts as already gone; anything else but 2xx is reported.
    pub fn cleanup(&self) -> Result<(), String> {
        self.cleaned.set(true);
        let mut created = std::mem::take(&mut *self.created.borrow_mut());
        created.reverse();
        created.sort_by_key(|(endpoint, _)| *endpoint == Endpoint::Users);
        let mut problems = Vec::new();
        for (endpoint, id) in created {
            let path = format!("{}/{id}", endpoint.path());
            match self.client().delete(&path).send() {
                Ok(r) if r.status == 404 || (200..300).contains(&r.status) => {}
                Ok(r) => problems.push(r.describe()),
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if !self.cleaned.get() {
            // Reached when a check panicked; the panic is what gets reported.
            let _ = self.cleanup();
        }
    }
}
