//! Configuration changes at run time: SIGHUP re-reads the file, `ApplyConfig` merges a
//! fragment into the running configuration, `RemoveConfigObject` deletes one object.
//!
//! Every change builds a whole new configuration, validated exactly as at start-up, and
//! takes effect only if all of it is valid (Junos' `commit`). Then it is compared with
//! the running one, VPN by VPN: a VPN whose resolved configuration (its gateway, IKE
//! and IPsec proposals, options, key log) is unchanged keeps its actor, its SAs and its
//! traffic; a changed VPN's gateway is stopped (Delete to the peer) and started anew;
//! removed ones are stopped, added ones started. Manual-key pairs and `st0` routes and
//! addresses are compared the same way.
//!
//! Changes made through the API live in the running configuration only, like
//! strongSwan's `load-conn` over VICI: the file stays as the operator wrote it, and a
//! SIGHUP or a restart returns to it. What a reload cannot change on a running node
//! is refused with FAILED_PRECONDITION and changes nothing: a new `st0` unit or a
//! changed MTU (the dataplane opens its TUN queues at start), and anything in a
//! chassis cluster member (both members must change together; restart them one at a
//! time).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use actix::prelude::*;

use super::ike_socket::Listen;
use super::spec::SpecError;
use super::spu::Spus;
use super::{GatewayEnv, ManualSpec, NodeSpec, TunnelSpec, net, policy};
use crate::config::{Config, ConfigError};
use crate::mgmt::backend::{
    BackendError, ConfigObjectKind, EventKind, EventView, FieldError, OperationOutcome,
};

/// Tables whose entries are named objects: a fragment's entry replaces the running one
/// whole instead of merging into it (`*` stands for any one name).
const OBJECT_TABLES: &[&str] = &[
    "security.ike.proposal",
    "security.ike.policy",
    "security.ike.gateway",
    "security.ipsec.proposal",
    "security.ipsec.policy",
    "security.ipsec.vpn",
    "security.address-pools",
    "security.policies.from-zone.*.to-zone.*.policy",
    "interfaces.st0.unit",
    "routing-options.static.route",
];

/// What the node runs now, and where its configuration came from.
#[derive(Debug)]
pub struct Running {
    /// The file SIGHUP re-reads; `None` for a node started from a configuration in
    /// memory (the demo, tests), which only the API can change.
    pub path: Option<PathBuf>,
    /// The running configuration as a document, for merging fragments into.
    pub document: toml::Table,
    /// The running configuration, resolved.
    pub config: Config,
    /// What the runtime was started from, updated by each change.
    pub spec: NodeSpec,
    /// A chassis cluster member: changes are refused (see the module documentation).
    pub clustered: bool,
}

impl Running {
    /// The running state of a node started from `text` (the contents of `path`).
    pub fn new(
        path: Option<PathBuf>,
        text: &str,
        config: Config,
        spec: NodeSpec,
        clustered: bool,
    ) -> Result<Running, String> {
        let document = text
            .parse::<toml::Table>()
            .map_err(|e| format!("re-reading the configuration: {e}"))?;
        Ok(Running {
            path,
            document,
            config,
            spec,
            clustered,
        })
    }
}

/// Re-reads the configuration file (SIGHUP).
#[derive(Message, Debug)]
#[rtype(result = "Result<OperationOutcome, BackendError>")]
pub struct ReloadFile;

/// Adds or replaces the objects a TOML fragment defines (`ApplyConfig`).
#[derive(Message, Debug)]
#[rtype(result = "Result<OperationOutcome, BackendError>")]
pub struct ApplyFragment(pub String);

/// Deletes one object (`RemoveConfigObject`).
#[derive(Message, Debug)]
#[rtype(result = "Result<OperationOutcome, BackendError>")]
pub struct RemoveObject {
    /// Its kind.
    pub kind: ConfigObjectKind,
    /// Its name.
    pub name: String,
}

/// The actor that owns the running configuration and applies changes one at a time.
#[derive(Debug)]
pub struct Reloader {
    running: Running,
    env: GatewayEnv,
}

impl Reloader {
    /// A reloader for the node whose gateways `env` starts and stops.
    pub fn new(running: Running, env: GatewayEnv) -> Self {
        Self { running, env }
    }
}

impl Actor for Reloader {
    type Context = Context<Self>;
}

