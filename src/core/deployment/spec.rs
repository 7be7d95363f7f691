//! What a deployment is made of — [`DeploymentSpec`] and its [`PodTemplate`]s — and the
//! validation that runs before anything starts.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::backoff::{Backoff, BackoffError};

/// A group of pods started in dependency order and closed in reverse.
///
/// Each [`PodTemplate`] stands for `replicas` pods named `name/0` … `name/N-1`. The spec
/// carries no commands: the core only decides *when* each pod starts, restarts and
/// closes; the driver knows what each one runs.
///
/// # Examples
///
/// ```
/// use podvisor::core::deployment::{Condition, DeploymentSpec, PodTemplate, RestartPolicy};
///
/// let spec = DeploymentSpec::new()
///     .pod(PodTemplate::new("db"))
///     .pod(PodTemplate::new("migrate").one_shot().depends_on("db", Condition::Ready))
///     .pod(
///         PodTemplate::new("web")
///             .replicas(3)
///             .depends_on("migrate", Condition::Succeeded)
///             .restart(RestartPolicy::OnFailure),
///     )
///     .seed(42);
/// assert!(spec.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// The pods, in the order they were declared. Pods whose dependencies hold together
    /// start together, in this order.
    pub templates: Vec<PodTemplate>,
    /// Seed of the restart jitter: the same seed gives the same delays.
    pub seed: u64,
}

impl DeploymentSpec {
    /// An empty deployment with seed 0.
    pub fn new() -> DeploymentSpec {
        DeploymentSpec::default()
    }

    /// Adds a pod template.
    pub fn pod(mut self, template: PodTemplate) -> Self {
        self.templates.push(template);
        self
    }

