//! The Kubernetes manifests in scripts/kubernetes/: they parse as YAML into objects of
//! the right kinds, and the pods' command lines parse with the CLI's own parser, so
//! the manifests cannot drift from the flags.

use super::{Cli, Command, ReportCommand};
use crate::load::scenario::{self, ScenarioRef};
use crate::load::shard::{Shard, parse_start_at};
use clap::Parser;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn manifest(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/kubernetes")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        !text.to_ascii_lowercase().contains("accesskey="),
        "{name} holds a connection string"
    );
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: not YAML: {e}"))
}

fn kind(v: &Value, api: &str, kind: &str, name: &str) {
    assert_eq!(v["apiVersion"], api, "{name}");
    assert_eq!(v["kind"], kind, "{name}");
    assert!(
        v["metadata"]["name"].is_string(),
        "{name}: no metadata.name"
    );
}

fn config() -> BTreeMap<String, String> {
    let cm = manifest("configmap.yaml");
    kind(&cm, "v1", "ConfigMap", "configmap.yaml");
    serde_json::from_value(cm["data"].clone()).expect("ConfigMap data is strings")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Expands `$(VAR)` as the kubelet does, from `vars`; every reference must resolve.
fn expand(arg: &str, vars: &BTreeMap<String, String>) -> String {
    let re = regex::Regex::new(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)").unwrap();
    re.replace_all(arg, |c: &regex::Captures| {
        vars.get(&c[1])
            .unwrap_or_else(|| panic!("$({}) is not defined for the container", &c[1]))
            .clone()
    })
    .into_owned()
}

/// The container's variables `$(...)` may use: its env (values resolved from `vars`
/// for the ones Kubernetes fills in) and the ConfigMaps of its envFrom.
fn container_vars(
    container: &Value,
    config_name: &str,
    config: &BTreeMap<String, String>,
    index: usize,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        assert_eq!(from["configMapRef"]["name"], config_name);
        vars.extend(config.clone());
    }
    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap().to_string();
        let value = if name == "JOB_COMPLETION_INDEX" {
            assert_eq!(
                env["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
            index.to_string()
        } else {
            env["value"]
                .as_str()
                .unwrap_or("<from a reference>")
                .to_string()
        };
        vars.insert(name, value);
    }
    vars
}

#[test]
fn shard_job_is_an_indexed_job_whose_pods_run_load_shards() {
    let config = config();
    let n: usize = config["ACS_SHARDS"]
        .parse()
        .expect("ACS_SHARDS is a number");
    let job = manifest("shards-job.yaml");
    kind(&job, "batch/v1", "Job", "shards-job.yaml");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], n);
    assert_eq!(spec["parallelism"], n);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // The connection string comes from a Secret, through the variable the CLI reads.
    let env = c["env"].as_array().unwrap();
    let cs = env
        .iter()
        .find(|e| e["name"] == "ACS_CONNECTION_STRING")
        .expect("ACS_CONNECTION_STRING in env");
    assert!(
        cs["value"].is_null(),
        "the connection string is in the manifest"
    );
    assert!(cs["valueFrom"]["secretKeyRef"]["name"].is_string());

    // Reports go to the shared volume.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let reports = mounts
        .iter()
        .find(|m| m["mountPath"] == "/reports")
        .unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == reports["name"])
        .unwrap();
    let pvc = manifest("reports-pvc.yaml");
    kind(&pvc, "v1", "PersistentVolumeClaim", "reports-pvc.yaml");
    assert_eq!(
        volume["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert!(strings(&pvc["spec"]["accessModes"]).contains(&"ReadWriteMany".to_string()));

    let command = strings(&c["command"]);
    assert!(!command.iter().any(|a| a.contains("connection-string")));
    let mut reports_written = Vec::new();
    for index in 0..n {
        let vars = container_vars(c, "acs-load", &config, index);
        let argv: Vec<String> = command.iter().map(|a| expand(a, &vars)).collect();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let Command::Load(args) = cli.command else {
            panic!("{argv:?} is not `load`")
        };
        assert_eq!(args.shards, Some(n as u32));
        assert!(args.shard.is_none());
        let shard = Shard::resolve(None, Some(n), Some(&index.to_string())).unwrap();
        assert_eq!(shard.index, index);
        assert!(args.seed.is_some(), "shards need the run's seed");
        parse_start_at(args.start_at.as_deref().expect("--start-at")).unwrap();
        scenario::load(&ScenarioRef::from_arg(args.scenario.as_deref().unwrap())).unwrap();
        crate::duration::parse(args.run_time.as_deref().unwrap()).unwrap();
        let users = args.users.expect("--users");
        assert!(shard.users(users) > 0, "shard {index} would run no users");
        assert!(url::Url::parse(args.host.as_deref().unwrap()).is_ok());
        let json: Vec<&String> = args
            .report_file
            .iter()
            .filter(|f| f.ends_with(".json"))
            .collect();
        assert_eq!(json, [&format!("/reports/shard-{index}.json")]);
        reports_written.push(json[0].clone());
    }

    // The merge job reads exactly the reports the shards write, and writes its own.
    let merge = manifest("merge-job.yaml");
    kind(&merge, "batch/v1", "Job", "merge-job.yaml");
    let mpod = &merge["spec"]["template"]["spec"];
    assert_eq!(mpod["restartPolicy"], "Never");
    let mc = &mpod["containers"][0];
    let argv: Vec<String> = strings(&mc["command"]);
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Command::Report(ReportCommand::Merge(m)) = cli.command else {
        panic!("{argv:?} is not `report merge`")
    };
    let read: Vec<String> = m.reports.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(read, reports_written);
    assert!(m.report_file.iter().any(|f| f.ends_with(".html")));
    let mvol = mpod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mc["volumeMounts"][0]["name"])
        .unwrap();
    assert_eq!(
        mvol["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
}

#[test]
fn dockerfile_is_multi_stage_and_runs_as_non_root() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/Dockerfile"))
            .unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "not multi-stage");
    assert!(text.contains("COPY --from=build"));
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    // The image the manifests name is the tag the Dockerfile says to build.
    let job = manifest("shards-job.yaml");
    let image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(text.contains(&format!("-t {image}")), "{image}");
}
