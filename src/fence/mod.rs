//! What steps may reach and touch beyond their target's RBAC: the outbound fence of http and
//! notify steps (which addresses a request may connect to) and the kinds a patch step may
//! write. Every decision here is a pure function; the http step and the DNS resolver of the
//! operator's HTTP client apply them.
//!
//! Why a fence on top of RBAC: an http step runs inside the cluster network, so without one a
//! person who may create a RunbookRun can make the operator call the cloud metadata endpoint
//! (node credentials) or the API server, and read the answer in status.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// Most bytes of a response body the operator reads; the rest is never downloaded.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Most redirects an http step with `followRedirects` follows.
pub const MAX_REDIRECTS: usize = 5;

/// Cloud metadata endpoints (AWS/GCP/Azure/OpenStack, AWS over IPv6, Alibaba Cloud).
const METADATA: [IpAddr; 3] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// An address range, e.g. `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "{0:?} is not a CIDR: write an address and a prefix length, e.g. 10.0.0.0/8 or fd00::/8 (a bare address means /32 or /128)"
)]
pub struct CidrError(pub String);

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::/n` or a bare address (a single-address range).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let bad = || CidrError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where http and notify steps may not connect.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    /// Ranges the cluster admin refuses (`--deny-egress-cidrs`).
    pub deny: Vec<Cidr>,
    /// Allow 127.0.0.0/8 and ::1 (`--allow-loopback-egress`; local development and tests).
    pub allow_loopback: bool,
    /// The API server's addresses, as the operator's client and the pod environment see them.
    /// A loopback address is matched with its port (a local development cluster shares
    /// 127.0.0.1 with everything else); any other address on every port.
    pub api_server: Vec<SocketAddr>,
    /// Host names answered without DNS (`--resolve`), like curl's `--resolve`: an operator
    /// running outside the cluster reaches a Service through a port-forward or a local
    /// stand-in. The answers are fenced like any other.
    pub resolve: Vec<Override>,
}

/// One `--resolve` entry: `HOST=ADDRESS:PORT`, e.g.
/// `storefront-preview.demo.svc=127.0.0.1:18090`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The host name, lower case, without a trailing dot.
    pub host: String,
    /// Where it connects. The port replaces the URL's default port; a URL with an explicit
    /// port keeps its own.
    pub addr: SocketAddr,
}

/// A `--resolve` entry that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "{0:?} is not a host override: write HOST=ADDRESS:PORT, e.g. storefront-preview.demo.svc=127.0.0.1:18090"
)]
pub struct OverrideError(pub String);

impl Override {
    /// Parses `HOST=ADDRESS:PORT`.
    pub fn parse(text: &str) -> Result<Override, OverrideError> {
        let bad = || OverrideError(text.to_owned());
        let (host, addr) = text.trim().split_once('=').ok_or_else(bad)?;
        let host = normal_host(host);
        if host.is_empty() {
            return Err(bad());
        }
        let addr = addr.trim().parse().map_err(|_| bad())?;
        Ok(Override { host, addr })
    }
}

/// A host name as overrides are keyed: lower case, no trailing dot.
fn normal_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl EgressPolicy {
    /// The addresses `--resolve` gives `host`, if it names it.
    pub fn overridden(&self, host: &str) -> Option<Vec<SocketAddr>> {
        let host = normal_host(host);
        let found: Vec<SocketAddr> = self
            .resolve
            .iter()
            .filter(|o| o.host == host)
            .map(|o| o.addr)
            .collect();
        (!found.is_empty()).then_some(found)
    }
}

/// Why an address is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// 169.254.169.254, fd00:ec2::254 or 100.100.100.200.
    CloudMetadata,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// An address of the Kubernetes API server.
    ApiServer,
    /// 127.0.0.0/8, ::1, or the unspecified address (which reaches the local host).
    Loopback,
    /// A range from `--deny-egress-cidrs`.
    Denied(Cidr),
}

impl Rule {
    /// What a person reading the step's failure can do about it.
    pub fn advice(&self) -> String {
        match self {
            Rule::CloudMetadata | Rule::LinkLocal => {
                "link-local and cloud metadata addresses are never reachable from http or notify steps".into()
            }
            Rule::ApiServer => {
                "http and notify steps never call the Kubernetes API server: use a patch, scale or job step instead".into()
            }
            Rule::Loopback => {
                "loopback addresses are refused unless the operator runs with --allow-loopback-egress (local development only)".into()
            }
            Rule::Denied(cidr) => format!(
                "the cluster admin refuses {cidr} (operator flag --deny-egress-cidrs, chart value egress.denyCIDRs); ask them to remove it if this call is meant to be allowed"
            ),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::CloudMetadata => f.write_str("cloud metadata address"),
            Rule::LinkLocal => f.write_str("link-local address"),
            Rule::ApiServer => f.write_str("Kubernetes API server address"),
            Rule::Loopback => f.write_str("loopback address"),
            Rule::Denied(cidr) => write!(f, "denied range {cidr}"),
        }
    }
}

/// Whether a connection to `addr` is refused, and by which rule. The port matters only for a
/// loopback API server address; port 0 stands for "any port" and never matches one.
pub fn is_refused(addr: SocketAddr, policy: &EgressPolicy) -> Option<Rule> {
    let ip = addr.ip().to_canonical();
    if METADATA.contains(&ip) {
        return Some(Rule::CloudMetadata);
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Some(Rule::LinkLocal);
    }
    let api_server = policy.api_server.iter().any(|api| {
        api.ip().to_canonical() == ip && (!ip.is_loopback() || api.port() == addr.port())
    });
    if api_server {
        return Some(Rule::ApiServer);
    }
    let local = ip.is_loopback() || ip.is_unspecified() || in_this_network(ip);
    if local && !policy.allow_loopback {
        return Some(Rule::Loopback);
    }
    policy
        .deny
        .iter()
        .find(|cidr| cidr.contains(ip))
        .map(|cidr| Rule::Denied(*cidr))
}

/// 0.0.0.0/8: "this network", which Linux connects to the local host.
fn in_this_network(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 0)
}

/// A refused connection: the host the step named, the address it resolved to, and the rule.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{host} resolves to {ip}, a {rule}: {}", rule.advice())]
pub struct Refused {
    /// The URL's host.
    pub host: String,
    /// The refused address.
    pub ip: IpAddr,
    /// Why.
    pub rule: Rule,
}

/// The URL a step means: a host without a dot (not `localhost`, not an address) is a Service
/// in the object's namespace, `http://app:8080` → `http://app.<ns>.svc:8080`, as a person
/// reading the Runbook expects (the operator's own pod would resolve it in the operator's
/// namespace).
pub fn qualify(url: &mut reqwest::Url, namespace: &str) {
    let Some(host) = url.host_str() else {
        return;
    };
    let qualified = qualified_host(host, namespace);
    if qualified != host {
        // set_host fails only for URLs that cannot have a host, which a Domain host rules out.
        let _ = url.set_host(Some(&qualified));
    }
}

