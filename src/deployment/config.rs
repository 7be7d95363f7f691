//! What a deployment is built from: [`PodSet`]s (a pod configuration, replicas,
//! dependencies, restart policy) in a [`DeploymentConfig`], each replica's pod built from
//! its [`Replica`] (name, index, a free port from the deployment's [`PortBook`]).

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::config::PodConfig;
use crate::core::deployment::{Backoff, Condition, PodTemplate, RestartPolicy};

pub(super) type MakeConfig = Arc<dyn Fn(&Replica) -> PodConfig + Send + Sync>;

/// One replica as its [`PodSet`] sees it while building its [`PodConfig`]: its index, its
/// name, and a free TCP port if it asks for one.
///
/// Every replica's pod also gets `PODVISOR_POD` (its name, `web/1`) and
/// `PODVISOR_REPLICA` (its index) in its environment, and `PODVISOR_PORT` once it asked
/// for a port.
#[derive(Debug)]
pub struct Replica {
    pub(super) name: String,
    pub(super) template: String,
    pub(super) index: u32,
    pub(super) port: Cell<Option<u16>>,
    pub(super) ports: Arc<PortBook>,
}

/// The ports a deployment's replicas were given, so that none is given twice: the kernel
/// hands out a port it just freed again as readily as any other.
#[derive(Debug, Default)]
pub(crate) struct PortBook {
    given: Mutex<std::collections::BTreeSet<u16>>,
}

impl PortBook {
    /// Attempts at finding a port not given yet before giving up (with 0).
    const ATTEMPTS: usize = 512;

    /// A port free on 127.0.0.1 now and not given to another replica of the deployment; 0
    /// if none was found. Ports already given that the kernel offers again are held open
    /// while looking further, so the kernel moves on.
    fn give(&self) -> u16 {
        let mut given = self.given.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = Vec::new();
        for _ in 0..Self::ATTEMPTS {
            let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", 0)) else {
                return 0;
            };
            let Ok(port) = listener.local_addr().map(|a| a.port()) else {
                return 0;
            };
            if given.insert(port) {
                return port;
            }
            held.push(listener);
        }
        0
    }
}

impl Replica {
    /// The replica's number, from 0.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The pod's name, `template/index`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template's name.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// A TCP port that was free on 127.0.0.1 when first asked for, the same for every
    /// restart of this replica, and never the port of another replica of the deployment.
    /// 0 if none could be found. (Another process may take the port between the check and
    /// the pod's bind; the pod then fails to start.)
    pub fn port(&self) -> u16 {
        if let Some(port) = self.port.get() {
            return port;
        }
        let port = self.ports.give();
        self.port.set(Some(port));
        port
    }

    /// `text` with `{replica}`, `{name}` and `{port}` replaced by [`Replica::index`],
    /// [`Replica::name`] and [`Replica::port`] (a port is only allocated if `{port}`
    /// occurs).
    ///
    /// ```
    /// use podvisor::{PodConfig, PodSet};
    ///
    /// let web = PodSet::from_fn("web", |r| {
    ///     PodConfig::new("web-server").arg(r.expand("--listen=127.0.0.1:{port}"))
    ///         .arg(r.expand("--id={name}#{replica}"))
    /// })
    /// .replicas(3);
    /// ```
    pub fn expand(&self, text: &str) -> String {
        let mut out = text
            .replace("{replica}", &self.index.to_string())
            .replace("{name}", &self.name);
        if out.contains("{port}") {
            out = out.replace("{port}", &self.port().to_string());
        }
        out
    }
}

/// One pod of a [`DeploymentConfig`], possibly replicated: how to build each replica's
/// [`PodConfig`], its dependencies, and its restart policy.
#[derive(Clone)]
pub struct PodSet {
    pub(super) template: PodTemplate,
    pub(super) make: MakeConfig,
}

impl fmt::Debug for PodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodSet")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl PodSet {
    /// Every replica runs `config` (named `name/index`).
    pub fn new(name: impl Into<String>, config: PodConfig) -> PodSet {
        PodSet::from_fn(name, move |_| config.clone())
    }

    /// Each replica runs the config `make` builds for it, for its first start and for
    /// every restart. Use [`Replica::expand`] for `{replica}` and `{port}` placeholders.
    /// The config's name is replaced by the replica's name.
    pub fn from_fn(
        name: impl Into<String>,
        make: impl Fn(&Replica) -> PodConfig + Send + Sync + 'static,
    ) -> PodSet {
        PodSet {
            template: PodTemplate::new(name),
            make: Arc::new(make),
        }
    }

    /// Like [`PodSet::from_fn`], with everything else taken from `template` (its name,
    /// replicas, dependencies, one-shot flag, restart policy and backoff), as a deployment
    /// file describes a pod. Whether it has health checks is read from the configs.
    ///
    /// ```
    /// use podvisor::core::deployment::{Condition, PodTemplate};
    /// use podvisor::{PodConfig, PodSet};
    ///
    /// let template = PodTemplate::new("web").replicas(2).depends_on("db", Condition::Ready);
    /// let web = PodSet::from_template(template, |r| PodConfig::new("web-server").arg(r.expand("{replica}")));
    /// # let _ = web;
    /// ```
    pub fn from_template(
        template: PodTemplate,
        make: impl Fn(&Replica) -> PodConfig + Send + Sync + 'static,
    ) -> PodSet {
        PodSet {
            template,
            make: Arc::new(make),
        }
    }

    /// How many replicas (1 by default).
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.template.replicas = replicas;
        self
    }

    /// Starts (and restarts) replicas only once every replica of `on` meets `condition`.
    pub fn depends_on(mut self, on: impl Into<String>, condition: Condition) -> Self {
        self.template = self.template.depends_on(on, condition);
        self
    }

    /// Marks it a one-shot job (a migration): expected to exit 0, which neither stops the
    /// deployment nor counts as a failure.
    pub fn one_shot(mut self) -> Self {
        self.template.one_shot = true;
        self
    }

    /// Its one pod is called by the set's name alone (`web`, not `web/0`), as a single
    /// command is; the deployment refuses it with more than one replica.
    pub fn keep_name(mut self) -> Self {
        self.template = self.template.bare_name();
        self
    }

    /// When a replica that ended by itself is started again (`No` by default).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.template.restart = policy;
        self
    }

    /// The delays between restarts and the restart budget.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.template.backoff = backoff;
        self
    }
}

/// Everything needed to run a [`Deployment`](crate::Deployment): its pods and the jitter seed.
#[derive(Clone, Debug, Default)]
pub struct DeploymentConfig {
    pub(super) sets: Vec<PodSet>,
    pub(super) seed: Option<u64>,
}

impl DeploymentConfig {
    /// An empty deployment.
    pub fn new() -> DeploymentConfig {
        DeploymentConfig::default()
    }

    /// Adds a pod set.
    pub fn pod(mut self, set: PodSet) -> Self {
        self.sets.push(set);
        self
    }

    /// The seed of the restart jitter. By default one is drawn from the clock, so that
    /// deployments started together do not restart in lockstep.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}
