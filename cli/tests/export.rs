//! `podvisor export kubernetes|compose`: every example and a file with every key, validated
//! by the orchestrators' own schemas (`kubernetes-validate --strict`, `docker-compose
//! config`, both installed by `.ci/setup`), and read back for what they mean.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{get, PODVISOR};

const FULL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/export/full.toml");

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn podvisor(args: &[&str]) -> Output {
    Command::new(PODVISOR)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `podvisor export ARGS`: its stdout, after checking it succeeded.
fn export(args: &[&str]) -> (String, String) {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = podvisor(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// `podvisor export ARGS` fails with 125 and nothing on stdout: its stderr.
fn refused(args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = podvisor(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(125), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    stderr
}

/// A directory of the test's own, removed when it is dropped (also when the test fails).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!(
        "podvisor-export-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Runs `program args` on `text` saved as `file` in a scratch directory; panics with its
/// output unless it succeeds.
fn validate(program: &str, args: &[&str], file: &str, text: &str) {
    // A directory per call: tests run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch(&format!("{program}-{call}"));
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(program)
        .args(args)
        .arg(&path)
        .current_dir(&*dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}; .ci/setup installs it"));
    assert!(
        out.status.success(),
        "{program} rejected:\n{text}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kubernetes_valid(text: &str, version: &str) {
    validate(
        "kubernetes-validate",
        &["--strict", "--quiet", "-k", version],
        "manifests.yaml",
        text,
    );
}

fn compose_valid(text: &str) {
    validate(
        "docker-compose",
        &["config", "-q", "-f"],
        "compose.yaml",
        text,
    );
}

/// The YAML documents of `text`, read by PyYAML.
fn documents(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read:\n{text}");
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(documents) => documents,
        other => panic!("{other}"),
    }
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Every probe of every container in `documents`, with where it is.
fn probes(documents: &[Value]) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for d in documents {
        let spec = &d["spec"]["template"]["spec"];
        for c in spec["containers"].as_array().into_iter().flatten() {
            for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                if !c[kind].is_null() {
                    found.push((format!("{} {kind}", d["metadata"]["name"]), c[kind].clone()));
                }
            }
        }
    }
    found
}

#[test]
fn every_example_exports_to_valid_kubernetes_and_compose() {
    for file in examples() {
        let file = file.to_str().unwrap();
        let (k8s, _) = export(&["kubernetes", file, "--podvisor-image", "podvisor:test"]);
        kubernetes_valid(&k8s, "1.30.0");
        let (compose, _) = export(&["compose", file, "--podvisor-image", "podvisor:test"]);
        compose_valid(&compose);
    }
}

#[test]
fn every_key_exports_to_valid_kubernetes_at_several_versions() {
    for version in ["1.30", "1.33", "1.37"] {
        let (k8s, _) = export(&[
            "kubernetes",
            FULL,
            "--podvisor-image",
            "podvisor:test",
            "--kube-version",
            version,
            "--namespace",
            "shop",
        ]);
        kubernetes_valid(&k8s, &format!("{version}.0"));
        let docs = documents(&k8s);
        assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "shop"));
        // lifecycle.stopSignal only from 1.33, with the pod's OS named; before, podvisor
        // inside the container turns SIGTERM into the stop signal.
        let db = find(&docs, "Deployment", "db");
        let stop = &container(db)["lifecycle"]["stopSignal"];
        let command = strs(&container(db)["command"]);
        if version == "1.30" {
            assert!(stop.is_null(), "{db}");
            assert!(
                command.windows(2).any(|w| w == ["--stop-signal", "INT"]),
                "{command:?}"
            );
        } else {
            // db still runs podvisor inside (notify, watchdog), which keeps the signal.
            assert!(
                command.windows(2).any(|w| w == ["--stop-signal", "INT"]),
                "{command:?}"
            );
        }
    }
}

#[test]
fn stop_signal_is_the_kubelets_from_1_33() {
    let dir = scratch("stop");
    let file = write(
        &dir,
        "stop.toml",
        "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nready = \"tcp:127.0.0.1:80\"\nstop_signal = \"INT\"\ngrace = \"1500ms\"\n",
    );
    let (k8s, _) = export(&["kubernetes", &file, "--kube-version", "1.33"]);
    kubernetes_valid(&k8s, "1.33.0");
    let docs = documents(&k8s);
    let a = find(&docs, "Deployment", "a");
    assert_eq!(container(a)["lifecycle"]["stopSignal"], "SIGINT");
    assert_eq!(a["spec"]["template"]["spec"]["os"]["name"], "linux");
    // 1.5 s rounded up.
    assert_eq!(
        a["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        2
    );
    assert_eq!(strs(&container(a)["command"]), ["x"]);
    // Before 1.33, the same pod needs podvisor inside, and says so.
    let stderr = refused(&["kubernetes", &file, "--kube-version", "1.32"]);
    assert!(
        stderr.contains("a (stop_signal INT needs lifecycle.stopSignal"),
        "{stderr}"
    );
    let (compose, _) = export(&["compose", &file, "--podvisor-image", "p:1"]);
    compose_valid(&compose);
    let service = &documents(&compose)[0]["services"]["a"];
    assert_eq!(service["stop_signal"], "SIGINT");
    assert_eq!(service["stop_grace_period"], "1500ms");
}

#[test]
fn kubernetes_objects_carry_the_meaning_of_the_file() {
    let (k8s, warnings) = export(&["kubernetes", FULL, "--podvisor-image", "podvisor:test"]);
    let docs = documents(&k8s);

    // No probe asks the loopback address: the kubelet would probe its own node.
    let all = probes(&docs);
    assert!(all.len() >= 8, "{all:?}");
    for (at, probe) in &all {
        for handler in ["tcpSocket", "httpGet"] {
            let host = &probe[handler]["host"];
            assert!(
                host.is_null()
                    || !["127.0.0.1", "localhost", "::1"].contains(&host.as_str().unwrap()),
                "{at}: {probe}"
            );
        }
    }
    assert!(warnings.contains("not loopback"), "{warnings}");

    // The notify-ready db runs under podvisor, whose /readyz and /livez the probes ask.
    let db = find(&docs, "Deployment", "db");
    let c = container(db);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    let command = strs(&c["command"]);
    assert_eq!(&command[..2], ["/podvisor/podvisor", "run"]);
    for pair in [
        ["--ready", "notify"],
        ["--watchdog", "30s"],
        ["--watchdog-signal", "ABRT"],
        ["--grace", "20s"],
        ["--timeout-ready", "45s"],
        ["--serve-health", "0.0.0.0:8558"],
    ] {
        assert!(
            command.windows(2).any(|w| w == pair),
            "{pair:?} in {command:?}"
        );
    }
    assert_eq!(
        &command[command.len() - 4..],
        ["--", "postgres", "-p", "5432"]
    );
    let init = &db["spec"]["template"]["spec"]["initContainers"];
    assert_eq!(strs(&init[0]["command"])[0], "cp");
    // podvisor's grace ends before the kubelet's SIGKILL.
    assert_eq!(
        db["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        22
    );
    let service = find(&docs, "Service", "db");
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [5432, 8558]);

    // cache: tcp probes on its own port, its health a liveness probe with the file's numbers.
    let cache = container(find(&docs, "Deployment", "cache"));
    assert_eq!(cache["readinessProbe"]["tcpSocket"]["port"], 6379);
    assert_eq!(cache["startupProbe"]["tcpSocket"]["port"], 6379);
    // 600 s (the default) of 1 s periods (500 ms rounded up), and the attempt at the start.
    assert_eq!(cache["startupProbe"]["failureThreshold"], 601);
    let live = &cache["livenessProbe"];
    assert_eq!(live["tcpSocket"]["port"], 6379);
    assert_eq!(live["periodSeconds"], 5);
    assert_eq!(live["timeoutSeconds"], 2);
    assert_eq!(live["failureThreshold"], 4);
    assert_eq!(live["successThreshold"], 1);
    assert_eq!(live["initialDelaySeconds"], 2);

    // web: {replica} makes a StatefulSet with a headless Service and the pod-index label.
    let web = find(&docs, "StatefulSet", "web");
    assert_eq!(web["spec"]["replicas"], 3);
    assert_eq!(web["spec"]["serviceName"], "web");
    assert_eq!(find(&docs, "Service", "web")["spec"]["clusterIP"], "None");
    let c = container(web);
    assert_eq!(c["env"][0]["name"], "PODVISOR_REPLICA");
    assert!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
        .unwrap()
        .contains("apps.kubernetes.io/pod-index"));
    let command = strs(&c["command"]);
    assert!(command.contains(&"web-$(PODVISOR_REPLICA)"), "{command:?}");
    assert!(
        command.contains(&"0.0.0.0:8080"),
        "{{port}} without ports: 8080"
    );
    // The kubelet reads $$ as $: a literal $ is written doubled.
    assert!(command.contains(&"$$HOME"), "{command:?}");
    // $(...) the file meant literally is escaped from the kubelet's expansion.
    let greeting = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "GREETING")
        .unwrap();
    assert_eq!(greeting["value"], "it costs $$5 (or $$(literally))");
    assert!(c["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["value"] == "from-the-env-file"));
    assert!(warnings.contains("full.env"), "{warnings}");
    assert_eq!(c["workingDir"], "/srv/web");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    // timeout_ready = 0: no limit.
    assert!(c["startupProbe"]["failureThreshold"].as_i64().unwrap() >= 1_000_000);

    // Its dependencies are init containers that wait: podvisor wait against the Services
    // (db through podvisor's /readyz), kubectl wait for the migration Job.
    let spec = &web["spec"]["template"]["spec"];
    let init = spec["initContainers"].as_array().unwrap();
    let by_name = |name: &str| {
        init.iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no init container {name}"))
    };
    assert_eq!(
        strs(&by_name("wait-for-db")["command"]),
        ["/usr/local/bin/podvisor", "wait", "http://db:8558/readyz"]
    );
    assert_eq!(
        strs(&by_name("wait-for-cache")["command"]),
        ["/usr/local/bin/podvisor", "wait", "tcp:cache:6379"]
    );
    for c in init.iter().filter(|c| c["image"] == "podvisor:test") {
        assert_eq!(strs(&c["command"])[1], "wait", "{c}");
    }
    let migrate_wait = strs(&by_name("wait-for-migrate")["command"]);
    assert_eq!(migrate_wait[..2], ["kubectl", "wait"]);
    assert!(migrate_wait.contains(&"job/migrate"));
    assert_eq!(spec["serviceAccountName"], "podvisor-job-reader");
    let role = find(&docs, "Role", "podvisor-job-reader");
    assert_eq!(role["rules"][0]["resources"][0], "jobs");
    find(&docs, "RoleBinding", "podvisor-job-reader");
    find(&docs, "ServiceAccount", "podvisor-job-reader");

    // migrate: an indexed Job with the restart budget as its backoff limit.
    let migrate = find(&docs, "Job", "migrate");
    assert_eq!(migrate["spec"]["completionMode"], "Indexed");
    assert_eq!(migrate["spec"]["completions"], 2);
    assert_eq!(migrate["spec"]["backoffLimit"], 5);
    assert_eq!(
        migrate["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    let c = container(migrate);
    assert!(strs(&c["command"]).contains(&"$(PODVISOR_REPLICA)"));
    assert_eq!(c["env"][0]["name"], "PODVISOR_REPLICA");
    assert!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"]
        .as_str()
        .unwrap()
        .contains("batch.kubernetes.io/job-completion-index"));

    // worker: stdout readiness, so podvisor inside; it waits for web's readiness only
    // (not its health), and not at all for a "started" dependency (said).
    let worker = find(&docs, "Deployment", "worker");
    let init = worker["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap();
    let waits: Vec<Vec<&str>> = init
        .iter()
        .filter(|c| c["name"] != "podvisor-install")
        .map(|c| strs(&c["command"]))
        .collect();
    assert_eq!(
        waits,
        [["/usr/local/bin/podvisor", "wait", "http://web:8080/ready"]]
    );
    assert!(
        warnings.contains("depends_on db = \"started\""),
        "{warnings}"
    );
    assert!(warnings.contains("restart = \"on-failure\""), "{warnings}");

    // reporter: an exec readiness check becomes an exec probe.
    let reporter = container(find(&docs, "Deployment", "reporter"));
    assert_eq!(
        strs(&reporter["readinessProbe"]["exec"]["command"]),
        ["sh", "-c", "true"]
    );
}

#[test]
fn compose_services_carry_the_meaning_of_the_file() {
    let (text, _) = export(&["compose", FULL, "--podvisor-image", "podvisor:test"]);
    compose_valid(&text);
    let doc = &documents(&text)[0];
    let services = &doc["services"];
    // {replica}: one service per replica, each with its number.
    for i in 0..3 {
        let web = &services[format!("web-{i}")];
        let command = strs(&web["command"]);
        assert!(
            command.contains(&format!("web-{i}").as_str()),
            "{command:?}"
        );
        // $ that the file meant literally stays literal for Compose.
        assert!(command.contains(&"$$HOME"), "{command:?}");
        assert_eq!(web["environment"]["MODE"], "prod");
        assert_eq!(web["depends_on"]["db"]["condition"], "service_healthy");
        assert_eq!(web["depends_on"]["cache"]["condition"], "service_healthy");
        for m in ["migrate-0", "migrate-1"] {
            assert_eq!(
                web["depends_on"][m]["condition"],
                "service_completed_successfully"
            );
        }
        assert_eq!(web["restart"], "always");
        assert_eq!(web["stop_grace_period"], "2s");
        let test = strs(&web["healthcheck"]["test"]);
        assert_eq!(&test[..3], ["CMD", "/podvisor/podvisor", "wait"]);
        assert!(test.contains(&"http://127.0.0.1:8080/ready"), "{test:?}");
        assert!(test.contains(&"http://[::1]:8080/health"), "{test:?}");
        assert_eq!(
            web["environment"]["GREETING"],
            "it costs $$5 (or $$(literally))"
        );
    }
    assert!(services["web"].is_null());
    // db: podvisor inside; Compose's own stop_signal is not used then (podvisor has it).
    let db = &services["db"];
    assert_eq!(strs(&db["command"])[..2], ["/podvisor/podvisor", "run"]);
    assert!(strs(&db["healthcheck"]["test"]).contains(&"http://127.0.0.1:8558/readyz"));
    assert_eq!(db["healthcheck"]["start_period"], "45s");
    assert_eq!(
        db["depends_on"]["podvisor-install"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(strs(&db["volumes"]), ["podvisor-bin:/podvisor:ro"]);
    // cache: both checks through podvisor wait, timings from the file.
    let cache = &services["cache"];
    assert_eq!(cache["healthcheck"]["interval"], "5s");
    assert_eq!(cache["healthcheck"]["retries"], 4);
    // reporter: an exec check needs no podvisor.
    let reporter = &services["reporter"];
    assert_eq!(
        strs(&reporter["healthcheck"]["test"]),
        ["CMD-SHELL", "true"]
    );
    assert!(reporter["volumes"].is_null());
    assert_eq!(
        reporter["depends_on"]["worker"]["condition"],
        "service_healthy"
    );
    // worker: started → service_started, on-failure with the restart budget.
    let worker = &services["worker"];
    assert_eq!(worker["depends_on"]["db"]["condition"], "service_started");
    assert_eq!(worker["restart"], "on-failure:5");
    assert_eq!(services["migrate-0"]["restart"], "on-failure:5");
    assert!(doc["volumes"]["podvisor-bin"].is_object());
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn what_cannot_be_exported_is_refused_naming_the_pod_and_key() {
    let dir = scratch("errors");
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[pod.a]\ncommand = [\"x\"]\n[pod.b]\ncommand = [\"y\"]\nimage = \"y:1\"\n[pod.c]\ncommand = [\"z\"]\n",
            &[],
            "pods without an image: a, c",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\ncwd = \"data\"\n",
            &[],
            "pod a: key cwd: \"data\" is relative",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nready = \"notify\"\n",
            &[],
            "pods that need podvisor in their containers: a (its readiness \"notify\"",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nready = \"tcp:127.0.0.1:5\"\n[pod.b]\nimage = \"b:1\"\ncommand = [\"y\"]\ndepends_on = [\"a\"]\n",
            &[],
            "b (its init containers run podvisor wait)",
        ),
        (
            "[pod.a_b]\nimage = \"a:1\"\ncommand = [\"x\"]\n[pod.\"a.b\"]\nimage = \"a:1\"\ncommand = [\"x\"]\n",
            &[],
            "pods a_b and a.b both become \"a-b\"",
        ),
        (
            "[pod.1st]\nimage = \"a:1\"\ncommand = [\"x\"]\n",
            &[],
            "pod 1st: its name becomes \"1st\", which is not a DNS label",
        ),
        (
            "[pod.a]\nimage = \"a b\"\ncommand = [\"x\"]\n",
            &[],
            "pod a: key image: \"a b\" is not an image reference",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nports = [0]\n",
            &[],
            "pod a: key ports: 0 is not a port",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nports = [80, 80]\n",
            &[],
            "pod a: key ports: port 80 is listed twice",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\", \"{replica}\"]\nreplicas = 2\n",
            &["--kube-version", "1.27"],
            "pod a: {replica} is taken from the pod-index label, which needs Kubernetes 1.28",
        ),
        (
            "[pod.podvisor-install]\nimage = \"a:1\"\ncommand = [\"x\"]\nready = \"tcp:127.0.0.1:1\"\n",
            &["--podvisor-image", "p:1"],
            "pod podvisor-install: its name is podvisor's own",
        ),
    ];
    for (i, (text, extra, expected)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("case{i}.toml"), text);
        let mut args = vec!["kubernetes", file.as_str()];
        args.extend_from_slice(extra);
        let stderr = refused(&args);
        assert!(stderr.contains(expected), "case {i}: {stderr}");
    }
    // Options.
    let file = write(
        &dir,
        "ok.toml",
        "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\n",
    );
    for (args, expected) in [
        (
            vec!["kubernetes", &file, "--kube-version", "two"],
            "--kube-version: \"two\" is not a Kubernetes version",
        ),
        (
            vec!["kubernetes", &file, "--namespace", "Shop"],
            "--namespace: \"Shop\" is not a namespace name",
        ),
        (
            vec!["compose", &file, "--namespace", "shop"],
            "--namespace is for export kubernetes only",
        ),
        (
            vec!["kubernetes", &file, "--podvisor-image"],
            "--podvisor-image needs a value",
        ),
        (
            vec!["kubernets", &file],
            "unknown target \"kubernets\"; expected kubernetes or compose",
        ),
        (vec!["kubernetes", &file, "--namespce", "x"], "did you mean"),
        (vec![], "export needs a target"),
    ] {
        let stderr = refused(&args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // A file that does not parse is reported as `check` does.
    let bad = write(&dir, "bad.toml", "[pod.a]\nimage = 5\ncommand = [\"x\"]\n");
    let stderr = refused(&["compose", &bad]);
    assert!(stderr.contains("bad.toml:2:9"), "{stderr}");
    // `up` and `check` ignore `image` and `ports` but still check them.
    let runnable = write(
        &dir,
        "runnable.toml",
        "[pod.a]\nimage = \"a:1\"\nports = [80]\ncommand = [\"true\"]\n",
    );
    let out = podvisor(&["check", &runnable]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn export_help_names_both_targets() {
    let out = podvisor(&["export", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("podvisor export kubernetes") && text.contains("podvisor export compose")
    );
}

/// The command line export gives a container that runs podvisor inside, run here with
/// the built podvisor: every option it writes is one `podvisor run` takes, `/readyz`
/// answers once the output line came, and the kubelet's SIGTERM reaches the command as
/// its own stop signal.
#[test]
fn the_podvisor_inside_command_line_runs() {
    let dir = scratch("inside");
    let file = write(
        &dir,
        "inside.toml",
        r#"[pod.svc]
image = "x:1"
command = ["sh", "-c", "trap 'echo got-int; exit 0' INT; echo up; while :; do sleep 0.1; done"]
ready = ["stdout:up", "exec:true"]
timeout_ready = "30s"
ready_interval = "100ms"
ready_timeout = "1s"
health = "exec:true"
health_interval = "1s"
health_timeout = "1s"
health_retries = 2
health_start_period = "1s"
grace = "1500ms"
stop_signal = "INT"
"#,
    );
    for target in ["kubernetes", "compose"] {
        let (text, _) = export(&[target, &file, "--podvisor-image", "p:1"]);
        let docs = documents(&text);
        let command = if target == "kubernetes" {
            strs(&container(find(&docs, "Deployment", "svc"))["command"])
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        } else {
            strs(&docs[0]["services"]["svc"]["command"])
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        assert_eq!(command[0], "/podvisor/podvisor");
        let port = support::free_port();
        let serve = command
            .iter()
            .position(|a| a == "--serve-health")
            .expect("--serve-health");
        let mut args: Vec<String> = command[1..].to_vec();
        args[serve] = format!("127.0.0.1:{port}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = support::spawn(&args);
        let start = std::time::Instant::now();
        while get(port, "/readyz") != Some(200) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{target}: /readyz never 200; {:?}",
                run.seen
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(get(port, "/livez"), Some(200));
        run.signal("TERM");
        let (code, stderr, stdout) = run.finish();
        assert_eq!(code, 0, "{target}: {stderr:?}");
        assert!(stdout.contains("got-int"), "{target}: {stdout}");
    }
}

/// Edge cases: what the kubelet and Compose would read differently from podvisor.
#[test]
fn literal_text_names_and_ports_survive_the_orchestrators_readers() {
    let dir = scratch("edges");
    let marker = dir.join("it's here");
    let _ = std::fs::remove_file(&marker);
    let file = write(
        &dir,
        "edges.toml",
        r#"[pod.seed]
image = "s:1"
command = ["sh", "-c", "echo $$$$ > /tmp/pid; echo seeded"]
oneshot = true
ready = "stdout:seeded"
replicas = 2
env = { SHARD = "shard-{replica}" }

[pod."null"]
image = "n:1"
command = ["serve"]
ports = [8558]
ready = "notify"
env = { on = "1", NO = "2" }
depends_on = { seed = "succeeded" }

[pod.checks]
image = "c:1"
command = ["serve"]
ready = ["exec:true # always", "file:MARKER"]
grace = "3s"
"#
        .replace("MARKER", marker.to_str().unwrap())
        .as_str(),
    );
    let (k8s, warnings) = export(&["kubernetes", &file, "--podvisor-image", "p:1"]);
    kubernetes_valid(&k8s, "1.30.0");
    let docs = documents(&k8s);
    // $$ in the file is a literal $$ for the shell: written $$$$ for the kubelet.
    let seed = find(&docs, "Job", "seed");
    let c = container(seed);
    assert_eq!(strs(&c["command"])[2], "echo $$$$ > /tmp/pid; echo seeded");
    // A one-shot pod is not run under podvisor (its early end would be a failure there),
    // and its output-line readiness is said to be left out.
    assert!(c["volumeMounts"].is_null());
    assert!(
        warnings.contains("key ready: \"stdout:seeded\" is not exported"),
        "{warnings}"
    );
    // {replica} in an env value: the variable is defined before it.
    assert_eq!(c["env"][0]["name"], "PODVISOR_REPLICA");
    assert_eq!(c["env"][1]["value"], "shard-$(PODVISOR_REPLICA)");
    // podvisor's port moves aside for the pod's own.
    let null = find(&docs, "Deployment", "null");
    let c = container(null);
    let ports: Vec<i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [8558, 8559]);
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8559);
    // The env names YAML 1.1 reads as booleans stay strings (PyYAML reads YAML 1.1).
    let names: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"on") && names.contains(&"NO"), "{names:?}");

    let (compose, _) = export(&["compose", &file, "--podvisor-image", "p:1"]);
    compose_valid(&compose);
    let doc = &documents(&compose)[0];
    let services = &doc["services"];
    let null = &services["null"];
    assert_eq!(null["environment"]["on"], "1");
    assert_eq!(null["environment"]["NO"], "2");
    assert_eq!(
        strs(&services["seed-0"]["command"])[2],
        "echo $$$$ > /tmp/pid; echo seeded"
    );
    assert_eq!(services["seed-1"]["environment"]["SHARD"], "shard-1");
    // podvisor inside keeps the grace: Compose waits 2 s longer (10 s default + 2).
    assert_eq!(null["stop_grace_period"], "12s");
    // Two exec/file checks, each in its own shell: the comment in the first does not
    // swallow the second, which fails; the quote in the path stays quoted.
    let test = strs(&services["checks"]["healthcheck"]["test"]);
    assert_eq!(test[0], "CMD-SHELL");
    let line = test[1].replace("$$", "$");
    let status = Command::new("sh").args(["-c", &line]).status().unwrap();
    assert!(!status.success(), "{test:?} passed without the file");
    std::fs::write(&marker, "").unwrap();
    let status = Command::new("sh").args(["-c", &line]).status().unwrap();
    assert!(status.success(), "{test:?} failed with the file there");
}

#[test]
fn numbers_are_kubernetes_sized_and_names_unique() {
    let dir = scratch("numbers");
    let file = write(
        &dir,
        "numbers.toml",
        r#"[pod.db]
image = "d:1"
command = ["db"]
ready = "tcp:127.0.0.1:5432"
timeout_ready = "1000000h"
ready_interval = "3s"

[pod.wait-for-db]
image = "w:1"
command = ["w"]
depends_on = ["db"]
"#,
    );
    let (k8s, _) = export(&["kubernetes", &file, "--podvisor-image", "p:1"]);
    kubernetes_valid(&k8s, "1.30.0");
    let docs = documents(&k8s);
    let db = container(find(&docs, "Deployment", "db"));
    // Seconds capped to Kubernetes' 32 bits, then divided by the period.
    let failures = db["startupProbe"]["failureThreshold"].as_i64().unwrap();
    assert_eq!(failures, (i64::from(i32::MAX) + 2) / 3 + 1);
    assert_eq!(db["startupProbe"]["periodSeconds"], 3);
    let w = find(&docs, "Deployment", "wait-for-db");
    let init = &w["spec"]["template"]["spec"]["initContainers"][0];
    assert_ne!(init["name"], "wait-for-db");
    assert_eq!(container(w)["name"], "wait-for-db");
}

#[test]
fn what_kubernetes_cannot_run_is_refused() {
    let dir = scratch("refused");
    for (text, expected) in [
        (
            "[pod.init]\nimage = \"i:1\"\ncommand = [\"x\"]\noneshot = true\nready = \"tcp:127.0.0.1:9000\"\n[pod.app]\nimage = \"a:1\"\ncommand = [\"y\"]\ndepends_on = { init = \"ready\" }\n",
            "pod app: key depends_on.init: \"ready\" on a one-shot pod cannot be exported",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\ncwd = \"/srv/{replica}\"\nreplicas = 2\n",
            "pod a: key cwd: {replica} cannot be used there",
        ),
        (
            "[pod.a]\nimage = \"a:1\"\ncommand = [\"x\"]\nenv = { \"9X\" = \"1\" }\n",
            "pod a: key env: variable name \"9X\" is not allowed in Kubernetes",
        ),
    ] {
        let file = write(&dir, "case.toml", text);
        let stderr = refused(&["kubernetes", &file, "--podvisor-image", "p:1"]);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
