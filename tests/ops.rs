//! The operations files: the Kubernetes manifests (deploy/kubernetes), the
//! systemd unit (deploy/systemd) and least privilege, on the host and in the
//! image that `cargo xtask image` builds.
//!
//! Tools that may be missing (kubectl, PyPI, systemd-analyze, setpriv,
//! podman) make a test say what it did instead, or skip with the reason;
//! kernel parts skip only when bpf() cannot run here at all. The image test
//! is slow and needs the image: `cargo xtask image --test` runs it.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_tcp_port, kernel_available, short_window_config, skip, temp_file, with_ingest,
    with_max_keys, BIN,
};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;
use toptraffic::config::{memory_bound, Config};
use toptraffic_loadgen::{self as loadgen, Generator, Sent, Shape};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn has_tool(name: &str) -> bool {
    runs(name, &["--version"])
}

/// Whether `name args` runs and succeeds.
fn runs(name: &str, args: &[&str]) -> bool {
    Command::new(name)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------

/// The objects of a kustomization, and how they were obtained.
struct Rendered {
    docs: Vec<Yaml>,
    text: String,
}

/// `kubectl kustomize DIR`, or, without kubectl, the files kustomization.yaml
/// lists put together the way kustomize would (resources, the config map
/// generator, namespace, images and replace patches: what these use).
fn render(dir: &str) -> Rendered {
    let path = workspace().join(dir);
    // kubectl has no --version.
    if runs("kubectl", &["version", "--client"]) {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        return Rendered {
            docs: parse_docs(&text),
            text,
        };
    }
    eprintln!("kubectl is not installed: reading the files {dir}/kustomization.yaml lists instead of rendering with kustomize");
    let docs = assemble(&path);
    let text = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    Rendered { docs, text }
}

fn parse_docs(text: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn read_yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_docs(&text)
}

fn strs(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The fallback of [`render`] for one kustomization directory.
fn assemble(dir: &Path) -> Vec<Yaml> {
    let k = read_yaml(&dir.join("kustomization.yaml")).remove(0);
    let mut docs = Vec::new();
    for r in strs(&k["resources"]) {
        let p = dir.join(&r);
        if p.is_dir() {
            docs.extend(assemble(&p));
        } else {
            docs.extend(read_yaml(&p));
        }
    }
    if let Some(gens) = k["configMapGenerator"].as_sequence() {
        for g in gens {
            let mut data = serde_yaml_ng::Mapping::new();
            for f in strs(&g["files"]) {
                let text = std::fs::read_to_string(dir.join(&f)).unwrap();
                data.insert(f.clone().into(), text.into());
            }
            let mut cm: Yaml = serde_yaml_ng::from_str(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n",
                g["name"].as_str().unwrap()
            ))
            .unwrap();
            cm["data"] = Yaml::Mapping(data);
            docs.push(cm);
        }
    }
    if let Some(ns) = k["namespace"].as_str() {
        for d in &mut docs {
            if !matches!(d["kind"].as_str(), Some("Namespace")) {
                d["metadata"]["namespace"] = ns.into();
            }
        }
    }
    if let Some(images) = k["images"].as_sequence() {
        for d in &mut docs {
            // get_mut: indexing a mapping mutably would add the keys.
            let Some(pod) = d
                .get_mut("spec")
                .and_then(|s| s.get_mut("template"))
                .and_then(|t| t.get_mut("spec"))
                .and_then(|s| s.as_mapping_mut())
            else {
                continue;
            };
            let cs = pod
                .iter_mut()
                .filter(|(k, _)| matches!(k.as_str(), Some("containers" | "initContainers")))
                .filter_map(|(_, v)| v.as_sequence_mut())
                .flatten();
            for c in cs {
                for i in images {
                    if c["image"].as_str() == i["name"].as_str() {
                        c["image"] = format!(
                            "{}:{}",
                            i["newName"].as_str().unwrap(),
                            i["newTag"].as_str().unwrap()
                        )
                        .into();
                    }
                }
            }
        }
    }
    if let Some(patches) = k["patches"].as_sequence() {
        for p in patches {
            let ops: Yaml = serde_yaml_ng::from_str(p["patch"].as_str().unwrap()).unwrap();
            for d in &mut docs {
                if d["kind"] != p["target"]["kind"] || d["metadata"]["name"] != p["target"]["name"]
                {
                    continue;
                }
                for op in ops.as_sequence().unwrap() {
                    assert_eq!(op["op"].as_str(), Some("replace"), "fallback: only replace");
                    let mut at = &mut *d;
                    for seg in op["path"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches('/')
                        .split('/')
                    {
                        at = match seg.parse::<usize>() {
                            Ok(i) => &mut at[i],
                            Err(_) => &mut at[seg],
                        };
                    }
                    *at = op["value"].clone();
                }
            }
        }
    }
    docs
}

fn object<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn container(docs: &[Yaml]) -> &Yaml {
    &object(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
}

/// The config the ConfigMap carries, parsed by the daemon's own parser.
fn configmap_text(docs: &[Yaml]) -> &str {
    object(docs, "ConfigMap")["data"]["config.toml"]
        .as_str()
        .expect("the ConfigMap holds config.toml")
}

fn configmap_config(docs: &[Yaml]) -> Config {
    Config::parse(configmap_text(docs), "ConfigMap config.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// A Kubernetes quantity in bytes (the suffixes these manifests use).
fn quantity_bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (s, m) in units {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<u64>().unwrap() * m;
        }
    }
    q.parse().unwrap()
}

#[test]
fn kustomize_renders_the_base_and_the_privileged_variant() {
    let base = render("deploy/kubernetes");
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "DaemonSet",
    ] {
        object(&base.docs, kind);
    }
    let sc = &container(&base.docs)["securityContext"];
    assert!(sc["privileged"].as_bool() != Some(true), "{sc:?}");

    let privileged = render("deploy/kubernetes/privileged");
    let psc = &container(&privileged.docs)["securityContext"];
    assert_eq!(psc["privileged"].as_bool(), Some(true), "{psc:?}");
    // The same objects otherwise.
    assert_eq!(base.docs.len(), privileged.docs.len());
    assert_eq!(configmap_text(&base.docs), configmap_text(&privileged.docs));
}

/// kubernetes-validate in a virtualenv of the tests' own under target/,
/// or why it cannot be had here.
fn kubernetes_validate() -> Result<PathBuf, String> {
    let venv = workspace().join("target/ops/venv");
    let bin = venv.join("bin/kubernetes-validate");
    if bin.exists() {
        return Ok(bin);
    }
    if !has_tool("python3") {
        return Err("python3 is not installed".into());
    }
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "kubernetes-validate==1.37.0"])
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        // Only an unreachable index is a reason to skip; anything else fails.
        let offline = [
            "connection",
            "Connection",
            "Temporary failure",
            "Network is unreachable",
            "No matching distribution",
            "Max retries",
        ];
        let _ = std::fs::remove_dir_all(&venv);
        if offline.iter().any(|s| err.contains(s)) {
            return Err(format!("PyPI is unreachable: {}", err.trim()));
        }
        panic!("pip install kubernetes-validate failed: {err}");
    }
    Ok(bin)
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let validate = match kubernetes_validate() {
        Ok(b) => b,
        Err(why) => {
            skip("manifests_pass_kubernetes_validate_strict", &why);
            return;
        }
    };
    for dir in ["deploy/kubernetes", "deploy/kubernetes/privileged"] {
        let r = render(dir);
        let file = temp_file("rendered.yaml", &r.text);
        let out = Command::new(&validate)
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("ERROR"),
            "{dir}: {text}"
        );
    }
}