    /// Sets [`DeploymentSpec::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The index of the template named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.templates.iter().position(|t| t.name == name)
    }

    /// Checks the spec before anything starts: at least one pod; names non-empty, without
    /// `/` and unique; at least one replica each; every dependency names another pod of
    /// the deployment, once; `Succeeded` only on one-shot pods; no one-shot pod with
    /// restart policy `always`; usable backoff settings; no dependency cycle.
    ///
    /// Returns the first problem found, looking at the templates in order.
    pub fn validate(&self) -> Result<(), DeploymentError> {
        let mut first = None;
        self.check(&mut |problem| {
            first = Some(problem);
            false
        });
        first.map_or(Ok(()), Err)
    }

    /// Every problem [`validate`](Self::validate) would find, in the order it finds them:
    /// the names first, then each template's own problems, then one dependency cycle.
    pub fn problems(&self) -> Vec<DeploymentError> {
        let mut all = Vec::new();
        self.check(&mut |problem| {
            all.push(problem);
            true
        });
        all
    }

    /// Hands each problem to `found`, which says whether to look further.
    fn check(&self, found: &mut dyn FnMut(DeploymentError) -> bool) {
        macro_rules! found {
            ($problem:expr) => {
                if !found($problem) {
                    return;
                }
            };
        }
        if self.templates.is_empty() {
            found!(DeploymentError::NoPods);
            return;
        }
        // Name → index, built once: lookups stay linear in the number of pods.
        let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(self.templates.len());
        for (index, template) in self.templates.iter().enumerate() {
            let name = &template.name;
            if name.is_empty() {
                found!(DeploymentError::EmptyName { index });
            }
            if name.contains('/') {
                found!(DeploymentError::SlashInName { name: name.clone() });
            }
            if index_of.insert(name, index).is_some() {
                found!(DeploymentError::DuplicateName { name: name.clone() });
            }
            if template.bare_name && template.replicas != 1 {
                found!(DeploymentError::BareNameNeedsOneReplica {
                    pod: name.clone(),
                    replicas: template.replicas,
                });
            }
        }
        for template in &self.templates {
            let pod = &template.name;
            if template.replicas == 0 {
                found!(DeploymentError::ZeroReplicas { pod: pod.clone() });
            }
            let mut seen = HashSet::with_capacity(template.depends_on.len());
            for dependency in &template.depends_on {
                let Some(&target) = index_of.get(dependency.on.as_str()) else {
                    found!(DeploymentError::UnknownDependency {
                        pod: pod.clone(),
                        dependency: dependency.on.clone(),
                        known: self.templates.iter().map(|t| t.name.clone()).collect(),
                    });
                    continue;
                };
                if !seen.insert(dependency.on.as_str()) {
                    found!(DeploymentError::DuplicateDependency {
                        pod: pod.clone(),
                        dependency: dependency.on.clone(),
                    });
                    continue;
                }
                if dependency.condition == Condition::Healthy
                    && !self.templates[target].health_checked
                {
                    found!(DeploymentError::HealthyNeedsChecks {
                        pod: pod.clone(),
                        dependency: dependency.on.clone(),
                    });
                }
                if dependency.condition == Condition::Succeeded && !self.templates[target].one_shot
                {
                    found!(DeploymentError::SucceededNeedsOneShot {
                        pod: pod.clone(),
                        dependency: dependency.on.clone(),
                    });
                }
            }
            if template.one_shot && template.restart == RestartPolicy::Always {
                found!(DeploymentError::OneShotRestartsAlways { pod: pod.clone() });
            }
            if let Err(problem) = template.backoff.validate() {
                found!(DeploymentError::Backoff {
                    pod: pod.clone(),
                    problem,
                });
            }
        }
        if let Some(cycle) = self.find_cycle(&index_of) {
            found!(DeploymentError::Cycle {
                pods: cycle
                    .into_iter()
                    .map(|i| self.templates[i].name.clone())
                    .collect(),
            });
        }
    }

    fn find_cycle(&self, index_of: &HashMap<&str, usize>) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let n = self.templates.len();
        let edges: Vec<Vec<usize>> = self
            .templates
            .iter()
            .map(|t| {
                t.depends_on
                    .iter()
                    .filter_map(|d| index_of.get(d.on.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut mark = vec![Mark::New; n];
        for root in 0..n {
            if mark[root] != Mark::New {
                continue;
            }
            // An explicit stack of (template, next edge to follow): no recursion depth limit.
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = Mark::OnPath;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some(&to) = edges[node].get(*next) {
                    *next += 1;
                    match mark[to] {
                        Mark::New => {
                            mark[to] = Mark::OnPath;
                            path.push((to, 0));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|&(p, _)| p == to).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                path[from..].iter().map(|&(p, _)| p).collect();
                            cycle.push(to);
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    path.pop();
                }
            }
        }
        None
    }
}

/// One pod of a deployment, possibly replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTemplate {
    /// The name; replicas are called `name/0`, `name/1`, …. Non-empty, without `/`.
    pub name: String,
    /// How many pods run this template. At least 1.
    pub replicas: u32,
    /// What must hold before any replica starts (or restarts).
    pub depends_on: Vec<Dependency>,
    /// A job expected to end (a migration): its successful end neither stops the
    /// deployment nor counts as a failure. The deployment is ready once it succeeded.
    pub one_shot: bool,
    /// When a replica that ended by itself is started again.
    pub restart: RestartPolicy,
    /// How long to wait before each restart, and when to give up.
    pub backoff: Backoff,
    /// The one replica is called by the template's name alone (`web`, not `web/0`): for a
    /// deployment of one pod standing for one command. Needs `replicas == 1`.
    pub bare_name: bool,
    /// Its pods have health checks, so others may wait until they are
    /// [`Condition::Healthy`].
    pub health_checked: bool,
}

impl PodTemplate {
    /// One replica, no dependencies, long-running, never restarted, default backoff.
    pub fn new(name: impl Into<String>) -> PodTemplate {
        PodTemplate {
            name: name.into(),
            replicas: 1,
            depends_on: Vec::new(),
            one_shot: false,
            restart: RestartPolicy::No,
            backoff: Backoff::default(),
            bare_name: false,
            health_checked: false,
        }
    }

    /// Sets [`PodTemplate::bare_name`].
    pub fn bare_name(mut self) -> Self {
        self.bare_name = true;
        self
    }

    /// Sets [`PodTemplate::replicas`].
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Adds a dependency on every replica of the template named `on`.
    pub fn depends_on(mut self, on: impl Into<String>, condition: Condition) -> Self {
        self.depends_on.push(Dependency {
            on: on.into(),
            condition,
        });
        self
    }

    /// Sets [`PodTemplate::health_checked`].
    pub fn health_checked(mut self, checked: bool) -> Self {
        self.health_checked = checked;
        self
    }

    /// Marks the pod as a one-shot job.
    pub fn one_shot(mut self) -> Self {
        self.one_shot = true;
        self
    }

    /// Sets [`PodTemplate::restart`].
    pub fn restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Sets [`PodTemplate::backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// "Start me only once every replica of `on` meets `condition`."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The name of the template depended on.
    pub on: String,
    /// What its replicas must have reached.
    pub condition: Condition,
}

/// What a dependency must have reached, checked at the moment the dependent (re)starts.
///
/// A one-shot pod that succeeded meets every condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// Its process runs (it reported started), ready or not.
    Started,
    /// It is ready.
    Ready,
    /// It is ready and has passed its health checks at least once (compose's
    /// `service_healthy`). Only for a pod with health checks.
    Healthy,
    /// It is a one-shot pod that ended successfully.
    Succeeded,
}

impl std::str::FromStr for Condition {
    type Err = String;

    /// `started`, `ready`, `healthy` or `succeeded`; compose's `service_started`,
    /// `service_healthy` and `service_completed_successfully` (and `completed`) are
    /// understood too.
    ///
    /// ```
    /// use podvisor::Condition;
    ///
    /// assert_eq!("ready".parse(), Ok(Condition::Ready));
    /// assert_eq!("service_completed_successfully".parse(), Ok(Condition::Succeeded));
    /// assert!("up".parse::<Condition>().unwrap_err().contains("expected started"));
    /// ```
    fn from_str(text: &str) -> Result<Condition, String> {
        match text {
            "started" | "service_started" => Ok(Condition::Started),
            "ready" => Ok(Condition::Ready),
            "healthy" | "service_healthy" => Ok(Condition::Healthy),
            "succeeded" | "completed" | "service_completed_successfully" => {
                Ok(Condition::Succeeded)
            }
            other => Err(format!(
                "unknown condition {other:?}; expected started, ready, healthy or succeeded (or compose's service_started, service_healthy, service_completed_successfully)"
            )),
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;

    /// `no`, `on-failure` or `always` (compose's and systemd's `unless-stopped` and
    /// `on-abnormal` are not the same policies and are refused).
    ///
    /// ```
    /// use podvisor::RestartPolicy;
    ///
    /// assert_eq!("on-failure".parse(), Ok(RestartPolicy::OnFailure));
    /// assert!("sometimes".parse::<RestartPolicy>().unwrap_err().contains("expected no"));
    /// ```
    fn from_str(text: &str) -> Result<RestartPolicy, String> {
        match text {
            "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure),
            "always" => Ok(RestartPolicy::Always),
            other => Err(format!(
                "unknown policy {other:?}; expected no, on-failure or always"
            )),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Healthy => "healthy",
            Condition::Succeeded => "succeeded",
        })
    }
}

/// When a pod that ended by itself is started again. Nothing restarts once the
/// deployment is closing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Never. A long-running pod that ends takes the deployment down.
    #[default]
    No,
    /// After a failure: a failed start (failed to start, exited early, timed out) or an
    /// end other than exit code 0.
    OnFailure,
    /// After every end, successful or not (not allowed for one-shot pods).
    Always,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        })
    }
}

