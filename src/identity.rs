//! Whose rights an action uses. Everything the operator does on behalf of an object (the steps
//! of a run, a window's changes, a release's Deployments and Services, a policy's Jobs) is sent
//! impersonating a ServiceAccount of the object's namespace: the one its
//! `spec.serviceAccountName` names, else the operator's default (`--default-service-account`).
//! The API server then authorizes the request as that ServiceAccount (adding its groups
//! itself), so the operator never does for someone what their RBAC, or an identity they may
//! use, would refuse. The operator's own identity is kept for its own kinds, Events, Leases and
//! watches.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use kube::Client;

/// Default of `--default-service-account`: the ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Clients kept at once, one per identity in use; the least recently built goes first. Enough
/// for every ServiceAccount that acts in a busy cluster, and a bound on memory if thousands do.
const MAX_CLIENTS: usize = 256;

/// A ServiceAccount an object acts as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The object's namespace (a ServiceAccount of another namespace is never used).
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
}

impl Identity {
    /// The identity of an object in `namespace` whose spec names `named` (if any), with
    /// `default` as the operator's default ServiceAccount.
    pub fn resolve(namespace: &str, named: Option<&str>, default: &str) -> Self {
        let service_account = named.filter(|n| !n.is_empty()).unwrap_or(default);
        Self {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// The user name the API server knows it by: `system:serviceaccount:<ns>:<name>`.
    pub fn username(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.username())
    }
}

/// A client acting as an identity could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// There is no base configuration to build it from (a context made for tests).
    #[error("cannot act as {identity}: the operator has no client configuration")]
    NoConfig {
        /// The identity.
        identity: String,
    },
    /// The client library refused the configuration.
    #[error("cannot build a Kubernetes client acting as {identity}: {source}")]
    Client {
        /// The identity.
        identity: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

/// The operator's base client configuration and, built from it on first use, one client per
/// identity (bounded). The one place that builds impersonating clients.
#[derive(Clone)]
pub struct Identities {
    base: Option<kube::Config>,
    default_service_account: String,
    clients: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    clients: HashMap<Identity, Client>,
    order: VecDeque<Identity>,
}

impl Identities {
    /// Identities built from `base` (the operator's own kubeconfig or in-cluster config),
    /// with `default_service_account` for objects that name none.
    pub fn new(base: kube::Config, default_service_account: impl Into<String>) -> Self {
        Self {
            base: Some(base),
            default_service_account: default_service_account.into(),
            clients: Default::default(),
        }
    }

    /// The default ServiceAccount's name (`--default-service-account`).
    pub fn default_service_account(&self) -> &str {
        &self.default_service_account
    }

    /// The identity of an object in `namespace` naming `named` as its serviceAccountName.
    pub fn of(&self, namespace: &str, named: Option<&str>) -> Identity {
        Identity::resolve(namespace, named, &self.default_service_account)
    }

    /// The client acting as `identity`: the base configuration with `impersonate` set.
    pub fn client(&self, identity: &Identity) -> Result<Client, IdentityError> {
        if let Ok(cache) = self.clients.lock()
            && let Some(client) = cache.clients.get(identity)
        {
            return Ok(client.clone());
        }
        let mut config = self.base.clone().ok_or_else(|| IdentityError::NoConfig {
            identity: identity.username(),
        })?;
        // The API server adds the ServiceAccount's groups (system:serviceaccounts and
        // system:serviceaccounts:<ns>) itself; naming groups here would replace them.
        config.auth_info.impersonate = Some(identity.username());
        config.auth_info.impersonate_groups = None;
        let client = Client::try_from(config).map_err(|source| IdentityError::Client {
            identity: identity.username(),
            source,
        })?;
        if let Ok(mut cache) = self.clients.lock() {
            if cache.clients.len() >= MAX_CLIENTS
                && let Some(oldest) = cache.order.pop_front()
            {
                cache.clients.remove(&oldest);
            }
            if cache
                .clients
                .insert(identity.clone(), client.clone())
                .is_none()
            {
                cache.order.push_back(identity.clone());
            }
        }
        Ok(client)
    }
}

impl Default for Identities {
    /// No base configuration: every client request fails (for tests that never act).
    fn default() -> Self {
        Self {
            base: None,
            default_service_account: DEFAULT_SERVICE_ACCOUNT.into(),
            clients: Default::default(),
        }
    }
}

/// A read an object's identity was refused (403), as the sentence of [`refused`]; writes
/// carry theirs in [`crate::write::WriteError::refused_identity`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What the API server's RBAC refusal says: who may not do what, where.
#[derive(Debug, PartialEq)]
struct Refusal<'a> {
    user: &'a str,
    verb: &'a str,
    resource: &'a str,
    group: &'a str,
    namespace: Option<&'a str>,
}

/// Parses `... User "U" cannot VERB resource "R" in API group "G" in the namespace "N"`,
/// the form of every RBAC refusal the API server sends.
fn parse(message: &str) -> Option<Refusal<'_>> {
    fn quoted<'a>(start: &str, text: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = &text[text.find(start)? + start.len()..];
        let end = rest.find('"')?;
        Some((&rest[..end], &rest[end + 1..]))
    }
    let (user, rest) = quoted("User \"", message)?;
    let rest = rest.strip_prefix(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    let (resource, rest) = quoted("resource \"", rest)?;
    let (group, rest) = quoted("in API group \"", rest)?;
    let namespace = quoted("in the namespace \"", rest).map(|(ns, _)| ns);
    Some(Refusal {
        user,
        verb,
        resource,
        group,
        namespace,
    })
}