/// Where the next configuration comes from.
enum Source {
    /// The configuration file, read whole (SIGHUP): diagnostics name its lines.
    File { name: String, text: String },
    /// The running document with a fragment merged in or an object removed.
    Document(toml::Table),
}

/// A new configuration, validated and compared with the running one.
struct Plan {
    document: toml::Table,
    config: Config,
    spec: NodeSpec,
    /// VPNs whose gateway stops (removed or changed).
    stop: Vec<String>,
    /// VPNs whose gateway starts (added or changed).
    start: Vec<String>,
    /// Manual VPNs removed or changed, then added or changed.
    manual_stop: Vec<String>,
    manual_start: Vec<String>,
    /// Tunnels whose routes or addresses differ: (running, new).
    tunnels: Vec<(TunnelSpec, TunnelSpec)>,
    /// `security.policies` differ: the SPD and the policy tunnel's routes change.
    policies: bool,
    summary: String,
}

impl Reloader {
    /// Validates `source` as the next running configuration and plans the change.
    fn plan(&self, source: Source) -> Result<Plan, BackendError> {
        let old = &self.running;
        if old.clustered {
            return Err(BackendError::FailedPrecondition(
                "this node is a chassis cluster member: configuration changes at run time \
                 are not supported in a cluster (both members must change together); edit \
                 the file on every member and restart them one at a time"
                    .into(),
            ));
        }
        let (document, config) = match source {
            Source::File { name, text } => {
                let document = text
                    .parse::<toml::Table>()
                    .map_err(|e| invalid_toml(&name, &e))?;
                let config = Config::parse(&text, &name).map_err(|e| invalid(e, true))?;
                (document, config)
            }
            Source::Document(document) => {
                let text = toml::to_string(&document)
                    .map_err(|e| BackendError::Internal(format!("configuration document: {e}")))?;
                let config =
                    Config::parse(&text, "running configuration").map_err(|e| invalid(e, false))?;
                (document, config)
            }
        };
        let mut config = config;
        if let Some(dir) = old.path.as_deref().and_then(std::path::Path::parent) {
            config.resolve_paths(dir);
        }
        let spec = NodeSpec::from_config(&config, old.spec.workers).map_err(spec_invalid)?;
        if config.cluster.is_some() {
            return Err(BackendError::FailedPrecondition(
                "chassis.cluster: a standalone node cannot become a cluster member at run \
                 time: restart it with --node"
                    .into(),
            ));
        }
        policy::check_reload(old.spec.policy.as_ref(), spec.policy.as_ref())
            .map_err(BackendError::FailedPrecondition)?;
        let mut tunnels = Vec::new();
        for t in &spec.tunnels {
            match old.spec.tunnels.iter().find(|o| o.unit == t.unit) {
                None => {
                    return Err(BackendError::FailedPrecondition(format!(
                        "interfaces.st0.unit.{}: {} does not exist on the running node (TUN \
                         interfaces are created at start): restart vpnd to add it",
                        t.unit,
                        t.name()
                    )));
                }
                Some(o) if o.mtu != t.mtu => {
                    return Err(BackendError::FailedPrecondition(format!(
                        "interfaces.st0.unit.{}: the MTU of a running {} cannot change \
                         ({} to {}): restart vpnd",
                        t.unit,
                        t.name(),
                        o.mtu,
                        t.mtu
                    )));
                }
                Some(o) if o != t => tunnels.push((o.clone(), t.clone())),
                Some(_) => {}
            }
        }
        let (stop, start, kept) = diff(
            old.config.vpns.iter().map(|v| v.name.as_str()),
            config.vpns.iter().map(|v| v.name.as_str()),
            |name| {
                let (a, b) = (old.config.vpn(name), config.vpn(name));
                a.is_some_and(|a| {
                    b.is_some_and(|b| {
                        a == b
                            && old.config.gateway(&a.gateway) == config.gateway(&b.gateway)
                            && old.config.key_log == config.key_log
                    })
                })
            },
        );
        let (manual_stop, manual_start, manual_kept) = diff(
            old.config.manual_vpns.iter().map(|v| v.name.as_str()),
            config.manual_vpns.iter().map(|v| v.name.as_str()),
            |name| old.config.manual_vpn(name) == config.manual_vpn(name),
        );
        let mut summary = String::new();
        describe(&mut summary, "vpn", &stop, &start, kept);
        describe(
            &mut summary,
            "manual vpn",
            &manual_stop,
            &manual_start,
            manual_kept,
        );
        if !tunnels.is_empty() {
            let names: Vec<String> = tunnels.iter().map(|(_, t)| t.name()).collect();
            let _ = write!(
                summary,
                "; routes/addresses of {} updated",
                names.join(", ")
            );
        }
        let policies = config.policies != old.config.policies;
        if policies {
            summary.push_str("; security policies updated");
        }
        if config.services != old.config.services {
            summary.push_str("; services.* changes take effect at the next restart");
        }
        Ok(Plan {
            document,
            config,
            spec,
            stop,
            start,
            manual_stop,
            manual_start,
            tunnels,
            policies,
            summary,
        })
    }