/// A [`DeploymentSpec`] that cannot be run, found before anything starts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeploymentError {
    /// The deployment has no pods.
    NoPods,
    /// A template has an empty name.
    EmptyName {
        /// Its index in [`DeploymentSpec::templates`].
        index: usize,
    },
    /// A name contains `/`, which separates a name from a replica number.
    SlashInName {
        /// The name.
        name: String,
    },
    /// A template named without replica numbers has more than one replica.
    BareNameNeedsOneReplica {
        /// The template.
        pod: String,
        /// Its replicas.
        replicas: u32,
    },
    /// Two templates share a name.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A template has no replicas.
    ZeroReplicas {
        /// The template.
        pod: String,
    },
    /// A dependency names a pod that is not in the deployment.
    UnknownDependency {
        /// The template that depends.
        pod: String,
        /// The name it depends on.
        dependency: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// A template depends on the same pod twice.
    DuplicateDependency {
        /// The template that depends.
        pod: String,
        /// The name listed twice.
        dependency: String,
    },
    /// A [`Condition::Succeeded`] dependency on a pod that is not one-shot, which would
    /// never be met.
    SucceededNeedsOneShot {
        /// The template that depends.
        pod: String,
        /// The long-running pod it waits on.
        dependency: String,
    },
    /// A [`Condition::Healthy`] dependency on a pod without health checks, which would
    /// never be met.
    HealthyNeedsChecks {
        /// The template that depends.
        pod: String,
        /// The pod without health checks it waits on.
        dependency: String,
    },
    /// A one-shot pod with [`RestartPolicy::Always`] would run again after succeeding.
    OneShotRestartsAlways {
        /// The template.
        pod: String,
    },
    /// A template's backoff settings are unusable.
    Backoff {
        /// The template.
        pod: String,
        /// What is wrong.
        problem: BackoffError,
    },
    /// Pods wait on each other in a circle.
    Cycle {
        /// The pods on the cycle in dependency order, the first repeated at the end:
        /// `a` depends on `b`, … , which depends on `a`.
        pods: Vec<String>,
    },
}