/// The sentence a person reads about a request the API server refused while the operator was
/// acting as an object's identity: who may not do what where, and what to do about it. Falls
/// back to the API server's own message when it is not an RBAC refusal.
pub fn refused(message: &str) -> String {
    let Some(refusal) = parse(message) else {
        return format!(
            "{message}: grant the object's ServiceAccount the right with a Role and RoleBinding, or set spec.serviceAccountName"
        );
    };
    let resource = match refusal.group {
        "" => refusal.resource.to_owned(),
        group => format!("{}.{group}", refusal.resource),
    };
    let place = match refusal.namespace {
        Some(ns) => format!(" in namespace {ns:?}"),
        None => " cluster-wide".to_owned(),
    };
    // `impersonate`, or (Kubernetes 1.35+, constrained impersonation) `impersonate-on:...`.
    if refusal.verb.starts_with("impersonate") {
        // The operator itself may not use the identity: the chart restricts the names.
        return format!(
            "the operator ({}) may not impersonate ServiceAccounts{place}: allow it in the chart (value rbac.impersonate.serviceAccountNames) or name another ServiceAccount in spec.serviceAccountName (the API server said: {message})",
            refusal.user
        );
    }
    format!(
        "{} may not {} {resource}{place}: grant it with a Role and RoleBinding, or set spec.serviceAccountName",
        refusal.user, refusal.verb
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOBS: &str = r#"jobs.batch is forbidden: User "system:serviceaccount:a:default" cannot create resource "jobs" in API group "batch" in the namespace "a""#;

    #[test]
    fn an_object_without_a_name_acts_as_the_default() {
        let id = Identity::resolve("shop", None, "runner");
        assert_eq!(id.username(), "system:serviceaccount:shop:runner");
        assert_eq!(
            Identity::resolve("shop", Some(""), "default").service_account,
            "default"
        );
        assert_eq!(
            Identity::resolve("shop", Some("ops"), "default").to_string(),
            "system:serviceaccount:shop:ops"
        );
    }

    #[test]
    fn a_refusal_names_identity_verb_resource_namespace_and_the_fix() {
        assert_eq!(
            refused(JOBS),
            "system:serviceaccount:a:default may not create jobs.batch in namespace \"a\": grant it with a Role and RoleBinding, or set spec.serviceAccountName"
        );
    }

    #[test]
    fn core_kinds_and_subresources_read_well() {
        let message = r#"secrets "db" is forbidden: User "system:serviceaccount:a:x" cannot get resource "secrets" in API group "" in the namespace "a""#;
        assert!(
            refused(message)
                .starts_with("system:serviceaccount:a:x may not get secrets in namespace \"a\"")
        );
        let scale = r#"deployments.apps "web" is forbidden: User "u" cannot patch resource "deployments/scale" in API group "apps" in the namespace "a""#;
        assert!(refused(scale).starts_with("u may not patch deployments/scale.apps"));
    }

    #[test]
    fn an_impersonation_refusal_blames_the_operator() {
        let message = r#"serviceaccounts "x" is forbidden: User "system:serviceaccount:runbook-system:runbook-operator" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "a""#;
        let text = refused(message);
        assert!(text.starts_with("the operator (system:serviceaccount:runbook-system:runbook-operator) may not impersonate"), "{text}");
        assert!(
            text.contains("rbac.impersonate.serviceAccountNames"),
            "{text}"
        );
    }

    #[test]
    fn a_constrained_impersonation_refusal_blames_the_operator_too() {
        let message = r#"deployments.apps "web" is forbidden: User "system:serviceaccount:a:op" cannot impersonate-on:serviceaccount:patch resource "deployments" in API group "apps" in the namespace "a""#;
        let text = refused(message);
        assert!(
            text.starts_with("the operator (system:serviceaccount:a:op) may not impersonate"),
            "{text}"
        );
        assert!(text.contains(message), "{text}");
    }

    #[test]
    fn anything_else_keeps_the_api_servers_words() {
        assert!(refused("admission webhook said no").starts_with("admission webhook said no: "));
    }

    #[test]
    fn clients_are_not_built_without_a_base_configuration() {
        let Err(err) = Identities::default().client(&Identity::resolve("a", None, "default"))
        else {
            panic!("a client without a configuration");
        };
        assert!(err.to_string().contains("system:serviceaccount:a:default"));
    }
}