    /// Carries a plan out: the old first (their SAs leave the dataplane, their peers
    /// get a Delete), then routes, then the new.
    async fn execute(
        plan: Plan,
        env: GatewayEnv,
        old_spec: NodeSpec,
    ) -> Result<(Plan, Vec<String>), BackendError> {
        let (socket, spus) = (&env.socket, &env.spus);
        let mut failures = Vec::new();
        for vpn in &plan.stop {
            if let Some(s) = old_spec.gateways.iter().find(|s| &s.vpn == vpn) {
                env.stop_vpn(s).await;
                tracing::info!(vpn = %vpn, gateway = %s.name, "configuration: gateway stopped");
            }
        }
        for name in &plan.manual_stop {
            if let Some(m) = old_spec.manual.iter().find(|m| &m.name == name) {
                let anchor = spus.anchor_for(m.outbound.binding);
                spus.remove(anchor, vec![m.inbound.key(), m.outbound.key()]);
                tracing::info!(vpn = %name, "configuration: manual SA pair removed");
            }
        }
        for (old, new) in &plan.tunnels {
            if let Err(e) = net::reconfigure(old, new).await {
                failures.push(format!("{}: {e}", new.name()));
            }
        }
        let (old_policy, new_policy) = (old_spec.policy.as_ref(), plan.spec.policy.as_ref());
        if let Err(e) = policy::reload(old_policy, new_policy, spus.dataplane()).await {
            failures.push(format!("{}: {e}", policy::POLICY_TUNNEL_NAME));
        }
        for vpn in &plan.start {
            let Some(s) = plan.spec.gateways.iter().find(|s| &s.vpn == vpn) else {
                continue;
            };
            if let Err(e) = socket
                .send(Listen(SocketAddr::new(s.local, 500)))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                failures.push(format!("vpn {vpn}: {e}"));
                continue;
            }
            env.start_vpn(s);
            tracing::info!(vpn = %vpn, gateway = %s.name, "configuration: gateway started");
        }
        for name in &plan.manual_start {
            if let Some(m) = plan.spec.manual.iter().find(|m| &m.name == name)
                && let Err(e) = install_manual(spus, m).await
            {
                failures.push(format!("manual vpn {name}: {e}"));
            }
        }
        Ok((plan, failures))
    }

    /// Plans and carries out the change to `source`, then reports it on the event
    /// feed.
    fn commit(
        &mut self,
        source: Result<Source, BackendError>,
    ) -> ResponseActFuture<Self, Result<OperationOutcome, BackendError>> {
        let plan = match source.and_then(|s| self.plan(s)) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        if plan.stop.is_empty()
            && plan.start.is_empty()
            && plan.manual_stop.is_empty()
            && plan.manual_start.is_empty()
            && plan.tunnels.is_empty()
            && !plan.policies
        {
            let message = format!("configuration valid, nothing to change{}", plan.summary);
            self.adopt(plan);
            return Box::pin(fut::ready(Ok(OperationOutcome::NoChange(message))));
        }
        let work = Self::execute(plan, self.env.clone(), self.running.spec.clone());
        Box::pin(work.into_actor(self).map(|result, this, _| {
            let (plan, failures) = result?;
            let mut message = format!("configuration applied{}", plan.summary);
            this.adopt(plan);
            if !failures.is_empty() {
                let _ = write!(message, "; FAILED: {}", failures.join("; "));
            }
            tracing::info!(%message, "configuration changed");
            let _ = this.env.events.send(EventView {
                timestamp: SystemTime::now(),
                kind: EventKind::ConfigChange,
                gateway: None,
                vpn: None,
                spi: None,
                message: message.clone(),
            });
            if failures.is_empty() {
                Ok(OperationOutcome::Done(message))
            } else {
                Err(BackendError::Internal(message))
            }
        }))
    }

    fn adopt(&mut self, plan: Plan) {
        self.running.document = plan.document;
        self.running.config = plan.config;
        self.running.spec = plan.spec;
    }
}