impl fmt::Display for DeploymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeploymentError::NoPods => {
                write!(f, "the deployment has no pods; add at least one")
            }
            DeploymentError::EmptyName { index } => write!(
                f,
                "pod #{index} of the deployment has an empty name; give every pod a name"
            ),
            DeploymentError::SlashInName { name } => write!(
                f,
                "pod name {name:?} contains '/', which is reserved for replica numbers ({name}/0, {name}/1, …)"
            ),
            DeploymentError::BareNameNeedsOneReplica { pod, replicas } => write!(
                f,
                "pod {pod} is named without a replica number but has {replicas} replicas; a bare name needs exactly one"
            ),
            DeploymentError::DuplicateName { name } => write!(
                f,
                "pod name {name:?} is used twice; pod names in a deployment must be unique"
            ),
            DeploymentError::ZeroReplicas { pod } => {
                write!(f, "pod {pod:?} has 0 replicas; expected at least 1")
            }
            DeploymentError::UnknownDependency {
                pod,
                dependency,
                known,
            } => write!(
                f,
                "pod {pod:?} depends on {dependency:?}, which is not in the deployment (its pods: {})",
                known.join(", ")
            ),
            DeploymentError::DuplicateDependency { pod, dependency } => write!(
                f,
                "pod {pod:?} lists its dependency on {dependency:?} twice; give each dependency once, with one condition"
            ),
            DeploymentError::SucceededNeedsOneShot { pod, dependency } => write!(
                f,
                "pod {pod:?} waits for {dependency:?} to succeed, but {dependency:?} is not one-shot and is not expected to end; mark it one-shot or wait until it is started or ready"
            ),
            DeploymentError::HealthyNeedsChecks { pod, dependency } => write!(
                f,
                "pod {pod:?} waits for {dependency:?} to be healthy, but {dependency:?} has no health checks; give it one (health = \"tcp:…\") or wait until it is ready"
            ),
            DeploymentError::OneShotRestartsAlways { pod } => write!(
                f,
                "pod {pod:?} is one-shot with restart policy always, so it would run again after succeeding; use on-failure or no"
            ),
            DeploymentError::Backoff { pod, problem } => write!(f, "pod {pod:?}: {problem}"),
            DeploymentError::Cycle { pods } => {
                if pods.len() <= 2 {
                    let pod = pods.first().map_or("?", String::as_str);
                    write!(f, "pod {pod:?} depends on itself; a pod cannot wait for itself")
                } else {
                    write!(
                        f,
                        "dependency cycle: {}; pods on a cycle would wait for each other forever",
                        pods.join(" → ")
                    )
                }
            }
        }
    }
}

impl std::error::Error for DeploymentError {}