/// [`qualify`] for a bare host name (an SMTP server): `mail` → `mail.<ns>.svc`.
pub fn qualified_host(host: &str, namespace: &str) -> String {
    let trimmed = host.trim_end_matches('.');
    if trimmed.contains('.')
        || trimmed.contains(':')
        || trimmed.eq_ignore_ascii_case("localhost")
        || trimmed.is_empty()
        || literal_ip(trimmed).is_some()
    {
        return host.to_owned();
    }
    format!("{trimmed}.{namespace}.svc")
}

/// Whether a redirect from `from` to `to` stays on the same host and port, and does not
/// downgrade https to http.
pub fn same_host(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default()
        && !(from.scheme() == "https" && to.scheme() != "https")
}

/// Checks every address a URL's host resolves to now (with the URL's port, so a loopback API
/// server is recognised); the client's resolver checks again at connect time, which covers a
/// name whose answer changes in between. A name that does not resolve is left to the client,
/// which reports it.
pub async fn check_url(url: &reqwest::Url, policy: &EgressPolicy) -> Result<(), Refused> {
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(0);
    let addrs: Vec<SocketAddr> = match (literal_ip(host), policy.overridden(host)) {
        (Some(ip), _) => vec![SocketAddr::new(ip, port)],
        (None, Some(found)) => found,
        (None, None) => match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.collect(),
            Err(_) => Vec::new(),
        },
    };
    first_refused(host, &addrs, policy)
}

/// The address of an IP-literal host (`10.0.0.1`, `[::1]`), which the client connects to
/// without asking the resolver.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The first refused address of `addrs` as an error. Every address is checked, not only the
/// one the client would pick: a name that mixes allowed and refused answers is refused.
pub fn first_refused(
    host: &str,
    addrs: &[SocketAddr],
    policy: &EgressPolicy,
) -> Result<(), Refused> {
    for addr in addrs {
        if let Some(rule) = is_refused(*addr, policy) {
            return Err(Refused {
                host: host.to_owned(),
                ip: addr.ip(),
                rule,
            });
        }
    }
    Ok(())
}

/// The [`Refused`] anywhere in an error's source chain (the client wraps the resolver's error).
pub fn refused_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

/// The HTTP client's DNS resolver: resolves with `--resolve` or the system resolver and
/// refuses names with any fenced answer, at the moment of connecting (so DNS rebinding is
/// covered too).
#[derive(Clone, Debug)]
pub struct FencedResolver(pub Arc<EgressPolicy>);

impl reqwest::dns::Resolve for FencedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match policy.overridden(&host) {
                Some(found) => found,
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            first_refused(&host, &addrs, &policy)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The client of http and notify steps: no redirects (the step follows them itself, see the
/// http step), no proxy from the environment (the fence checks the addresses the operator
/// connects to, which a proxy would hide), and the fenced resolver.
pub fn http_client(policy: Arc<EgressPolicy>) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("runbook-operator/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(FencedResolver(policy)))
        .build()
        .unwrap_or_default()
}

/// The kinds a patch step may not write unless `--allow-patch-kinds` lists them: credentials
/// (Secrets), identities (ServiceAccounts), permissions (every RBAC kind) and the operator's
/// own kinds (a run could otherwise rewrite the Runbook that runs it, or another team's).
pub fn patch_refusal(api_version: &str, kind: &str, allowed: &[String]) -> Option<String> {
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let guarded = match group {
        "" => matches!(kind, "Secret" | "ServiceAccount"),
        "rbac.authorization.k8s.io" => true,
        g => g == <crate::runbook::Runbook as kube::Resource>::group(&()),
    };
    if !guarded {
        return None;
    }
    let name = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let listed = allowed
        .iter()
        .map(|a| a.trim())
        .any(|a| a == name || a.strip_prefix("*.").is_some_and(|g| g == group) || a == "*");
    if listed {
        return None;
    }
    let why = match (group, kind) {
        ("", "Secret") => "it holds credentials",
        ("", _) => "it is an identity other steps could act as",
        ("rbac.authorization.k8s.io", _) => "it grants permissions",
        _ => "it is one of the operator's own kinds",
    };
    Some(format!(
        "patch steps may not change {name}, since {why}; a cluster admin can allow it with the operator flag --allow-patch-kinds {name} (chart value allowPatchKinds)"
    ))
}