impl Handler<ReloadFile> for Reloader {
    type Result = AtomicResponse<Self, Result<OperationOutcome, BackendError>>;

    fn handle(&mut self, _: ReloadFile, _: &mut Context<Self>) -> Self::Result {
        let Some(path) = self.running.path.clone() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(
                BackendError::FailedPrecondition(
                    "this node was not started from a configuration file".into(),
                ),
            ))));
        };
        let source = std::fs::read_to_string(&path)
            .map(|text| Source::File {
                name: path.display().to_string(),
                text,
            })
            .map_err(|e| {
                BackendError::FailedPrecondition(format!("{}: cannot read: {e}", path.display()))
            });
        AtomicResponse::new(self.commit(source))
    }
}

impl Handler<ApplyFragment> for Reloader {
    type Result = AtomicResponse<Self, Result<OperationOutcome, BackendError>>;

    fn handle(&mut self, msg: ApplyFragment, _: &mut Context<Self>) -> Self::Result {
        let document = msg
            .0
            .parse::<toml::Table>()
            .map_err(|e| invalid_toml("toml_fragment", &e))
            .map(|fragment| {
                let mut document = self.running.document.clone();
                merge(&mut document, fragment, "");
                Source::Document(document)
            });
        AtomicResponse::new(self.commit(document))
    }
}

impl Handler<RemoveObject> for Reloader {
    type Result = AtomicResponse<Self, Result<OperationOutcome, BackendError>>;

    fn handle(&mut self, msg: RemoveObject, _: &mut Context<Self>) -> Self::Result {
        let mut document = self.running.document.clone();
        let removed = table_at(&mut document, msg.kind.config_path())
            .and_then(|t| t.remove(&msg.name))
            .is_some();
        let document = if removed {
            Ok(Source::Document(document))
        } else {
            Err(BackendError::NotFound {
                kind: msg.kind.config_path().replace('.', " "),
                name: msg.name,
            })
        };
        AtomicResponse::new(self.commit(document))
    }
}

/// Merges `fragment` into `base`: tables merge key by key, except the entries of
/// [`OBJECT_TABLES`], which replace the running object whole (so a fragment that
/// redefines a gateway without `dead-peer-detection` removes it).
fn merge(base: &mut toml::Table, fragment: toml::Table, path: &str) {
    let objects = is_object_table(path);
    for (key, value) in fragment {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(f)) if !objects => {
                merge(b, f, &child);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn is_object_table(path: &str) -> bool {
    OBJECT_TABLES.iter().any(|pattern| {
        let mut want = pattern.split('.');
        let mut have = path.split('.');
        loop {
            match (want.next(), have.next()) {
                (None, None) => return true,
                (Some(w), Some(h)) if w == "*" || w == h => {}
                _ => return false,
            }
        }
    })
}

/// The table at dotted `path`, if every step is a table.
fn table_at<'a>(doc: &'a mut toml::Table, path: &str) -> Option<&'a mut toml::Table> {
    path.split('.')
        .try_fold(doc, |t, key| t.get_mut(key)?.as_table_mut())
}

/// Splits names into (stopped: removed or changed, started: added or changed, number
/// kept), in configuration order.
fn diff<'a>(
    old: impl Iterator<Item = &'a str>,
    new: impl Iterator<Item = &'a str>,
    same: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>, usize) {
    let new: Vec<&str> = new.collect();
    let old: Vec<&str> = old.collect();
    let old_set: BTreeSet<&str> = old.iter().copied().collect();
    let stop = old
        .iter()
        .filter(|n| !new.contains(n) || !same(n))
        .map(|n| n.to_string())
        .collect();
    let start: Vec<String> = new
        .iter()
        .filter(|n| !old_set.contains(*n) || !same(n))
        .map(|n| n.to_string())
        .collect();
    let kept = new
        .iter()
        .filter(|n| old_set.contains(*n) && same(n))
        .count();
    (stop, start, kept)
}