#[test]
fn manifests_grant_least_privilege_and_size_memory_by_the_formula() {
    let r = render("deploy/kubernetes");
    let ds = object(&r.docs, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(&r.docs);
    let cfg = configmap_config(&r.docs);

    // The image `cargo xtask image` builds.
    assert_eq!(
        c["image"].as_str(),
        Some(format!("localhost/toptraffic:{}", env!("CARGO_PKG_VERSION")).as_str())
    );

    // A non-root uid with exactly CAP_BPF and CAP_PERFMON (the socket
    // filter needs no CAP_NET_ADMIN), everything else dropped. It gets them
    // from the binary's file capabilities, which no_new_privs would void:
    // hence allowPrivilegeEscalation, bounded by the two capabilities.
    let sc = &c["securityContext"];
    let caps = |sc: &Yaml| -> BTreeSet<String> {
        strs(&sc["capabilities"]["add"])
            .iter()
            .map(|s| s.trim_start_matches("CAP_").to_string())
            .collect()
    };
    assert_eq!(caps(sc), ["BPF", "PERFMON"].map(String::from).into());
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["runAsUser"].as_u64(), Some(NOBODY as u64));
    assert_eq!(sc["runAsGroup"].as_u64(), Some(NOBODY as u64));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(true));
    assert!(sc["privileged"].as_bool() != Some(true));
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));

    // Its directories are handed to it by an init container that holds
    // CAP_CHOWN alone.
    let init = &pod["initContainers"][0];
    let isc = &init["securityContext"];
    assert_eq!(caps(isc), ["CHOWN"].map(String::from).into());
    assert_eq!(strs(&isc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(isc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(init["image"], c["image"]);
    let args = strs(&init["args"]);
    assert_eq!(args[..3], ["prepare-dirs", "--owner", "65534:65534"]);
    let mounts = |c: &Yaml| -> BTreeSet<(String, String)> {
        c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().into(),
                    m["mountPath"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert!(mounts(init).is_subset(&mounts(c)));

    // Volumes by mount path.
    let host_path = |mount: &str| -> Option<String> {
        let m = c["volumeMounts"]
            .as_sequence()?
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(mount))?;
        let v = pod["volumes"]
            .as_sequence()?
            .iter()
            .find(|v| v["name"] == m["name"])?;
        v["hostPath"]["path"].as_str().map(String::from)
    };
    assert_eq!(host_path("/sys/fs/bpf").as_deref(), Some("/sys/fs/bpf"));
    let pins = cfg.ingest.pin_dir.clone().expect("pins for bpftool");
    assert!(pins.starts_with("/sys/fs/bpf"), "{pins:?}");
    let state = cfg.state.path.clone().expect("a state file");
    let state_dir = state.parent().unwrap().to_str().unwrap().to_string();
    assert_eq!(args[3..], [pins.display().to_string(), state_dir.clone()]);
    assert_eq!(
        host_path(&state_dir).as_deref(),
        Some(state_dir.as_str()),
        "the state file's directory must be a hostPath"
    );

    // The API on loopback; metrics and probes on the metrics listener.
    assert!(cfg.http.listen.ip().is_loopback());
    let metrics = cfg.http.metrics_listen.expect("metrics_listen");
    assert!(metrics.ip().is_unspecified(), "{metrics}");
    assert!(cfg.ingest.listen.ip().is_unspecified());
    let port_of = |p: &Yaml| -> u64 {
        if let Some(n) = p.as_u64() {
            return n;
        }
        let name = p.as_str().unwrap();
        c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|x| x["name"].as_str() == Some(name))
            .and_then(|x| x["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port named {name}"))
    };
    for probe in ["livenessProbe", "readinessProbe"] {
        let g = &c[probe]["httpGet"];
        assert_eq!(g["path"].as_str(), Some("/healthz"), "{probe}");
        assert_eq!(port_of(&g["port"]), metrics.port() as u64, "{probe}");
    }
    let ann = &ds["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(metrics.port().to_string().as_str())
    );
    let svc = object(&r.docs, "Service");
    assert_eq!(
        port_of(&svc["spec"]["ports"][0]["targetPort"]),
        metrics.port() as u64
    );
    let udp = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["protocol"].as_str() == Some("UDP"))
        .expect("the ingest port");
    assert_eq!(
        udp["containerPort"].as_u64(),
        Some(cfg.ingest.listen.port() as u64)
    );

    // Memory: request = limit, and the limit covers the documented bound
    // for the config's max_keys without wasting more than a quarter.
    let cpus: u64 = ann["toptraffic/sizing-cpus"]
        .as_str()
        .expect("the sizing annotation")
        .parse()
        .unwrap();
    let limit = quantity_bytes(c["resources"]["limits"]["memory"].as_str().unwrap());
    let request = quantity_bytes(c["resources"]["requests"]["memory"].as_str().unwrap());
    assert_eq!(limit, request);
    let bound = memory_bound(&cfg, cpus).total();
    eprintln!(
        "memory bound for {} keys on {cpus} CPUs: {} MiB; limit {} MiB",
        cfg.rules.iter().map(|r| r.max_keys).sum::<usize>(),
        bound >> 20,
        limit >> 20
    );
    assert!(limit >= bound, "limit {limit} < bound {bound}");
    assert!(
        limit as f64 <= bound as f64 * 1.25,
        "limit {limit} is far above the bound {bound}"
    );
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

#[test]
fn systemd_unit_verifies_without_a_word() {
    let unit = workspace().join("deploy/systemd/toptraffic.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    };
    let two = "CAP_BPF CAP_PERFMON";
    assert_eq!(values("AmbientCapabilities"), [two]);
    assert_eq!(values("CapabilityBoundingSet"), [two]);
    assert_eq!(values("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(values("Restart"), ["on-failure"]);
    assert!(values("SystemCallFilter")
        .iter()
        .any(|f| f.split_whitespace().any(|s| s == "bpf")));
    let exec = values("ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(exec[0].starts_with("/usr/local/bin/toptraffic run"));

    if !has_tool("systemd-analyze") {
        skip(
            "systemd_unit_verifies_without_a_word",
            "systemd-analyze is not installed",
        );
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the one
    // built here, and change nothing else.
    let copy = temp_file(
        "toptraffic.service",
        &text.replace("/usr/local/bin/toptraffic", BIN),
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    // It reports most problems on stderr and still exits 0.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "{said}");
}

// ---------------------------------------------------------------------------
// Least privilege on the host
// ---------------------------------------------------------------------------

/// CAP_PERFMON (38) and CAP_BPF (39).
const TWO_CAPS: u64 = (1 << 38) | (1 << 39);
const NOBODY: u32 = 65534;

/// A pin directory owned by `uid` (as bpffs under systemd is root's and
/// 0700), removed with everything in it on drop.
struct Pins {
    parent: PathBuf,
}

impl Pins {
    fn new(name: &str, uid: u32) -> Pins {
        let parent = PathBuf::from(common::pin_dir(name));
        std::fs::create_dir_all(&parent).unwrap();
        std::os::unix::fs::chown(&parent, Some(uid), Some(uid)).unwrap();
        Pins { parent }
    }

    fn dir(&self) -> PathBuf {
        self.parent.join("maps")
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

/// `toptraffic run` through setpriv as `uid` with `caps` (setpriv names, e.g.
/// "bpf,perfmon") inheritable, ambient and bounding, as systemd gives them;
/// killed on drop.
struct Unprivileged {
    child: Child,
    http: SocketAddr,
    log: PathBuf,
}

fn setpriv(uid: u32, caps: &str) -> Command {
    setpriv_exec(uid, caps, true, Path::new(BIN))
}

/// `bin` through setpriv as `uid` with the bounding set `caps`, and the same
/// inheritable and ambient when `ambient`; else none, as Kubernetes starts a
/// non-root container (capabilities then come from the file's).
fn setpriv_exec(uid: u32, caps: &str, ambient: bool, bin: &Path) -> Command {
    let plus: Vec<String> = caps
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| format!(",+{c}"))
        .collect();
    let set = format!("-all{}", plus.concat());
    let inherited = if ambient { set.as_str() } else { "-all" };
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={inherited}"))
        .arg(format!("--ambient-caps={inherited}"))
        .arg(format!("--bounding-set={set}"))
        .arg(bin);
    c
}

impl Unprivileged {
    fn start(uid: u32, caps: &str, config: &str, mode: &str) -> Unprivileged {
        Unprivileged::start_with(setpriv(uid, caps), config, mode)
    }

    fn start_with(mut command: Command, config: &str, mode: &str) -> Unprivileged {
        let path = temp_file("config.toml", config);
        let log = path.with_file_name("daemon.log");
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let child = command
            .args(["run", "--config"])
            .arg(&path)
            .args(["--mode", mode, "--listen", "127.0.0.1:0"])
            .args(["--http", &http.to_string()])
            .env("TOPTRAFFIC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("setpriv");
        let mut d = Unprivileged { child, http, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while loadgen::get_json(http, "/api/v1/stats").is_err() {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("exited with {st}: {}", d.log_text());
            }
            assert!(Instant::now() < deadline, "not up: {}", d.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stats(&self) -> Json {
        loadgen::get_json(self.http, "/api/v1/stats").unwrap()
    }

    fn status_field(&self, field: &str) -> String {
        common::proc_status(self.child.id(), field)
    }
}

impl Drop for Unprivileged {
    fn drop(&mut self) {
        common::stop::stop(&mut self.child, Duration::from_secs(20));
    }
}

fn setpriv_available(test: &str) -> bool {
    let ok = Command::new("setpriv")
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip(test, "setpriv is not installed");
    }
    ok
}

fn small_config(pins: &Path) -> String {
    let c = with_max_keys(&short_window_config("4s", "500ms"), 20_000);
    with_ingest(&c, &format!("pin_dir = \"{}\"", pins.display()))
}

#[test]
fn a_non_root_uid_with_cap_bpf_and_cap_perfmon_alone_counts_in_the_kernel() {
    let test = "a_non_root_uid_with_cap_bpf_and_cap_perfmon_alone_counts_in_the_kernel";
    if !kernel_available(test) || !setpriv_available(test) {
        return;
    }
    let pins = Pins::new("ops-nonroot", NOBODY);
    let d = Unprivileged::start(NOBODY, "bpf,perfmon", &small_config(&pins.dir()), "kernel");
    // Exactly the two, in every set that matters, as uid 65534.
    assert!(d.status_field("Uid").starts_with("65534"));
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        let v = u64::from_str_radix(&d.status_field(set), 16).unwrap();
        assert_eq!(v, TWO_CAPS, "{set}");
    }
    count_exactly_in_the_kernel(&d, &pins);
}

/// The capabilities the image gives its binary: permitted only, so that
/// exec never fails for want of them (see toptraffic's caps.rs).
const FILE_CAPS: &str = "cap_bpf,cap_perfmon,cap_net_admin+p";

/// A copy of the daemon with [`FILE_CAPS`], where uid 65534 can run it.
fn binary_with_file_caps() -> Option<PathBuf> {
    let copy = temp_file("toptraffic", "");
    std::fs::copy(BIN, &copy).unwrap();
    for p in [copy.as_path(), copy.parent().unwrap()] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let ok = Command::new("setcap")
        .args([FILE_CAPS])
        .arg(&copy)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(copy)
}

#[test]
fn file_capabilities_let_a_non_root_uid_count_in_the_kernel_as_kubernetes_starts_it() {
    let test = "file_capabilities_let_a_non_root_uid_count_in_the_kernel_as_kubernetes_starts_it";
    if !kernel_available(test) || !setpriv_available(test) {
        return;
    }
    let Some(bin) = binary_with_file_caps() else {
        skip(test, "setcap (libcap2-bin) is not installed or failed");
        return;
    };
    // What Kubernetes gives a non-root container: the added capabilities in
    // the bounding set only, no ambient or inheritable ones.
    let pins = Pins::new("ops-filecaps", NOBODY);
    let d = Unprivileged::start_with(
        setpriv_exec(NOBODY, "bpf,perfmon", false, &bin),
        &small_config(&pins.dir()),
        "kernel",
    );
    assert!(d.status_field("Uid").starts_with("65534"));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let v = u64::from_str_radix(&d.status_field(set), 16).unwrap();
        assert_eq!(v, TWO_CAPS, "{set}");
    }
    assert_eq!(d.status_field("CapAmb"), format!("{:016x}", 0));
    count_exactly_in_the_kernel(&d, &pins);
    drop(d);

    // Granted nothing, the same binary still runs, in userspace.
    let d = Unprivileged::start_with(
        setpriv_exec(NOBODY, "", false, &bin),
        &small_config(&pins.dir()),
        "auto",
    );
    assert_eq!(d.status_field("CapEff"), format!("{:016x}", 0));
    let s = d.stats();
    assert_eq!(s["mode"], "userspace", "{s}");
    assert!(
        s["mode_reason"].as_str().unwrap().contains("CAP_BPF"),
        "{s}"
    );
}

/// Sends mixed traffic to an unprivileged daemon in kernel mode and checks
/// that it counted every key exactly, almost all in the kernel.
fn count_exactly_in_the_kernel(d: &Unprivileged, pins: &Pins) {
    let stats = d.stats();
    assert_eq!(stats["mode"], "kernel", "{stats}");
    assert!(pins.dir().join("gen_a").exists(), "maps pinned");

    let mut gen = Generator::new(Shape {
        keys: 3_000,
        ips: 3_000,
        ids: 1_000,
        lines_per_datagram: (1, 5),
        malformed_per_mille: 10,
        seed: 21,
        ..Shape::default()
    });
    let addr: SocketAddr = stats["listen"].as_str().unwrap().parse().unwrap();
    let sent = loadgen::run(
        &mut gen,
        addr,
        5_000,
        20_000,
        Duration::from_secs(20),
        |_, _| {},
    )
    .unwrap();
    let s = settle(d, &sent);
    // Datagrams with a malformed line go to userspace whole.
    let kernel = s["points_kernel"].as_u64().unwrap();
    assert_eq!(
        kernel + s["points_userspace"].as_u64().unwrap(),
        sent.valid_lines,
        "{s}"
    );
    assert!(kernel > sent.valid_lines * 9 / 10, "{s}");
    assert_eq!(s["dropped"]["parse_error"], sent.malformed_lines, "{s}");
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    let truth = gen.truth();
    let top = loadgen::get_json(
        d.http,
        &format!("/api/v1/top?rule=top_combined&limit={}", truth.len() + 100),
    )
    .unwrap();
    let verdict = loadgen::compare(&top, &truth);
    assert!(verdict.exact(), "{verdict:?}");
}

/// Waits until every line sent is accounted for, then for a window with all of them.
fn settle(d: &Unprivileged, sent: &Sent) -> Json {
    let total = sent.valid_lines + sent.malformed_lines;
    let deadline = Instant::now() + Duration::from_secs(30);
    while loadgen::lines_accounted(&d.stats()) < total {
        assert!(Instant::now() < deadline, "lines missing: {}", d.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two rotations: one may have drained before the last lines arrived
    // and published after `now` was read.
    let now = d.stats()["rotations"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stats()["rotations"].as_u64().unwrap() < now + 2 {
        assert!(Instant::now() < deadline, "no rotation");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.stats()
}

#[test]
fn without_cap_bpf_kernel_mode_names_it_and_auto_falls_back_saying_why() {
    let test = "without_cap_bpf_kernel_mode_names_it_and_auto_falls_back_saying_why";
    if !kernel_available(test) || !setpriv_available(test) {
        return;
    }
    let pins = Pins::new("ops-nobpf", NOBODY);
    let config = temp_file("config.toml", &small_config(&pins.dir()));
    let kernel_mode = |caps: &str| -> Output {
        setpriv(NOBODY, caps)
            .args(["run", "--config"])
            .arg(&config)
            .args(["--mode", "kernel", "--listen", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0"])
            .output()
            .unwrap()
    };
    // Without CAP_PERFMON the verifier refuses the programs: named too.
    let out = kernel_mode("bpf");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lacks CAP_PERFMON;"), "{err}");
    let out: Output = setpriv(NOBODY, "perfmon")
        .args(["run", "--config"])
        .arg(&config)
        .args([
            "--mode",
            "kernel",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--mode kernel"), "{err}");
    assert!(err.contains("lacks CAP_BPF;"), "{err}");

    let d = Unprivileged::start(NOBODY, "perfmon", &small_config(&pins.dir()), "auto");
    let s = d.stats();
    assert_eq!(s["mode"], "userspace", "{s}");
    let reason = s["mode_reason"].as_str().unwrap();
    assert!(reason.contains("CAP_BPF"), "{reason}");
    assert!(d.log_text().contains("CAP_BPF"), "{}", d.log_text());
}

// ---------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------

/// A podman of the test's own (storage under target/image), reset and
/// removed on drop with every container it ran.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new() -> Podman {
        let dir = workspace().join(format!("target/image/test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Podman { dir }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .args(["rm", "--all", "--force", "--time", "5"])
            .output();
        let _ = self.cmd().args(["system", "reset", "--force"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What every container of the test runs with (TOOLCHAIN.md): runc, since
/// crun refuses this machine's hybrid cgroups; explicit ulimits, as root
/// here lacks CAP_SYS_RESOURCE; the host's network, where the socket
/// filter and the loopback senders are.
const RUN: &[&str] = &[
    "run",
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=4096:4096",
    "--network=host",
    "--cap-drop=all",
    "--read-only",
];

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's config in the image tests: the default rules in kernel
/// mode, maps sized for the traffic, pins of its own.
fn image_config(pins: &Path) -> (String, SocketAddr, SocketAddr) {
    let udp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let c = with_max_keys(toptraffic::config::DEFAULT_CONFIG, 60_000)
        .replace(
            "listen = \"127.0.0.1:9100\"",
            &format!("listen = \"{udp}\""),
        )
        .replace(
            "listen = \"127.0.0.1:9101\"",
            &format!("listen = \"{http}\""),
        );
    let c = with_ingest(&c, &format!("pin_dir = \"{}\"", pins.display()));
    (c, udp, http)
}

/// `podman run` arguments for the image's daemon in kernel mode on
/// `config` (mounted where the image looks), with bpffs and `opts`.
fn daemon_args<'a>(image: &'a str, mount: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend(opts);
    args.extend(["-v", "/sys/fs/bpf:/sys/fs/bpf", "-v", mount]);
    args.extend([
        image,
        "run",
        "--config",
        "/etc/toptraffic/config.toml",
        "--mode",
        "kernel",
    ]);
    args
}

/// The volume option that mounts `config` where the image looks for it.
fn config_mount(config: &Path) -> String {
    format!("{}:/etc/toptraffic/config.toml:ro", config.display())
}

/// Runs the image's daemon with `config` and `opts`, in kernel mode, and
/// fails (with what it said) unless it refuses to start saying `why`.
fn image_refuses(p: &Podman, image: &str, config: &Path, opts: &[&str], why: &str) {
    let mount = config_mount(config);
    let args = daemon_args(image, &mount, opts);
    let out = p.cmd().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(why), "{err}");
}

/// Runs the daemon's image with `opts` and waits for its API; returns the
/// container's name.
fn start_image(
    p: &Podman,
    image: &str,
    name: &str,
    opts: &[&str],
    config: &Path,
    http: SocketAddr,
) -> String {
    let mount = config_mount(config);
    let mut detached = vec!["--detach", "--name", name];
    detached.extend(opts);
    let args = daemon_args(image, &mount, &detached);
    p.ok(&args);
    let deadline = Instant::now() + Duration::from_secs(30);
    while loadgen::get_json(http, "/api/v1/stats").is_err() {
        let state = p.ok(&["inspect", "--format", "{{.State.Status}}", name]);
        let logs = || p.cmd().args(["logs", name]).output().unwrap();
        if state.trim() == "exited" || Instant::now() > deadline {
            let l = logs();
            panic!("{name} is {state}: {}", String::from_utf8_lossy(&l.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    name.to_string()
}

/// Sends the foundation traffic with the image's own loadgen and checks
/// every key's count; returns the daemon's stats.
fn count_foundation_traffic(p: &Podman, image: &str, udp: SocketAddr, http: SocketAddr) -> Json {
    let mut args: Vec<&str> = RUN.to_vec();
    let to = udp.to_string();
    let verify = http.to_string();
    args.extend(["--rm", image, "loadgen", "--to", &to]);
    args.extend([
        "--lines",
        "200000",
        "--keys",
        "50000",
        "--per-datagram",
        "1-5",
    ]);
    args.extend(["--malformed-per-mille", "10", "--verify-http", &verify]);
    let out = p.cmd().args(&args).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("EXACT"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{said}");
    loadgen::get_json(http, "/api/v1/stats").unwrap()
}

#[test]
#[ignore = "slow, and needs the image: run `cargo xtask image --test`"]
fn image_counts_exactly_with_two_capabilities_and_names_what_is_missing() {
    let test = "image_counts_exactly_with_two_capabilities_and_names_what_is_missing";
    if !kernel_available(test) {
        return;
    }
    if !has_tool("podman") || !has_tool("runc") {
        skip(
            test,
            "podman and runc are not installed (cargo xtask image installs them)",
        );
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let image_dir = workspace().join("target/image");
    let archive = image_dir.join(format!("toptraffic-{version}.oci.tar"));
    let seccomp = image_dir.join("seccomp.json");
    assert!(
        archive.exists() && seccomp.exists(),
        "{} or {} is missing: build them with `cargo xtask image`",
        archive.display(),
        seccomp.display()
    );
    let p = Podman::new();
    // The archive, as shipped, into the test's own storage.
    p.ok(&["load", "--input", archive.to_str().unwrap()]);
    let image = format!("localhost/toptraffic:{version}");
    let caps = "--cap-add=CAP_BPF,CAP_PERFMON";
    let profile = format!("seccomp={}", seccomp.display());
    let run_id = std::process::id();

    // 0. The binary carries its capabilities, permitted only.
    let mounted = p.ok(&["image", "mount", &image]);
    let out = Command::new("getcap")
        .arg(Path::new(mounted.trim()).join("usr/local/bin/toptraffic"))
        .output()
        .unwrap();
    let _ = p.cmd().args(["image", "unmount", &image]).output();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("cap_net_admin,cap_perfmon,cap_bpf=p"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 1. Root in the container, with the two capabilities.
    let pins = Pins::new("image-root", 0);
    let (text, udp, http) = image_config(&pins.dir());
    let config = temp_file("config.toml", &text);
    let name = format!("tt-root-{run_id}");
    start_image(
        &p,
        &image,
        &name,
        &[caps, "--security-opt", &profile],
        &config,
        http,
    );
    let s = count_foundation_traffic(&p, &image, udp, http);
    assert_eq!(s["mode"], "kernel", "{s}");
    assert!(s["points_kernel"].as_u64().unwrap() > 150_000, "{s}");
    assert_eq!(s["dropped"]["evicted"], 0, "{s}");
    p.ok(&["stop", "--time", "20", &name]);
    assert!(!pins.dir().exists(), "pins left behind");

    // 2. A non-root uid: podman makes the added capabilities ambient.
    let pins = Pins::new("image-nobody", NOBODY);
    let (text, udp, http) = image_config(&pins.dir());
    let config = temp_file("config.toml", &text);
    let name = format!("tt-nobody-{run_id}");
    let user = format!("{NOBODY}:{NOBODY}");
    start_image(
        &p,
        &image,
        &name,
        &[caps, "--security-opt", &profile, "--user", &user],
        &config,
        http,
    );
    let s = count_foundation_traffic(&p, &image, udp, http);
    assert_eq!(s["mode"], "kernel", "{s}");
    p.ok(&["stop", "--time", "20", &name]);

    // 3. Without CAP_BPF: kernel mode refuses to start and names it.
    let pins = Pins::new("image-nobpf", 0);
    let (text, _, _) = image_config(&pins.dir());
    let config = temp_file("config.toml", &text);
    image_refuses(
        &p,
        &image,
        &config,
        &["--rm", "--cap-add=CAP_PERFMON", "--security-opt", &profile],
        "lacks CAP_BPF",
    );

    // 4. The two capabilities under podman's default seccomp profile,
    // which allows bpf() only with CAP_SYS_ADMIN: the error says so.
    image_refuses(&p, &image, &config, &["--rm", caps], "seccomp");
}