/// Appends "; vpn a added, vpn b changed, ..." to `out`.
fn describe(out: &mut String, what: &str, stop: &[String], start: &[String], kept: usize) {
    for n in start {
        let verb = if stop.contains(n) {
            "changed (renegotiated)"
        } else {
            "added"
        };
        let _ = write!(out, "; {what} {n} {verb}");
    }
    for n in stop.iter().filter(|n| !start.contains(n)) {
        let _ = write!(out, "; {what} {n} removed");
    }
    if kept > 0 && (!stop.is_empty() || !start.is_empty()) {
        let _ = write!(out, "; {kept} {what}(s) unchanged");
    }
}

async fn install_manual(spus: &Spus, m: &ManualSpec) -> Result<(), String> {
    let anchor = spus.anchor_for(m.outbound.binding);
    spus.install_pair(anchor, m.inbound.clone(), m.outbound.clone())
        .await
}

/// Every problem of a rejected configuration, by dotted key; `located`: prefixed with
/// file, line and column (a file the operator wrote, not a merged document).
fn invalid(e: ConfigError, located: bool) -> BackendError {
    match e {
        ConfigError::Io { .. } => BackendError::FailedPrecondition(e.to_string()),
        ConfigError::Invalid(diags) => BackendError::Invalid(
            diags
                .into_iter()
                .map(|d| {
                    let at = format!("{}:{}:{}", d.file, d.line, d.column);
                    let field = match (located, d.key.is_empty()) {
                        (_, true) => at,
                        (true, false) => format!("{at}: {}", d.key),
                        (false, false) => d.key,
                    };
                    FieldError::new(field, d.message)
                })
                .collect(),
        ),
    }
}

fn spec_invalid(e: SpecError) -> BackendError {
    BackendError::Invalid(vec![FieldError::new(e.object, e.reason)])
}

fn invalid_toml(what: &str, e: &toml::de::Error) -> BackendError {
    BackendError::Invalid(vec![FieldError::new(what, e.to_string().trim_end())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn a_fragment_replaces_named_objects_whole_and_merges_the_rest() {
        let mut base = doc(r#"
            [system]
            host-name = "a"
            [security.ike.gateway.gw]
            address = ["192.0.2.1"]
            dead-peer-detection = { interval = 10 }
            [security.ike.gateway.other]
            address = ["192.0.2.2"]
        "#);
        merge(
            &mut base,
            doc(r#"
                [system]
                time-zone = "UTC"
                [security.ike.gateway.gw]
                address = ["192.0.2.9"]
            "#),
            "",
        );
        assert_eq!(base["system"]["host-name"].as_str(), Some("a"));
        assert_eq!(base["system"]["time-zone"].as_str(), Some("UTC"));
        let gw = base["security"]["ike"]["gateway"]["gw"].as_table().unwrap();
        assert_eq!(gw.len(), 1, "the gateway was replaced, not merged: {gw:?}");
        assert!(base["security"]["ike"]["gateway"].get("other").is_some());
    }

    #[test]
    fn object_tables_match_with_wildcards() {
        assert!(is_object_table("security.ipsec.vpn"));
        assert!(is_object_table(
            "security.policies.from-zone.trust.to-zone.untrust.policy"
        ));
        assert!(!is_object_table("security.ipsec"));
        assert!(!is_object_table("security.ipsec.vpn.v1"));
        assert!(!is_object_table(""));
    }

    #[test]
    fn diff_names_changed_objects_on_both_sides() {
        let (stop, start, kept) = diff(
            ["a", "b", "c"].into_iter(),
            ["b", "c", "d"].into_iter(),
            |n| n != "c",
        );
        assert_eq!(stop, ["a", "c"]);
        assert_eq!(start, ["c", "d"]);
        assert_eq!(kept, 1);
        let mut s = String::new();
        describe(&mut s, "vpn", &stop, &start, kept);
        assert_eq!(
            s,
            "; vpn c changed (renegotiated); vpn d added; vpn a removed; 1 vpn(s) unchanged"
        );
    }

    #[test]
    fn removing_walks_the_dotted_path() {
        let mut d = doc("[security.ipsec.vpn.v1]\nbind-interface = \"st0.0\"\n");
        assert!(
            table_at(&mut d, "security.ipsec.vpn")
                .and_then(|t| t.remove("v1"))
                .is_some()
        );
        assert!(table_at(&mut d, "security.ike.gateway").is_none());
    }
}
